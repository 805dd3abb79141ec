"""Growatt's per-device-type field names, shared by the v1 and v4 dialects (see README for the table)."""

from __future__ import annotations

import time

TYPE_CODES = {"inv": 1, "storage": 2, "sph": 5, "min": 7}
STATUS = {"waiting": (0, "Waiting"), "normal": (1, "Normal"), "offline": (-1, "Offline"), "fault": (3, "Fault")}


def local_time(reading: dict) -> str:
    """Growatt reports the plant's local wall time without an offset."""
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(reading["t"] + reading["utc_offset_s"]))


def _w(value):
    return round(value, 1)


def _kwh(value_wh):
    return round(value_wh / 1000.0, 1)


def row(device_type: str, reading: dict) -> dict:
    status, status_text = STATUS[reading["status"]]
    r = reading
    common = {
        "serialNum": r["serial"],
        "time": local_time(r),
        "status": status,
        "statusText": status_text,
        "lost": r["status"] == "offline",
        "ppv": _w(r["pv_power_w"]),
    }
    soc = round(r["battery_soc_pct"], 1) if r["battery_soc_pct"] is not None else 0
    if device_type == "inv":
        return {
            **common,
            "pac": _w(r["ac_power_w"]),
            "powerToday": _kwh(r["pv_energy_today_wh"]),
            "powerTotal": _kwh(r["pv_energy_total_wh"]),
            "temperature": round(r["temperature_c"], 1),
        }
    if device_type == "storage":
        return {
            **common,
            "outPutPower": _w(r["load_power_w"]),
            "pAcInPut": _w(r["grid_import_w"]),
            "pacToGridTotal": _w(r["grid_export_w"]),
            "pCharge": _w(r["battery_charge_w"]),
            "pDischarge": _w(r["battery_discharge_w"]),
            "capacity": soc,
            "vBat": round(r["battery_voltage_v"] or 0.0, 1),
            "epvToday": _kwh(r["pv_energy_today_wh"]),
            "epvTotal": _kwh(r["pv_energy_total_wh"]),
            "eLoadToday": _kwh(r["load_energy_today_wh"]),
            "eLoadTotal": _kwh(r["load_energy_total_wh"]),
            "eToUserToday": _kwh(r["import_energy_today_wh"]),
            "eToUserTotal": _kwh(r["import_energy_total_wh"]),
            "eToGridToday": _kwh(r["export_energy_today_wh"]),
            "eToGridTotal": _kwh(r["export_energy_total_wh"]),
            "eChargeToday": _kwh(r["charge_energy_today_wh"]),
            "eChargeTotal": _kwh(r["charge_energy_total_wh"]),
            "eDischargeToday": _kwh(r["discharge_energy_today_wh"]),
            "eDischargeTotal": _kwh(r["discharge_energy_total_wh"]),
            "invTemperature": round(r["temperature_c"], 1),
        }
    # sph (mix) and min (tlx) share most names; they differ in battery fields and the load power name.
    ac_today = r["pv_energy_today_wh"] + r["discharge_energy_today_wh"] - r["charge_energy_today_wh"]
    ac_total = r["pv_energy_total_wh"] + r["discharge_energy_total_wh"] - r["charge_energy_total_wh"]
    shared = {
        **common,
        "pac": _w(r["ac_power_w"]),
        "pacToUserTotal": _w(r["grid_import_w"]),
        "pacToGridTotal": _w(r["grid_export_w"]),
        "epvToday": _kwh(r["pv_energy_today_wh"]),
        "epvTotal": _kwh(r["pv_energy_total_wh"]),
        "eacToday": _kwh(max(ac_today, 0.0)),
        "eacTotal": _kwh(max(ac_total, 0.0)),
        "elocalLoadToday": _kwh(r["load_energy_today_wh"]),
        "elocalLoadTotal": _kwh(r["load_energy_total_wh"]),
        "etoUserToday": _kwh(r["import_energy_today_wh"]),
        "etoUserTotal": _kwh(r["import_energy_total_wh"]),
        "etoGridToday": _kwh(r["export_energy_today_wh"]),
        "etoGridTotal": _kwh(r["export_energy_total_wh"]),
        "temp1": round(r["temperature_c"], 1),
    }
    if device_type == "sph":
        return {
            **shared,
            "pLocalLoad": _w(r["load_power_w"]),
            "pcharge1": _w(r["battery_charge_w"]),
            "pdischarge1": _w(r["battery_discharge_w"]),
            "soc": soc,
            "bmsSOC": soc,
            "vbat": round(r["battery_voltage_v"] or 0.0, 1),
            "echarge1Today": _kwh(r["charge_energy_today_wh"]),
            "echarge1Total": _kwh(r["charge_energy_total_wh"]),
            "edischarge1Today": _kwh(r["discharge_energy_today_wh"]),
            "edischarge1Total": _kwh(r["discharge_energy_total_wh"]),
        }
    return {
        **shared,
        "pLocalLoadTotal": _w(r["load_power_w"]),
        "bdc1ChargePower": _w(r["battery_charge_w"]),
        "bdc1DischargePower": _w(r["battery_discharge_w"]),
        "bdc1Soc": soc,
        "bmsSoc": soc,
        "echargeToday": _kwh(r["charge_energy_today_wh"]),
        "echargeTotal": _kwh(r["charge_energy_total_wh"]),
        "edischargeToday": _kwh(r["discharge_energy_today_wh"]),
        "edischargeTotal": _kwh(r["discharge_energy_total_wh"]),
    }
