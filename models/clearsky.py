"""Expected clear-sky PV power of a site, from pvlib, as a cheap per-day table.

pvlib costs milliseconds per call, and a CPU-bound handler freezes every actor of the process (all
actors share one gevent hub), so the alert engine never calls it per reading: once per UTC day and site a
table of the day's expected power every TABLE_STEP_S is computed (289 points, ~8 ms), and each
reading only interpolates in it. The model: the simplified Solis clear sky, transposed onto the panel
plane, PVWatts DC at the given peak power (no temperature loss, so the expectation is an upper bound).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import pvlib

DAY_S = 86400.0
TABLE_STEP_S = 300.0
POINTS = int(DAY_S / TABLE_STEP_S) + 1


@dataclass(frozen=True)
class Site:
    latitude: float
    longitude: float
    peak_power_w: float
    tilt: float = 0.0
    azimuth: float = 180.0


def day_table(site: Site, utc_day: int) -> np.ndarray:
    """Expected clear-sky power (W) at each TABLE_STEP_S of one UTC day, both midnights included."""
    times = pd.to_datetime(utc_day * DAY_S + np.arange(POINTS) * TABLE_STEP_S, unit="s", utc=True)
    sun = pvlib.solarposition.get_solarposition(times, site.latitude, site.longitude)
    sky = pvlib.clearsky.simplified_solis(sun["apparent_elevation"].to_numpy())
    poa = pvlib.irradiance.get_total_irradiance(
        site.tilt,
        site.azimuth,
        sun["apparent_zenith"].to_numpy(),
        sun["azimuth"].to_numpy(),
        np.asarray(sky["dni"]),
        np.asarray(sky["ghi"]),
        np.asarray(sky["dhi"]),
    )["poa_global"]
    poa = np.nan_to_num(np.asarray(poa, dtype=float), nan=0.0).clip(min=0.0)
    power = np.asarray(pvlib.pvsystem.pvwatts_dc(poa, 25.0, site.peak_power_w, 0.0), dtype=float)
    return np.where(sun["elevation"].to_numpy() > 0, power, 0.0)


class ClearSky:
    """Day tables per site, kept for the current and the previous UTC day only."""

    def __init__(self):
        self.tables: dict[tuple[Site, int], np.ndarray] = {}

    def expected_w(self, site: Site, t: float) -> float:
        utc_day = int(t // DAY_S)
        table = self.tables.get((site, utc_day))
        if table is None:
            self.tables = {k: v for k, v in self.tables.items() if k[1] >= utc_day - 1}
            table = self.tables[(site, utc_day)] = day_table(site, utc_day)
        return float(np.interp(t - utc_day * DAY_S, np.arange(POINTS) * TABLE_STEP_S, table))


def solar_day(longitude: float, t: float) -> int:
    """The day number of t in local mean solar time, so that a day's sunset never straddles two of them."""
    return int((t + longitude / 15.0 * 3600.0) // DAY_S)


def sunset_of(latitude: float, longitude: float, day: int) -> float | None:
    """The sunset (UTC epoch seconds) of one solar day at a place; None in polar day or night."""
    noon = pd.to_datetime([(day + 0.5) * DAY_S - longitude / 15.0 * 3600.0], unit="s", utc=True)
    sunset = pvlib.solarposition.sun_rise_set_transit_spa(noon, latitude, longitude)["sunset"].iloc[0]
    return None if pd.isna(sunset) else float(sunset.timestamp())


class Sunsets:
    """Sunset per (place, solar day), computed once each: pvlib's SPA costs ~16 ms."""

    def __init__(self):
        self.known: dict[tuple[float, float, int], float | None] = {}

    def of(self, latitude: float, longitude: float, t: float) -> tuple[int, float | None]:
        day = solar_day(longitude, t)
        key = (latitude, longitude, day)
        if key not in self.known:
            if len(self.known) > 100_000:
                self.known = {k: v for k, v in self.known.items() if k[2] >= day - 1}
            self.known[key] = sunset_of(latitude, longitude, day)
        return day, self.known[key]
