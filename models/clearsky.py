"""Expected clear-sky PV power of a site, from pvlib, as a cheap per-day table.

pvlib costs milliseconds per call, and a CPU-bound handler freezes every actor of the process (all
actors share one gevent hub), so the alert engine never calls it per reading: once per UTC day and site a
table of the day's expected power every TABLE_STEP_S is computed (289 points), and each reading only
interpolates in it. The model: the simplified Solis clear sky, transposed onto the panel plane, PVWatts
DC at the given peak power (no temperature loss, so the expectation is an upper bound).

Tables are computed many sites at a time (day_tables: one vectorised call, the day's solar ephemeris
computed once for all of them): ~0.1 ms of CPU a table in a batch of 1,000 against ~4 ms one by one, so
an engine starting with 1,000 sites spends ~0.1 s on them, not 4 to 7 s (docs/benchmarks.md). That is
why they are not cached across restarts: recomputing is cheaper than any store.

Given a pool (`compute`: a QueuedThread's `spawn`), tables and sunsets are computed on its native
thread, never on the caller's greenlet, which never waits for it either: a value not ready yet is
answered None at once (the engine judges that reading no further), the keys asked for while a computation
runs go together in the next one, and the next day's table is asked for in the last PREFETCH_S of the UTC day
(each site at its own moment), so a site's table is ready before its day starts. Without a pool (pure tests,
tools) they are computed in line.

numpy, pandas and pvlib are imported when first needed, not by this module: their import costs ~1 s of CPU
(pvlib pulls in scipy; numpy alone ~0.12 s), which a worker whose alert engine has no production_low or
daily_summary rule never needs to pay. Never on the pool's thread, though: importing pvlib imports h5py, which
runs `uname -p` in a subprocess, and gevent watches children only from the main thread's loop; so ClearSky and
Sunsets import them on the caller's greenlet before their first computation goes to the pool (one pause of ~1 s
of that hub, once in the process's life).
"""

from __future__ import annotations

import functools
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from gevent.event import AsyncResult
from gevent.threadpool import ThreadPool

if TYPE_CHECKING:
    import numpy as np

DAY_S = 86400.0
TABLE_STEP_S = 300.0
POINTS = int(DAY_S / TABLE_STEP_S) + 1
PREFETCH_S = 6 * 3600.0
#: Tables computed in one vectorised call at most (1,000 sites: ~2 MB an intermediate array, ~33 MB at the peak).
TABLES_PER_CALL = 1000
#: What pvlib's get_solarposition assumes when not told (spa_python's defaults).
SPA_ALTITUDE_M, SPA_PRESSURE_MBAR, SPA_TEMPERATURE_C, SPA_DELTA_T_S, SPA_REFRACTION_DEG = (
    0.0,
    1013.25,
    12.0,
    67.0,
    0.5667,
)


@dataclass(frozen=True)
class Site:
    latitude: float
    longitude: float
    peak_power_w: float
    tilt: float = 0.0
    azimuth: float = 180.0


@functools.cache
def import_pvlib():
    """(numpy, pandas, pvlib), imported on the first call (see the module's docstring)."""
    import numpy
    import pandas
    import pvlib
    import pvlib.spa

    return numpy, pandas, pvlib


@functools.cache
def table_times() -> np.ndarray:
    """The seconds into the UTC day of a table's points."""
    numpy = import_pvlib()[0]
    return numpy.arange(POINTS) * TABLE_STEP_S


def importing_pvlib_first(compute: Callable | None) -> Callable | None:
    """`compute` (a pool's spawn), which imports pvlib on the caller's thread before it hands work over."""
    if compute is None:
        return None

    def spawn(work: Callable, *args):
        import_pvlib()
        return compute(work, *args)

    return spawn


def day_tables(sites: Sequence[Site], utc_day: int) -> np.ndarray:
    """Expected clear-sky power (W) of each site at each TABLE_STEP_S of one UTC day, both midnights included
    (one row per site).

    One vectorised call for all the sites: the solar position's costly part (the sun's ephemeris and the
    nutation, ~85 % of a table) depends on the time only, so it is computed once for the day's time grid
    and broadcast against the sites' latitudes and longitudes (pvlib's SPA in numpy, the algorithm and
    defaults `pvlib.solarposition.get_solarposition` uses: the tables are the same to the last bit).
    """
    np, _, pvlib = import_pvlib()

    def column(values: list[float]) -> np.ndarray:  # one row per site, broadcast against the time grid
        return np.array(values, dtype=float)[:, None]

    latitude = column([s.latitude for s in sites])
    longitude = column([s.longitude for s in sites])
    apparent_zenith, _, apparent_elevation, elevation, azimuth, _ = pvlib.spa.solar_position_numpy(
        utc_day * DAY_S + table_times(),
        latitude,
        longitude,
        SPA_ALTITUDE_M,
        SPA_PRESSURE_MBAR,
        SPA_TEMPERATURE_C,
        SPA_DELTA_T_S,
        SPA_REFRACTION_DEG,
        1,
    )
    sky = pvlib.clearsky.simplified_solis(apparent_elevation)
    poa = pvlib.irradiance.get_total_irradiance(
        column([s.tilt for s in sites]),
        column([s.azimuth for s in sites]),
        apparent_zenith,
        azimuth,
        np.asarray(sky["dni"]),
        np.asarray(sky["ghi"]),
        np.asarray(sky["dhi"]),
    )["poa_global"]
    poa = np.nan_to_num(np.asarray(poa, dtype=float), nan=0.0).clip(min=0.0)
    power = np.asarray(pvlib.pvsystem.pvwatts_dc(poa, 25.0, column([s.peak_power_w for s in sites]), 0.0), dtype=float)
    return np.where(elevation > 0, power, 0.0)


