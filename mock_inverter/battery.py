"""Battery dispatch for self-consumption: charge from PV surplus, discharge into load, within limits.

Powers are on the bus side (what a meter sees). Round-trip losses are split evenly between charging and
discharging (one-way efficiency = sqrt(round trip)), so stored energy moves by less than the bus power.
"""

from __future__ import annotations

import numpy as np


def dispatch(pv_w, load_w, stored_wh, min_wh, max_wh, max_charge_w, max_discharge_w, one_way_eff, dt_s):
    """Returns (charge_w, discharge_w, losses_w, new_stored_wh); all arrays, all >= 0."""
    hours = dt_s / 3600.0
    surplus = pv_w - load_w
    room_w = (max_wh - stored_wh).clip(min=0.0) / hours / one_way_eff
    available_w = (stored_wh - min_wh).clip(min=0.0) / hours * one_way_eff
    charge = np.minimum(np.minimum(surplus.clip(min=0.0), max_charge_w), room_w)
    discharge = np.minimum(np.minimum((-surplus).clip(min=0.0), max_discharge_w), available_w)
    stored = stored_wh + (charge * one_way_eff - discharge / one_way_eff) * hours
    losses = charge * (1.0 - one_way_eff) + discharge * (1.0 / one_way_eff - 1.0)
    # Float rounding must never push the state of charge outside its limits.
    return charge, discharge, losses, np.minimum(np.maximum(stored, min_wh), max_wh)
