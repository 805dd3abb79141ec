"""The fleet as numpy arrays, advanced tick by tick in simulated time.

One tick of 1,000 devices is a few dozen vectorised array operations; nothing here loops over devices
except building a reading for a request.
"""

from __future__ import annotations

import math
from datetime import datetime, timezone
from zoneinfo import ZoneInfo

import numpy as np

from .battery import dispatch
from .config import Fleet
from .household import cloud_factor, household_load
from .noise import SeededNoise, uniform
from .physics import DAY_S, CurveBank, CurveKey

COUNTERS = ("pv", "load", "import", "export", "charge", "discharge")
OFFSET_SLOT_S = 900.0  # UTC offsets only change on quarter-hour boundaries
SALT_LIFETIME = 6
# The day so far is simulated at start-up in steps of this size: 288 vectorised steps for a whole day,
# within about 2% of the energy a start at midnight ticking every minute would have counted.
WARM_UP_STEP_S = 300.0


class Simulator:
    def __init__(self, fleet: Fleet, start: float):
        self.fleet = fleet
        self.devices = fleet.devices
        self.index = {d.serial: i for i, d in enumerate(self.devices)}
        self.start = start
        self.tick_s = fleet.tick_s
        self.tick_no = 0
        self.t = start
        devices = self.devices
        n = len(devices)

        keys = sorted(
            {CurveKey(d.latitude, d.longitude, d.tilt, d.azimuth) for d in devices},
            key=lambda k: (k.latitude, k.longitude, k.tilt, k.azimuth),
        )
        row_of = {k: i for i, k in enumerate(keys)}
        self.curves = CurveBank(keys)
        self.rows = np.array([row_of[CurveKey(d.latitude, d.longitude, d.tilt, d.azimuth)] for d in devices])

        def column(get, dtype=float):
            return np.array([get(d) for d in devices], dtype=dtype)

        self.seeds = column(lambda d: d.seed, np.uint64)
        self.weather_seeds = column(lambda d: d.weather_seed & 0xFFFFFFFFFFFFFFFF, np.uint64)
        self._household_noise, self._weather_noise = SeededNoise(self.seeds), SeededNoise(self.weather_seeds)
        self.pv_peak = column(lambda d: d.pv_peak_w)
        self.pv_share = np.ones(n)  # below 1 for a shaded or soiled device
        self.cloudiness = column(lambda d: d.cloudiness)
        self.base_w = column(lambda d: d.load.base_w)
        self.morning_w = column(lambda d: d.load.morning_peak_w)
        self.evening_w = column(lambda d: d.load.evening_peak_w)
        self.spike_w = column(lambda d: d.load.spike_w)
        self.spikes_per_hour = column(lambda d: d.load.spikes_per_hour)
        self.has_battery = column(lambda d: d.battery is not None, bool)
        battery = [d.battery for d in devices]
        self.capacity_wh = np.array([b.capacity_wh if b else 0.0 for b in battery])
        self.min_wh = np.array([b.capacity_wh * b.soc_min_pct / 100 if b else 0.0 for b in battery])
        self.max_wh = np.array([b.capacity_wh * b.soc_max_pct / 100 if b else 0.0 for b in battery])
        self.max_charge_w = np.array([b.max_charge_w if b else 0.0 for b in battery])
        self.max_discharge_w = np.array([b.max_discharge_w if b else 0.0 for b in battery])
        self.one_way_eff = np.array([math.sqrt(b.round_trip_efficiency) if b else 1.0 for b in battery])
        self.stored_wh = np.array([b.capacity_wh * b.initial_soc_pct / 100 if b else 0.0 for b in battery])
        self.every = column(lambda d: round(d.tick_s / self.tick_s), np.int64)
        self.phase = (self.seeds % self.every.astype(np.uint64)).astype(np.int64)
        self._everyone_every_tick = bool((self.every == 1).all())

        self._tz_groups = {}
        for i, d in enumerate(devices):
            self._tz_groups.setdefault(d.timezone, []).append(i)
        self._tz_groups = {ZoneInfo(tz): np.array(ix) for tz, ix in self._tz_groups.items()}
        self.utc_offset_s = np.zeros(n)
        self._offset_slot = None

        # Lifetime counters start where a few hundred days of use would have left them.
        age_days = 100 + 900 * uniform(self.seeds, 0, SALT_LIFETIME)
        daily_wh = np.stack(
            [
                self.pv_peak * 3.5,
                self.base_w * 30,
                self.base_w * 12,
                self.pv_peak * 1.5,
                self.capacity_wh * 0.4,
                self.capacity_wh * 0.35,
            ]
        )
        self.total_wh = daily_wh * age_days
        self.today_wh = np.zeros((len(COUNTERS), n))

        zeros = np.zeros(n)
        self.pv_w, self.load_w, self.import_w, self.export_w = zeros.copy(), zeros.copy(), zeros.copy(), zeros.copy()
        self.charge_w, self.discharge_w, self.losses_w, self.temperature_c = (
            zeros.copy(),
            zeros.copy(),
            zeros.copy(),
            zeros.copy(),
        )
        self.sun_up = np.zeros(n, bool)
        self.updated_at = np.full(n, start)
        self._refresh_offsets(start)
        self.local_day = np.floor((start + self.utc_offset_s) / DAY_S)
        self._offline: dict[int, dict] = {}
        self._faulted: set[int] = set()
        self._held_soc: dict[int, float] = {}
        self._live_day_so_far(start)
        self._compute(start, integrate=False)

    def _live_day_so_far(self, start: float) -> None:
        """Run each device's day from its local midnight up to `start`, in coarse steps.

        A real inverter started at 11:30 reports the morning's yield and a battery that has lived the
        night; so do these: "today" counters, lifetime counters and the state of charge agree with the
        power shown, whatever the start time.
        """
        midnight = self._local_midnights(start)
        t = float(midnight.min())
        while t < start:
            step = min(WARM_UP_STEP_S, start - t)
            t += step
            self._compute(t, integrate=True, dt=step, due=t > midnight)
        self.today_wh[:, midnight >= start] = 0.0

    def _local_midnights(self, start: float) -> np.ndarray:
        midnights = np.zeros(len(self.devices))
        for zone, ix in self._tz_groups.items():
            day = datetime.fromtimestamp(start, zone).date()
            midnights[ix] = datetime(day.year, day.month, day.day, tzinfo=zone).timestamp()
        return midnights

    # -- time -------------------------------------------------------------------------------------------
    def advance_to(self, t: float, max_ticks: int | None = None) -> int:
        """Run every tick due up to simulated time t (all of them, so the result does not depend on timing)."""
        done = 0
        while self.start + (self.tick_no + 1) * self.tick_s <= t and (max_ticks is None or done < max_ticks):
            self.step()
            done += 1
        return done

    def step(self) -> None:
        self.tick_no += 1
        self._compute(self.start + self.tick_no * self.tick_s, integrate=True)

    def _refresh_offsets(self, t: float) -> None:
        slot = int(t // OFFSET_SLOT_S)
        if slot == self._offset_slot:
            return
        moment = datetime.fromtimestamp(t, timezone.utc)
        for zone, ix in self._tz_groups.items():
            self.utc_offset_s[ix] = moment.astimezone(zone).utcoffset().total_seconds()
        self._offset_slot = slot

    def _compute(self, t: float, integrate: bool, dt: float | None = None, due: np.ndarray | None = None) -> None:
        self._refresh_offsets(t)
        local = t + self.utc_offset_s
        local_hour = (local % DAY_S) / 3600.0
        pv_per_wp, sun_up, air = self.curves.sample(self.rows, t)
        pv = self.pv_peak * self.pv_share * pv_per_wp * cloud_factor(t, self._weather_noise, self.cloudiness)
        load = household_load(
            t,
            local_hour,
            self._household_noise,
            self.base_w,
            self.morning_w,
            self.evening_w,
            self.spike_w,
            self.spikes_per_hour,
        )
        dt = self.every * self.tick_s if dt is None else dt
        charge, discharge, losses, stored = dispatch(
            pv,
            load,
            self.stored_wh,
            self.min_wh,
            self.max_wh,
            self.max_charge_w,
            self.max_discharge_w,
            self.one_way_eff,
            dt,
        )
        grid = load + charge - pv - discharge
        imported, exported = grid.clip(min=0.0), (-grid).clip(min=0.0)
        ac = pv + discharge - charge
        heat = np.divide(ac, self.pv_peak, out=np.zeros_like(ac), where=self.pv_peak > 0)
        temperature = (
            air
            + 25.0 * heat
            + 8.0 * np.divide(charge + discharge, self.max_charge_w, out=np.zeros_like(ac), where=self.max_charge_w > 0)
        )

        # Every device is due on most ticks (all of them unless some tick less often than the fleet): then each
        # new value simply replaces the old, which np.where(due, ...) would do at the cost of a copy apiece.
        if due is None and not (self._everyone_every_tick or not integrate):
            due = (self.tick_no % self.every) == self.phase
        everyone = due is None or bool(due.all())
        if integrate:
            day = np.floor(local / DAY_S)
            energy = np.stack([pv, load, imported, exported, charge, discharge]) * (dt / 3600.0)
            if everyone:
                self.today_wh[:, day != self.local_day] = 0.0
                self.local_day = day
                self.stored_wh = stored
            else:
                self.today_wh[:, due & (day != self.local_day)] = 0.0
                self.local_day = np.where(due, day, self.local_day)
                energy *= due
                self.stored_wh = np.where(due, stored, self.stored_wh)
            self.today_wh += energy
            self.total_wh += energy
        values = {
            "pv_w": pv,
            "load_w": load,
            "import_w": imported,
            "export_w": exported,
            "charge_w": charge,
            "discharge_w": discharge,
            "losses_w": losses,
            "temperature_c": temperature,
            "sun_up": sun_up,
        }
        if everyone:
            self.__dict__.update(values)
            self.updated_at = np.full(len(pv), t, dtype=float)
        else:
            for name, value in values.items():
                setattr(self, name, np.where(due, value, getattr(self, name)))
            self.updated_at = np.where(due, t, self.updated_at)
        self.t = t

    # -- readings ---------------------------------------------------------------------------------------
    @property
    def soc_pct(self) -> np.ndarray:
        return np.divide(
            self.stored_wh * 100.0, self.capacity_wh, out=np.zeros_like(self.stored_wh), where=self.capacity_wh > 0
        )

    def set_offline(self, serials) -> None:
        """Offline devices keep running physically but their reported reading freezes, as when a datalogger drops."""
        wanted = {self.index[s] for s in serials if s in self.index}
        for i in list(self._offline):
            if i not in wanted:
                del self._offline[i]
        for i in wanted - set(self._offline):
            frozen = self._live_reading(i)
            frozen["status"] = "offline"
            self._offline[i] = frozen

    def set_faulted(self, serials) -> None:
        """Faulted devices keep reporting, with status "fault" (their PV still computed, as a tripped string)."""
        self._faulted = {self.index[s] for s in serials if s in self.index}

    def set_shaded(self, shares: dict) -> None:
        """Scale each named device's PV by its share (shade or soiling); the others produce their full PV."""
        self.pv_share = np.ones(len(self.devices))
        for serial, share in shares.items():
            if serial in self.index:
                self.pv_share[self.index[serial]] = share

    def set_battery_soc(self, held: dict) -> None:
        """Devices whose battery reports this state of charge (drained or recharged) while it is set."""
        self._held_soc = {self.index[s]: pct for s, pct in held.items() if s in self.index}

    def offline_serials(self) -> list[str]:
        return sorted(self.devices[i].serial for i in self._offline)

    def reading(self, serial: str) -> dict:
        i = self.index[serial]
        return dict(self._offline[i]) if i in self._offline else self._live_reading(i)

    def _live_reading(self, i: int) -> dict:
        has_battery = bool(self.has_battery[i])
        soc = self._held_soc.get(i, float(self.soc_pct[i]))
        reading = {
            "serial": self.devices[i].serial,
            "t": float(self.updated_at[i]),
            "utc_offset_s": float(self.utc_offset_s[i]),
            "status": "fault" if i in self._faulted else "normal" if self.sun_up[i] else "waiting",
            "pv_power_w": float(self.pv_w[i]),
            "ac_power_w": float(self.pv_w[i] + self.discharge_w[i] - self.charge_w[i]),
            "load_power_w": float(self.load_w[i]),
            "grid_import_w": float(self.import_w[i]),
            "grid_export_w": float(self.export_w[i]),
            "battery_charge_w": float(self.charge_w[i]),
            "battery_discharge_w": float(self.discharge_w[i]),
            "battery_soc_pct": soc if has_battery else None,
            "battery_voltage_v": 46.0 + 8.0 * soc / 100.0 if has_battery else None,
            "temperature_c": float(self.temperature_c[i]),
        }
        for k, name in enumerate(COUNTERS):
            reading[f"{name}_energy_today_wh"] = float(self.today_wh[k, i])
            reading[f"{name}_energy_total_wh"] = float(self.total_wh[k, i])
        return reading