def day_table(site: Site, utc_day: int) -> np.ndarray:
    """One site's table (day_tables for one)."""
    return day_tables([site], utc_day)[0]


def tables_of(wanted: Sequence[tuple[Site, int]]) -> list[np.ndarray]:
    """The tables of many (site, UTC day): one day_tables call per day."""
    np = import_pvlib()[0]
    by_day: dict[int, list[int]] = {}
    for index, (_, utc_day) in enumerate(wanted):
        by_day.setdefault(utc_day, []).append(index)
    tables: list[np.ndarray] = [np.empty(0)] * len(wanted)
    for utc_day, indexes in by_day.items():
        for index, table in zip(indexes, day_tables([wanted[i][0] for i in indexes], utc_day)):
            tables[index] = table
    return tables


class Background:
    """Values computed once per key, on a pool when there is one: `get` answers None until it is ready.

    `work` takes a list of argument tuples and returns their values, in order: the keys asked for while a
    computation runs wait for it to end and then go together (up to `batch` of them) in the next one, so a
    start that asks for a thousand tables at once costs a few vectorised calls, not a thousand.
    `compute` is a pool's spawn (it returns something with `rawlink`, called back on the caller's hub);
    a computation that failed is forgotten, so the next `get` asks again.
    """

    def __init__(self, work: Callable[[list[tuple]], list], compute: Callable | None = None, batch: int = 1):
        self.work = work
        self.compute = compute
        self.batch = batch
        self.ready: dict = {}
        self.pending: set = set()  # asked for: waiting for a computation, or in the running one
        self.waiting: dict = {}  # key -> its arguments, for the next computation
        self.running = False

    def get(self, key, *args):
        if key in self.ready:
            return self.ready[key]
        self.ask(key, *args)
        return self.ready.get(key)  # computed in line when there is no pool

    def ask(self, key, *args) -> None:
        if key in self.ready or key in self.pending:
            return
        if self.compute is None:
            self.ready[key] = self.work([args])[0]
            return
        self.pending.add(key)
        self.waiting[key] = args
        self._start()

    def _start(self) -> None:
        if self.running or not self.waiting:
            return
        keys = list(self.waiting)[: self.batch]
        args = [self.waiting.pop(key) for key in keys]
        self.running = True

        def done(result):
            self.running = False
            self.pending.difference_update(keys)
            if result.successful():
                self.ready.update(zip(keys, result.value))
            self._start()

        self.compute(self.work, args).rawlink(done)

    def keep(self, wanted: Callable[[Any], bool]) -> None:
        self.ready = {k: v for k, v in self.ready.items() if wanted(k)}


class QueuedThread:
    """One native thread for CPU-bound work, fed through a queue of ours, so that asking never waits.

    gevent's ThreadPool.spawn waits for a free thread: called from the engine's greenlet while the thread
    computes something else, it would hold that greenlet (and every reading behind it) until the thread
    is free. Here the work waits in `waiting` and goes to the pool only when its one thread is idle (the
    pool frees its slot before it calls back, so that spawn never waits). `spawn` answers an AsyncResult
    as the pool's does.
    """

    def __init__(self):
        self.pool = ThreadPool(1)
        self.waiting: deque[tuple[Callable, tuple, AsyncResult]] = deque()
        self.busy = False

    def spawn(self, work: Callable, *args) -> AsyncResult:
        result = AsyncResult()
        self.waiting.append((work, args, result))
        self._next()
        return result

    def _next(self) -> None:
        if self.busy or not self.waiting:
            return
        work, args, result = self.waiting.popleft()
        self.busy = True

        def done(outcome):
            self.busy = False
            if outcome.successful():
                result.set(outcome.value)
            else:
                result.set_exception(outcome.exception)
            self._next()

        self.pool.spawn(work, *args).rawlink(done)

    def kill(self) -> None:
        self.waiting.clear()
        self.pool.kill()


class ClearSky:
    """Day tables per site, kept for the previous, current and next UTC day only."""

    def __init__(self, compute: Callable | None = None):
        self.tables = Background(tables_of, importing_pvlib_first(compute), TABLES_PER_CALL)
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
        return float(import_pvlib()[0].interp(into_day, table_times(), table))


def solar_day(longitude: float, t: float) -> int:
    """The day number of t in local mean solar time, so that a day's sunset never straddles two of them."""
    return int((t + longitude / 15.0 * 3600.0) // DAY_S)


def sunset_of(latitude: float, longitude: float, day: int) -> float | None:
    """The sunset (UTC epoch seconds) of one solar day at a place; None in polar day or night."""
    _, pd, pvlib = import_pvlib()

    noon = pd.to_datetime([(day + 0.5) * DAY_S - longitude / 15.0 * 3600.0], unit="s", utc=True)
    sunset = pvlib.solarposition.sun_rise_set_transit_spa(noon, latitude, longitude)["sunset"].iloc[0]
    return None if pd.isna(sunset) else float(sunset.timestamp())


class Sunsets:
    """Sunset per (place, solar day), computed once each: pvlib's SPA costs ~13 ms."""

    def __init__(self, compute: Callable | None = None):
        self.known = Background(lambda wanted: [sunset_of(*args) for args in wanted], importing_pvlib_first(compute))

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
