"""Injected faults: latency, 5xx errors, malformed bodies, offline devices, outage windows, devices reporting a
fault status, shaded (or soiled) devices whose PV is scaled down, and batteries held at a state of charge."""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, field

from .clock import parse_iso


class FaultError(ValueError):
    """A fault setting that cannot be applied; reported to the admin caller, never a traceback."""


@dataclass
class Faults:
    latency_ms: float = 0.0
    error_rate: float = 0.0
    malformed_rate: float = 0.0
    offline: set[str] = field(default_factory=set)
    faulted: set[str] = field(default_factory=set)  # devices whose readings report status "fault"
    shaded: dict[str, float] = field(default_factory=dict)  # serial -> share of its PV that still gets through
    battery_soc: dict[str, float] = field(default_factory=dict)  # serial -> state of charge its battery reports
    outages: list[tuple[float, float]] = field(default_factory=list)  # simulated-time windows
    outage_until: float = 0.0  # monotonic deadline of an outage started "now"
    seed: int = 0

    def __post_init__(self):
        self._rng = random.Random(self.seed)

    def update(self, settings: dict, monotonic=time.monotonic) -> None:
        if not isinstance(settings, dict):
            raise FaultError("body must be a JSON object")
        if settings.get("clear"):
            self.latency_ms = self.error_rate = self.malformed_rate = 0.0
            self.offline, self.outages, self.outage_until = set(), [], 0.0
            self.faulted, self.shaded, self.battery_soc = set(), {}, {}
        for name in ("latency_ms", "error_rate", "malformed_rate"):
            if name in settings:
                setattr(self, name, _number(settings[name], name, 0.0, None if name == "latency_ms" else 1.0))
        if "offline" in settings:
            serials = settings["offline"]
            if not isinstance(serials, list) or not all(isinstance(s, str) for s in serials):
                raise FaultError("offline must be a list of serials")
            self.offline = set(serials)
        if "faulted" in settings:
            serials = settings["faulted"]
            if not isinstance(serials, list) or not all(isinstance(s, str) for s in serials):
                raise FaultError("faulted must be a list of serials")
            self.faulted = set(serials)
        if "shaded" in settings:
            shaded = settings["shaded"]
            if not isinstance(shaded, dict):
                raise FaultError("shaded must be an object {serial: share of PV left, 0 to 1}")
            self.shaded = {serial: _number(share, f"shaded.{serial}", 0.0, 1.0) for serial, share in shaded.items()}
        if "battery_soc" in settings:
            held = settings["battery_soc"]
            if not isinstance(held, dict):
                raise FaultError("battery_soc must be an object {serial: state of charge in %, 0 to 100}")
            self.battery_soc = {
                serial: _number(pct, f"battery_soc.{serial}", 0.0, 100.0) for serial, pct in held.items()
            }
        if "outages" in settings:
            self.outages = parse_outages(settings["outages"])
        if "outage_for_s" in settings:
            if settings.get("outage_mode", "reset") != "reset":
                raise FaultError("outage_mode must be 'reset'")
            self.outage_until = monotonic() + _number(settings["outage_for_s"], "outage_for_s", 0.0, None)

    def in_outage(self, sim_now: float, monotonic=time.monotonic) -> bool:
        return monotonic() < self.outage_until or any(start <= sim_now < end for start, end in self.outages)

    def draw_error(self) -> bool:
        return self.error_rate > 0 and self._rng.random() < self.error_rate

    def draw_malformed(self) -> bool:
        return self.malformed_rate > 0 and self._rng.random() < self.malformed_rate

    def error_status(self) -> int:
        return self._rng.choice((500, 502, 503))

    def describe(self, monotonic=time.monotonic) -> dict:
        return {
            "latency_ms": self.latency_ms,
            "error_rate": self.error_rate,
            "malformed_rate": self.malformed_rate,
            "offline": sorted(self.offline),
            "faulted": sorted(self.faulted),
            "shaded": dict(sorted(self.shaded.items())),
            "battery_soc": dict(sorted(self.battery_soc.items())),
            "outages": [{"start": s, "end": e} for s, e in self.outages],
            "outage_remaining_s": max(0.0, self.outage_until - monotonic()),
        }


def parse_outages(windows) -> list[tuple[float, float]]:
    """Accepts [{"start": ISO, "end": ISO}] or ["START/END"]."""
    if not isinstance(windows, list):
        raise FaultError("outages must be a list")
    parsed = []
    for window in windows:
        try:
            start, end = (window["start"], window["end"]) if isinstance(window, dict) else window.split("/")
            parsed.append((parse_iso(start), parse_iso(end)))
        except (KeyError, ValueError, AttributeError, TypeError):
            raise FaultError(f"bad outage window {window!r}: want START/END as ISO-8601") from None
    return parsed


def _number(value, name, minimum, maximum) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise FaultError(f"{name} must be a number")
    if value < minimum or (maximum is not None and value > maximum):
        raise FaultError(f"{name} must be between {minimum} and {maximum if maximum is not None else 'inf'}")
    return float(value)
