"""The clear-sky tables computed many sites at once (models/clearsky.py day_tables) are the ones pvlib's own
per-site API gives: the reference below is the table as it was computed one site at a time (solar position
from pvlib.solarposition.get_solarposition), over latitudes from 69 N to 50 S, the four seasons, and panels
of several tilts and orientations."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pvlib
import pytest

from models.clearsky import DAY_S, POINTS, TABLE_STEP_S, Site, day_table, day_tables, tables_of

DAYS = {"march": 20532, "june": 20621, "september": 20715, "december": 20804}  # 2026-03-20 ... 2026-12-17
SITES = [
    Site(69.65, 18.96, 6000.0, 45.0, 180.0),  # Tromsø: polar night in December, midnight sun in June
    Site(52.37, 4.9, 5000.0, 35.0, 180.0),  # Amsterdam
    Site(40.4, -3.7, 3000.0, 20.0, 120.0),  # Madrid, facing south-east
    Site(6.5, 3.4, 4000.0, 10.0, 270.0),  # Lagos, facing west
    Site(-1.3, 36.8, 8000.0, 0.0, 180.0),  # Nairobi, flat
    Site(-33.9, 151.2, 5000.0, 30.0, 0.0),  # Sydney, facing north
    Site(-50.0, -70.0, 2000.0, 60.0, 20.0),  # Patagonia, steep
]


def reference_table(site: Site, utc_day: int) -> np.ndarray:
    """One site's table through pvlib's per-site API, as it was computed before day_tables."""
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


@pytest.mark.parametrize("season", DAYS)
def test_the_tables_of_many_sites_at_once_are_those_of_pvlib_site_by_site(season):
    utc_day = DAYS[season]
    tables = day_tables(SITES, utc_day)
    assert tables.shape == (len(SITES), POINTS)
    for site, table in zip(SITES, tables):
        reference = reference_table(site, utc_day)
        assert np.abs(table - reference).max() <= 1e-9 * site.peak_power_w, (site, season)
        assert np.array_equal(day_table(site, utc_day), table), "one site alone: the same table"
    tromso, amsterdam = tables[0], tables[1]
    assert amsterdam.max() > 0.4 * SITES[1].peak_power_w and amsterdam[0] == amsterdam[-1] == 0.0
    if season == "december":
        assert tromso.max() == 0.0, "polar night"


def test_tables_of_mixed_days_are_each_their_own_days():
    wanted = [(SITES[1], DAYS["june"]), (SITES[5], DAYS["december"]), (SITES[1], DAYS["december"])]
    for (site, utc_day), table in zip(wanted, tables_of(wanted)):
        assert np.abs(table - reference_table(site, utc_day)).max() <= 1e-9 * site.peak_power_w
