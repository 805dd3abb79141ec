"""Sun and PV: one pvlib day curve per (site, panel orientation, UTC day), interpolated per tick.

pvlib costs milliseconds per call, so a curve is computed once per UTC day at 1-minute resolution and
every tick only does a vectorised linear interpolation. Curves are per UTC day (not local day) so all
devices share the same sample index at a given instant.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pvlib

SAMPLES_PER_DAY = 1440
SAMPLE_S = 60.0
DAY_S = 86400.0
GAMMA_PDC = -0.004  # typical crystalline silicon power temperature coefficient, 1/K
INVERTER_DC_RATIO = 1.1  # DC array is usually oversized ~10% against the inverter


@dataclass(frozen=True)
class CurveKey:
    latitude: float
    longitude: float
    tilt: float
    azimuth: float


def ambient_temperature(latitude: float, longitude: float, utc_seconds: np.ndarray) -> np.ndarray:
    """A plausible air temperature: warmer near the equator, warmest mid-afternoon solar time."""
    mean = 28.0 - 0.3 * abs(latitude)
    solar_hour = (utc_seconds / 3600.0 + longitude / 15.0) % 24.0
    return mean + 5.0 * np.cos(2 * math.pi * (solar_hour - 15.0) / 24.0)


# Simulators of one process on the same sites (tests, a restarted world) ask for the same days: a curve is a pure
# function of its key and day, and the bank stacks copies of it, so one computed is kept for the next.
@functools.lru_cache(maxsize=256)
def day_curve(key: CurveKey, utc_day: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-watt-peak AC power, 'sun up over the whole minute' flag and air temperature for one UTC day.

    Arrays have SAMPLES_PER_DAY + 1 points so the last minute can interpolate to the next midnight.
    """
    offsets = np.arange(SAMPLES_PER_DAY + 1) * SAMPLE_S
    times = pd.to_datetime(utc_day * DAY_S + offsets, unit="s", utc=True)
    sun = pvlib.solarposition.get_solarposition(times, key.latitude, key.longitude)
    sky = pvlib.clearsky.simplified_solis(sun["apparent_elevation"].to_numpy())
    poa = pvlib.irradiance.get_total_irradiance(
        key.tilt,
        key.azimuth,
        sun["apparent_zenith"].to_numpy(),
        sun["azimuth"].to_numpy(),
        np.asarray(sky["dni"]),
        np.asarray(sky["ghi"]),
        np.asarray(sky["dhi"]),
    )["poa_global"]
    poa = np.nan_to_num(np.asarray(poa, dtype=float), nan=0.0).clip(min=0.0)
    air = ambient_temperature(key.latitude, key.longitude, utc_day * DAY_S + offsets)
    cell = pvlib.temperature.faiman(poa, air)
    dc = pvlib.pvsystem.pvwatts_dc(poa, cell, 1.0, GAMMA_PDC)
    ac = np.nan_to_num(np.asarray(pvlib.inverter.pvwatts(dc, 1.0 / INVERTER_DC_RATIO), dtype=float), nan=0.0)
    elevation = sun["elevation"].to_numpy()
    # Interpolating between a dark and a lit sample would leak power before sunrise, so a minute counts
    # as daylight only when the true (unrefracted) sun is above the horizon at both of its ends.
    up = (elevation[:-1] > 0) & (elevation[1:] > 0)
    sun_up = np.append(up, up[-1])
    curve = np.where(sun_up, ac.clip(min=0.0), 0.0), sun_up, air
    for array in curve:
        array.flags.writeable = False  # kept and shared (see the cache above)
    return curve


class CurveBank:
    """Day curves for every distinct site and orientation of the fleet, rebuilt when the UTC day changes."""

    def __init__(self, keys: list[CurveKey]):
        self.keys = keys
        self.day: int | None = None
        self.power = self.sun_up = self.air = None
        self._pending: tuple[int, list] | None = None

    def ensure_day(self, utc_day: int) -> None:
        if self.day == utc_day:
            return
        rows = self._pending[1] if self._pending and self._pending[0] == utc_day else []
        rows = rows + [day_curve(k, utc_day) for k in self.keys[len(rows) :]]
        self.power = np.stack([r[0] for r in rows])
        self.sun_up = np.stack([r[1] for r in rows])
        self.air = np.stack([r[2] for r in rows])
        self.day, self._pending = utc_day, None

    def prefetch_step(self, utc_day: int) -> bool:
        """Compute one more curve of `utc_day` ahead of time; True when that day is complete.

        Called from a cooperative loop that yields between steps, so the hub never stalls for the whole bank.
        """
        if self.day == utc_day:
            return True
        if not self._pending or self._pending[0] != utc_day:
            self._pending = (utc_day, [])
        rows = self._pending[1]
        if len(rows) < len(self.keys):
            rows.append(day_curve(self.keys[len(rows)], utc_day))
        return len(rows) == len(self.keys)

    def sample(self, rows: np.ndarray, utc_seconds: float):
        """PV per watt-peak, sun-up flag and air temperature for each device row at one instant."""
        utc_day = int(utc_seconds // DAY_S)
        self.ensure_day(utc_day)
        position = (utc_seconds - utc_day * DAY_S) / SAMPLE_S
        k = min(int(position), SAMPLES_PER_DAY - 1)
        f = position - k
        power = self.power[rows, k] * (1 - f) + self.power[rows, k + 1] * f
        sun_up = self.sun_up[rows, k]
        air = self.air[rows, k] * (1 - f) + self.air[rows, k + 1] * f
        return np.where(sun_up, power, 0.0), sun_up, air
