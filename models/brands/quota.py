"""A brand's documented limits, declared as data: what the poll planner must stay inside.

Each adapter sets `quota = Quota(...)`. The planner (the poller's) turns a quota, the fleet on a
connection and the interval its owner asks for into a schedule; nothing else reads these numbers.

- A `Window` caps calls in a period, counted per scope: per credential (`key`), per site, per device,
  per endpoint of a credential, or per batch key of a credential (`batch`: e.g. FusionSolar counts its
  real-time calls per device type, the adapter's batch_key). `calendar` windows reset at the start of the
  brand's day or month in `timezone` (a daily budget must last until then); rolling windows count the last
  `period_s` seconds.
- `endpoints` says which calls a window counts (`("*",)`: all of them). An endpoint is the adapter's own
  name for a call, e.g. "latest", "devices", "sites", "login".
- A bulk call (`Bulk`) carries up to `size` sites or devices in one request and is charged to each of
  them (`charge="each"`) or once to the credential (`charge="once"`).
- `concurrency` caps requests in progress per credential; `min_interval_s` is a documented minimum gap
  between two calls of one endpoint (per credential).
- `requests_per_latest`: how many of the brand's requests one latest call of the adapter sends, by the device
  type it carries ("*": any other type; 1 when absent). Every window counting "latest" is charged that many
  (SolarEdge: power flow and overview; Enphase: a battery system's summary and battery telemetry).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

SECOND = 1.0
MINUTE = 60.0
HOUR = 3600.0
DAY = 86400.0
MONTH = 31 * DAY  # the longest month: a calendar month window resets at the month's start

SCOPES = ("key", "site", "device", "endpoint", "batch")


@dataclass(frozen=True)
class Window:
    name: str  # shown in GET /connections/<id>, e.g. "daily per key"
    limit: int
    period_s: float
    scope: str = "key"  # key | site | device | endpoint | batch
    endpoints: tuple[str, ...] = ("*",)
    calendar: bool = False  # resets at the start of the day/month in `timezone` instead of rolling
    timezone: str = "UTC"

    def __post_init__(self) -> None:
        if self.scope not in SCOPES:
            raise ValueError(f"scope must be one of {', '.join(SCOPES)}")
        if self.limit < 1 or self.period_s <= 0:
            raise ValueError("a window needs a positive limit and period")

    def counts(self, endpoint: str) -> bool:
        return "*" in self.endpoints or endpoint in self.endpoints


@dataclass(frozen=True)
class Bulk:
    endpoint: str  # the call that carries several sites or devices
    size: int  # at most this many in one call
    per: str = "device"  # site | device: what one call carries
    charge: str = "each"  # each: every carried site/device is charged; once: the key only


@dataclass(frozen=True)
class Quota:
    windows: tuple[Window, ...] = ()
    concurrency: int | None = None
    min_interval_s: dict[str, float] = field(default_factory=dict)
    bulk: tuple[Bulk, ...] = ()
    # How the brand says "too many calls": HTTP statuses and codes in the body (for the record and metrics).
    throttle_signals: tuple[str, ...] = ()
    requests_per_latest: dict[str, int] = field(default_factory=dict)

    def requests_for(self, device_types: Iterable[str]) -> int:
        """The requests of one latest call carrying devices of these types: the costliest type's."""
        default = self.requests_per_latest.get("*", 1)
        return max([self.requests_per_latest.get(t, default) for t in device_types] or [default])
