"""An inverter's history in a real browser: the range picker (long ranges from the energy rollups), zoom by
dragging, values under the cursor (mouse and keys), and the table of the same data."""

from __future__ import annotations

import math
import re
import time
from datetime import datetime, timedelta

import pytest
from playwright.sync_api import expect

from models.base import iso
from tests.dashboard.conftest import sign_in, wait_for_state

SEEDED_DAYS = 30
STEP_S = 600  # a reading every 10 minutes, as a brand polled every 10 minutes would give
SERIAL = "SBX-NBO-0001"
# Three hours of a reading every second (10,800), ending five days ago: a short span with too many readings
# to draw.
DENSE_DAYS_AGO = 5
DENSE_S = 3 * 3600


@pytest.fixture(scope="module")
def month(system):
    """A month of readings for one inverter (ending three hours ago, before the live ones), and its days
    rolled up as the purger does. Returns the inverter id."""
    from models import energy, inverters
    from models.db import open_database

    inverter_id = system.inverters[SERIAL]
    owner = open_database(system.env["DATABASE_URL"])
    end = time.time() - 3 * 3600
    start = end - SEEDED_DAYS * 86400
    dense_end = time.time() - DENSE_DAYS_AGO * 86400
    dense = [dense_end - DENSE_S + i for i in range(DENSE_S) if i % STEP_S]
    rows = []
    first = int(start - start % STEP_S)
    for t in sorted([*range(first, int(end), STEP_S), *dense]):
        hour = t % 86400 / 3600
        pv = max(0.0, 3000 * math.sin(math.pi * (hour - 6) / 12))
        load = 400 + 300 * math.cos(math.pi * hour / 12) ** 2
        net = pv - load
        data = {
            "inverter_id": inverter_id,
            "brand": "sandbox",
            "serial": SERIAL,
            "time": iso(t),
            "status": "normal" if pv else "waiting",
            "pv_power_w": pv,
            "load_power_w": load,
            "grid_import_w": max(0.0, -net),
            "grid_export_w": max(0.0, net),
            "battery_power_w": 0.0,
            "battery_soc_pct": 50.0,
        }
        rows.append({"inverter_id": inverter_id, "time": t, "event_id": None, "data": data})
    owner.write(inverters.store_readings, rows)
    zone = energy.zone_of("Africa/Nairobi")
    day = energy.local_date(start, zone)
    while day < energy.local_date(end, zone) - timedelta(days=1):
        owner.write(energy.store_day, inverter_id, zone, day)
        day += timedelta(days=1)
    return inverter_id


def open_history(system, new_page, inverter_id):
    page = new_page()
    page.console_errors = []
    page.on("console", lambda m: page.console_errors.append(m.text) if m.type == "error" else None)
    page.api_calls = []
    page.on("request", lambda r: page.api_calls.append(r.url) if "/inverters/" in r.url else None)
    sign_in(page, system.url, system.owner_key, f"/ui/inverters/{inverter_id}")
    wait_for_state(page, "live")
    expect(page.locator("#history-note")).to_contain_text("The last hour of readings")
    # The latest reading's figures are there with the history, not only once the next live one comes.
    assert page.locator('[data-figure="load_power_w"]').inner_text() != "–"
    return page


def pick(page, label: str, note: str | re.Pattern) -> tuple[list, float]:
    """Pick a range; the API calls it made and how long it took until the charts had it (s)."""
    page.api_calls.clear()
    started = time.monotonic()
    page.get_by_label(label, exact=True).check()
    expect(page.locator("#history-note")).to_contain_text(note)
    return list(page.api_calls), time.monotonic() - started


def points(page) -> int:
    return page.evaluate("window.inverterPage.current().rows.filter(r => r !== null).length")


def x_range(page, chart: str = "power") -> list:
    return page.evaluate(
        f"(() => {{ const s = window.inverterPage.charts['{chart}'].scales.x; return [s.min, s.max]; }})()"
    )


