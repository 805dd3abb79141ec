"""Everything one running mock shares: fleet, clock, simulator, limits, stats and faults."""

from __future__ import annotations

from dataclasses import dataclass

from .clock import SimClock
from .config import Fleet
from .faults import Faults
from .ratelimit import RateLimits
from .simulator import Simulator
from .stats import INVALID_TOKEN, Stats

UNAUTHORIZED = "unauthorized"


@dataclass
class Admission:
    ok: bool
    reason: str = ""
    retry_after_s: float = 0.0
    scope: str = ""  # "endpoint" or "device" when rate-limited
    window: str = ""  # the limit that refused, as the mock's stats name it


class World:
    def __init__(
        self,
        fleet: Fleet,
        clock: SimClock,
        profile: str = "fast",
        faults: Faults | None = None,
        limits_clock: str = "real",
    ):
        self.fleet = fleet
        self.clock = clock
        self.simulator = Simulator(fleet, clock.now())
        # "sim": the limits count on the simulated clock (rolling windows and calendar days/months alike)
        self.limits = (
            RateLimits(profile, fleet.rate_limits, monotonic=clock.now, wall=clock.now)
            if limits_clock == "sim"
            else RateLimits(profile, fleet.rate_limits)
        )
        self.stats = Stats()
        self.faults = faults or Faults(seed=fleet.seed)
        self.devices = {d.serial: d for d in fleet.devices}
        self.plants = {p.plant_id: p for p in fleet.plants}
        self.apply_offline()

    def apply_offline(self) -> None:
        self.simulator.set_offline(self.faults.offline)
        self.simulator.set_faulted(self.faults.faulted)
        self.simulator.set_shaded(self.faults.shaded)
        self.simulator.set_battery_soc(self.faults.battery_soc)

    def admit(self, brand: str, token: str | None, endpoint: str, serials=()) -> Admission:
        """Authenticate, rate-limit and count one request."""
        if not token or token not in self.fleet.credentials[brand]:
            self.stats.record(INVALID_TOKEN, endpoint)
            return Admission(False, UNAUTHORIZED)
        wait, scope = self.limits.check(brand, token, endpoint, list(serials))
        window = self.limits.window_name(brand, endpoint, scope) if scope else ""
        self.stats.record(token, endpoint, serials, rate_limited=bool(scope), window=window)
        return Admission(not scope, "rate_limited" if scope else "", wait, scope, window)

    def admit_daily(self, brand: str, token: str | None, endpoint: str, buckets, serials=()) -> Admission:
        """Authenticate, charge the daily budgets named by `buckets` ((scope, id) pairs) and count one request."""
        if not token or token not in self.fleet.credentials[brand]:
            self.stats.record(INVALID_TOKEN, endpoint)
            return Admission(False, UNAUTHORIZED)
        wait, scope = self.limits.charge_daily(brand, buckets)
        window = self.limits.window_name(brand, endpoint, scope) if scope else ""
        self.stats.record(token, endpoint, serials, rate_limited=bool(scope), window=window)
        return Admission(not scope, "rate_limited" if scope else "", wait, scope, window)

    def brand_devices(self, brand: str):
        return [d for d in self.fleet.devices if d.brand == brand]
