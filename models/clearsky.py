"""Expected clear-sky PV power of a site, from pvlib, as a cheap per-day table.

pvlib costs milliseconds per call, and a CPU-bound handler freezes every actor of the process (all
actors share one gevent hub), so the alert engine never calls it per reading: once per UTC day and site a
table of the day's expected power every TABLE_STEP_S is computed (289 points, ~7 ms), and each
reading only interpolates in it. The model: the simplified Solis clear sky, transposed onto the panel
plane, PVWatts DC at the given peak power (no temperature loss, so the expectation is an upper bound).

Given a pool (`compute`: a gevent ThreadPool's `spawn`), tables and sunsets are computed on its native
thread, never on the caller's greenlet: a value not ready yet is answered None at once (the engine
judges that reading no further), and the next day's table is asked for in the last PREFETCH_S of the
UTC day (each site at its own moment, so the work is spread out), so a site's table is ready before its
day starts. Without a pool (pure tests, tools) they are
computed in line.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import pvlib

DAY_S = 86400.0
TABLE_STEP_S = 300.0
POINTS = int(DAY_S / TABLE_STEP_S) + 1
TABLE_TIMES = np.arange(POINTS) * TABLE_STEP_S
PREFETCH_S = 6 * 3600.0


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


class Background:
    """Values computed once per key, on a pool when there is one: `get` answers None until it is ready.

    `compute` is a pool's spawn (it returns something with `rawlink`, called back on the caller's hub);
    a computation that failed is forgotten, so the next `get` asks again.
    """

    def __init__(self, work: Callable[..., Any], compute: Callable | None = None):
        self.work = work
        self.compute = compute
        self.ready: dict = {}
        self.pending: set = set()

    def get(self, key, *args):
        if key in self.ready:
            return self.ready[key]
        self.ask(key, *args)
        return self.ready.get(key)  # computed in line when there is no pool

    def ask(self, key, *args) -> None:
        if key in self.ready or key in self.pending:
            return
        if self.compute is None:
            self.ready[key] = self.work(*args)
            return
        self.pending.add(key)

        def done(result, key=key):
            self.pending.discard(key)
            if result.successful():
                self.ready[key] = result.value

        self.compute(self.work, *args).rawlink(done)

    def keep(self, wanted: Callable[[Any], bool]) -> None:
        self.ready = {k: v for k, v in self.ready.items() if wanted(k)}


class ClearSky:
    """Day tables per site, kept for the previous, current and next UTC day only."""

    def __init__(self, compute: Callable | None = None):
        self.tables = Background(day_table, compute)
        self.today = -1

    def expected_w(self, site: Site, t: float) -> float | None:
        """The expected power at t, or None while its table is being computed."""
        utc_day = int(t // DAY_S)
        if utc_day > self.today:
            self.today = utc_day
            self.tables.keep(lambda key: key[1] >= utc_day - 1)
        table = self.tables.get((site, utc_day), site, utc_day)
        if table is None:
            return None
        into_day = t - utc_day * DAY_S
        if into_day > DAY_S - PREFETCH_S * (hash(site) % 997 + 1) / 997:
            self.tables.ask((site, utc_day + 1), site, utc_day + 1)
        return float(np.interp(into_day, TABLE_TIMES, table))


def solar_day(longitude: float, t: float) -> int:
    """The day number of t in local mean solar time, so that a day's sunset never straddles two of them."""
    return int((t + longitude / 15.0 * 3600.0) // DAY_S)


def sunset_of(latitude: float, longitude: float, day: int) -> float | None:
    """The sunset (UTC epoch seconds) of one solar day at a place; None in polar day or night."""
    noon = pd.to_datetime([(day + 0.5) * DAY_S - longitude / 15.0 * 3600.0], unit="s", utc=True)
    sunset = pvlib.solarposition.sun_rise_set_transit_spa(noon, latitude, longitude)["sunset"].iloc[0]
    return None if pd.isna(sunset) else float(sunset.timestamp())


class Sunsets:
    """Sunset per (place, solar day), computed once each: pvlib's SPA costs ~13 ms."""

    def __init__(self, compute: Callable | None = None):
        self.known = Background(sunset_of, compute)

    def of(self, latitude: float, longitude: float, t: float) -> tuple[int, float | None] | None:
        """(solar day, its sunset or None in polar day or night), or None while it is being computed."""
        day = solar_day(longitude, t)
        if len(self.known.ready) > 100_000:
            self.known.keep(lambda key: key[2] >= day - 1)
        key = (latitude, longitude, day)
        sunset = self.known.get(key, latitude, longitude, day)
        if sunset is None and key not in self.known.ready:
            return None
        return day, sunset