def drag(page, box, start: float, end: float) -> None:
    """Drag across a chart from one fraction of its width to another, as a person zooming in does."""
    page.mouse.move(box["x"] + box["width"] * start, box["y"] + box["height"] * 0.5)
    page.mouse.down()
    page.mouse.move(box["x"] + box["width"] * end, box["y"] + box["height"] * 0.5, steps=5)
    page.mouse.up()


def test_long_ranges_read_the_rollups_and_load_as_fast_as_an_hour(system, new_page, month, artifacts):
    page = open_history(system, new_page, month)
    calls, month_s = pick(page, "Last month", "Hourly averages")
    assert any("/energy?period=hour" in url for url in calls), calls
    assert not any("/readings" in url for url in calls), "a month is drawn from the rollups, not raw readings"
    assert points(page) >= (SEEDED_DAYS - 1) * 24
    page.screenshot(path=str(artifacts / "history-month.png"), full_page=True)

    calls, week_s = pick(page, "Last week", "Hourly averages")
    assert 6 * 24 <= points(page) <= 7 * 24 + 1
    calls, day_s = pick(page, "Last day", "Hourly averages")
    assert any("/energy?period=hour" in url for url in calls) and 20 <= points(page) <= 25

    # Zooming a day into a few hours draws that span's readings instead of hourly averages.
    box = page.locator('[data-chart="power"] .u-over').bounding_box()
    drag(page, box, 0.4, 0.6)
    expect(page.locator("#history-note")).to_contain_text(re.compile(r"^Zoomed in: (2[89]|30) readings from"))
    expect(page.locator('[data-readout="power"]')).to_contain_text(re.compile(r"\d:\d\d:\d\d"))
    page.get_by_role("button", name="Reset zoom").click()
    expect(page.locator("#history-note")).to_contain_text("Hourly averages")

    calls, hour_s = pick(page, "Last hour", "The last hour of readings")
    assert points(page) >= 1
    print(f"range loaded in: month {month_s:.3f} s, week {week_s:.3f} s, day {day_s:.3f} s, hour {hour_s:.3f} s")

    # A custom span of a few hours is drawn from its readings; a bad one says what is wrong.
    page.get_by_label("Custom", exact=True).check()
    start = datetime.now() - timedelta(days=2)
    page.get_by_label("From", exact=True).fill(start.strftime("%Y-%m-%dT%H:%M"))
    page.get_by_label("To", exact=True).fill((start - timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M"))
    page.get_by_role("button", name="Show this range").click()
    expect(page.get_by_role("alert")).to_have_text("The start must be before the end.")
    page.api_calls.clear()
    page.get_by_label("To", exact=True).fill((start + timedelta(hours=3)).strftime("%Y-%m-%dT%H:%M"))
    page.get_by_role("button", name="Show this range").click()
    expect(page.locator("#history-note")).to_contain_text(re.compile(r"^1[89] readings from"))
    assert any("/readings?" in url for url in page.api_calls) and not any("/energy" in url for url in page.api_calls)
    # A short span holding more readings than a chart can draw is read from the rollups after one page.
    dense_end = datetime.now() - timedelta(days=DENSE_DAYS_AGO, minutes=20)
    page.get_by_label("From", exact=True).fill((dense_end - timedelta(minutes=150)).strftime("%Y-%m-%dT%H:%M"))
    page.get_by_label("To", exact=True).fill(dense_end.strftime("%Y-%m-%dT%H:%M"))
    page.api_calls.clear()
    page.get_by_role("button", name="Show this range").click()
    expect(page.locator("#history-note")).to_contain_text("Hourly averages")
    assert [url for url in page.api_calls if "/readings?" in url] != [], "one page of readings, to judge the density"
    assert len([url for url in page.api_calls if "/readings?" in url]) == 1
    assert not page.errors and not page.console_errors, (page.errors, page.console_errors)


def test_table_view_hover_values_and_zoom_by_dragging(system, new_page, month, artifacts):
    page = open_history(system, new_page, month)
    pick(page, "Last week", "Hourly averages")
    shown = points(page)

    # Values on hover: under the mouse in the legend and in a line of text beside the chart.
    over = page.locator('[data-chart="power"] .u-over')
    box = over.bounding_box()
    page.mouse.move(box["x"] + box["width"] * 0.5, box["y"] + box["height"] * 0.5)
    readout = page.locator('[data-readout="power"]')
    expect(readout).to_contain_text(re.compile(r"\(hour average\): PV [\d.]+ k?W, Load [\d.]+ k?W"))
    legend_values = page.locator('[data-chart="power"] .u-legend .u-value')
    assert re.fullmatch(r"[\d.]+ k?W", legend_values.nth(1).inner_text()), legend_values.all_inner_texts()
    page.screenshot(path=str(artifacts / "history-hover.png"))

    # Zoom by dragging: the three charts together, the table follows, Reset zoom restores the range.
    full = x_range(page)
    drag(page, box, 0.4, 0.6)
    zoomed = x_range(page)
    assert full[0] < zoomed[0] < zoomed[1] < full[1]
    assert (zoomed[1] - zoomed[0]) < 0.3 * (full[1] - full[0])
    assert x_range(page, "grid") == zoomed and x_range(page, "battery") == zoomed
    expect(page.get_by_role("button", name="Reset zoom")).to_be_visible()
    page.screenshot(path=str(artifacts / "history-zoomed.png"))

    page.get_by_role("button", name="Show as table").click()
    table = page.locator("#history-table")
    expect(table).to_be_visible()
    expect(page.locator("#history-charts")).to_be_hidden()
    zoomed_rows = table.locator("tbody tr").count()
    assert 0 < zoomed_rows < shown
    expect(table.locator("caption")).to_contain_text("within the zoom")
    page.get_by_role("button", name="Show as charts").click()
    page.get_by_role("button", name="Reset zoom").click()
    assert x_range(page) == full
    page.get_by_role("button", name="Show as table").click()
    # The same data as the charts: one row per hour drawn, newest first, with the same average.
    expect(table.locator("tbody tr")).to_have_count(shown)
    expect(table.locator("thead th")).to_contain_text(["Hour starting", "PV (average)"])
    newest_pv = page.evaluate(
        "(() => { const rows = window.inverterPage.current().rows.filter(r => r !== null);"
        " return rows[rows.length - 1].pv_power_w; })()"
    )
    first_pv = table.locator("tbody tr").first.locator("td").first.inner_text()
    expected = f"{newest_pv / 1000:.2f} kW" if abs(newest_pv) >= 1000 else f"{round(newest_pv)} W"
    assert first_pv == expected
    page.screenshot(path=str(artifacts / "history-table.png"), full_page=True)
    assert not page.errors and not page.console_errors, (page.errors, page.console_errors)


def test_history_by_keyboard_alone(system, new_page, month):
    page = open_history(system, new_page, month)

    def focused() -> str:
        return page.evaluate(
            "document.activeElement.id || document.activeElement.value || document.activeElement.dataset.chart || ''"
        )

    for _ in range(40):
        page.keyboard.press("Tab")
        if focused() == "hour":
            break
    assert focused() == "hour", "the range picker is reached with Tab"
    page.keyboard.press("ArrowRight")
    expect(page.get_by_label("Last day", exact=True)).to_be_checked()
    expect(page.locator("#history-note")).to_contain_text("Hourly averages")
    page.keyboard.press("Tab")
    assert focused() == "toggle-table"
    page.keyboard.press("Enter")
    expect(page.locator("#history-table tbody tr").first).to_be_visible()
    page.keyboard.press("Enter")
    expect(page.locator("#history-charts")).to_be_visible()
    page.keyboard.press("Tab")
    assert focused() == "power"
    # The arrow keys step the cursor through the points: the values are read out beside the chart.
    page.keyboard.press("End")
    readout = page.locator('[data-readout="power"]')
    expect(readout).to_contain_text(re.compile(r"PV [\d.]+ k?W"))
    last = readout.inner_text()
    page.keyboard.press("ArrowLeft")
    expect(readout).not_to_have_text(last)
    assert not page.errors and not page.console_errors, (page.errors, page.console_errors)
