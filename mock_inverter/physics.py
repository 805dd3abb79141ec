"""Sun and PV: one pvlib day curve per (site, panel orientation, UTC day), interpolated per tick.

pvlib costs milliseconds per call, so a curve is computed once per UTC day at 1-minute resolution and
every tick only does a vectorised linear interpolation. Curves are per UTC day (not local day) so all
devices share the same sample index at a given instant.

A process that was told a directory (`use_curve_store`: `python -m mock_inverter` does, var/cache/day-curves
unless told otherwise) keeps the curves it computes there and reads them back at its next start: computing a
day's curves costs a mock start a second or two of CPU, most of it importing pvlib (which pulls in scipy) and
pandas, which a start that finds every curve on disk never imports. See CurveStore.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import logging
import math
import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

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


Curve = tuple[np.ndarray, np.ndarray, np.ndarray]


# Simulators of one process on the same sites (tests, a restarted world) ask for the same days: a curve is a pure
# function of its key and day, and the bank stacks copies of it, so one computed is kept for the next.
@functools.lru_cache(maxsize=256)
def day_curve(key: CurveKey, utc_day: int) -> Curve:
    """Per-watt-peak AC power, 'sun up over the whole minute' flag and air temperature for one UTC day.

    Arrays have SAMPLES_PER_DAY + 1 points so the last minute can interpolate to the next midnight. Read-only:
    they are kept and shared. From the curve store when the process has one and it holds the curve.
    """
    store = _curve_store
    curve = store.load(key, utc_day) if store else None
    if curve is None:
        curve = compute_day_curve(key, utc_day)
        if store:
            store.save(key, utc_day, curve)
    for array in curve:
        array.flags.writeable = False
    return curve


def compute_day_curve(key: CurveKey, utc_day: int) -> Curve:
    """The day curve (see day_curve) from pvlib."""
    import pandas as pd  # here, not at the top: see the module's docstring
    import pvlib

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
    return np.where(sun_up, ac.clip(min=0.0), 0.0), sun_up, air


log = logging.getLogger(__name__)
POINTS = SAMPLES_PER_DAY + 1
DIGEST_BYTES = 32
# A file's body: power and air temperature as float64, then the sun-up flags a byte each.
_AIR_AT, _SUN_UP_AT, _BODY_BYTES = POINTS * 8, POINTS * 16, POINTS * 17


class CurveStore:
    """Day curves kept on disk, one file per (CurveKey, UTC day), under a directory named after everything
    else a curve depends on: this file's source and the versions of pvlib, pandas and numpy. An edit of the
    physics or an upgrade then reads none of the old curves. The first curve a process writes first removes
    the files (of any version) written more than KEEP_S ago, so a store of mocks started on "now" day after
    day stays about a week of curves; one removed that is still wanted is only computed again.

    A file holds the power and air temperature as float64 and the sun-up flags as bytes (a curve read back is
    the computed one to the bit), then a BLAKE2b digest of those bytes: a truncated or corrupt file, or any
    that cannot be read, counts as missing, and the curve is computed and written again. A file is written
    under a temporary name and renamed into place, so mocks starting side by side on the same directory each
    see a whole file or none; two writing the same curve write the same bytes, and the last rename wins.
    A store that cannot be written (read-only, disk full) is only logged: the mock runs on computed curves.
    """

    KEEP_S = 7 * 86400.0

    def __init__(self, directory: Path):
        self.root = Path(directory)
        self.directory = self.root / physics_version()
        self.pruned = False

    def path(self, key: CurveKey, utc_day: int) -> Path:
        # repr of a float is exact, so two keys share a file only when they are equal.
        name = f"{key.latitude!r} {key.longitude!r} {key.tilt!r} {key.azimuth!r} {utc_day}"
        return self.directory / (hashlib.blake2b(name.encode(), digest_size=16).hexdigest() + ".curve")

    def load(self, key: CurveKey, utc_day: int) -> Curve | None:
        path = self.path(key, utc_day)
        try:
            data = path.read_bytes()
        except OSError:
            return None
        body = data[:-DIGEST_BYTES]
        if len(body) != _BODY_BYTES or hashlib.blake2b(body, digest_size=DIGEST_BYTES).digest() != data[-DIGEST_BYTES:]:
            log.warning("day curve store: %s is damaged; computing it again", path.name)
            return None
        power = np.frombuffer(body, np.float64, POINTS, 0)
        air = np.frombuffer(body, np.float64, POINTS, _AIR_AT)
        sun_up = np.frombuffer(body, np.bool_, POINTS, _SUN_UP_AT)
        return power, sun_up, air

    def save(self, key: CurveKey, utc_day: int, curve: Curve) -> None:
        power, sun_up, air = curve
        body = (
            np.asarray(power, np.float64).tobytes()
            + np.asarray(air, np.float64).tobytes()
            + np.asarray(sun_up, np.bool_).tobytes()
        )
        data = body + hashlib.blake2b(body, digest_size=DIGEST_BYTES).digest()
        temporary = None
        try:
            if not self.pruned:
                self.pruned = True
                self.prune(time.time() - self.KEEP_S)
            self.directory.mkdir(parents=True, exist_ok=True)
            descriptor, temporary = tempfile.mkstemp(dir=self.directory, prefix=".writing-")
            with os.fdopen(descriptor, "wb") as file:
                file.write(data)
            os.replace(temporary, self.path(key, utc_day))
        except OSError as exc:
            log.warning("day curve store: cannot write to %s: %s", self.directory, exc)
            if temporary:
                with contextlib.suppress(OSError):
                    os.unlink(temporary)

    def prune(self, written_before: float) -> None:
        """Remove the files of every version written before `written_before` (epoch seconds), then the other
        versions' directories left empty."""
        for path in self.root.glob("*/*"):
            with contextlib.suppress(OSError):  # another mock removed it first
                if path.stat().st_mtime < written_before:
                    path.unlink()
        for directory in self.root.glob("*/"):
            if directory.name != self.directory.name:
                with contextlib.suppress(OSError):  # not empty
                    directory.rmdir()


@functools.lru_cache(maxsize=1)
def physics_version() -> str:
    """A name for everything a day curve depends on besides its key and day."""
    from importlib.metadata import version

    parts = [Path(__file__).read_bytes()] + [version(name).encode() for name in ("pvlib", "pandas", "numpy")]
    return hashlib.blake2b(b"\0".join(parts), digest_size=8).hexdigest()


_curve_store: CurveStore | None = None


def use_curve_store(directory: str | Path | None) -> None:
    """Keep this process's day curves under `directory` (None or "": compute them at every start)."""
    global _curve_store
    _curve_store = CurveStore(Path(directory)) if directory else None
    day_curve.cache_clear()


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

    def prefetch_step(self, utc_day: int, compute: Callable[[CurveKey, int], Curve] = day_curve) -> bool:
        """Compute one more curve of `utc_day` ahead of time, with compute; True when that day is complete.

        Called from a cooperative loop that yields between steps, so the hub never stalls for the whole bank.
        compute may yield (the server runs it on a thread): the day may be completed by ensure_day meanwhile.
        """
        if self.day == utc_day:
            return True
        if not self._pending or self._pending[0] != utc_day:
            self._pending = (utc_day, [])
        rows = self._pending[1]
        if len(rows) < len(self.keys):
            curve = compute(self.keys[len(rows)], utc_day)
            if self._pending and self._pending[1] is rows:  # else ensure_day finished the day meanwhile
                rows.append(curve)
        return self.day == utc_day or len(rows) == len(self.keys)

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
