"""The mock's SolarEdge dialect under `--profile real`: the documented daily budgets (300 a day per key for calls
without a site ID, 300 a day per site, a bulk call charging each site it names) and at most 3 requests in
progress per source address, injected latency included; HTTP 429 beyond any of them, counted in the stats."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from tests.mock_inverter.mockinv_support import MockProcess

KEY = {"api_key": "demo-solaredge-key"}
START = "2024-06-21T11:00:00Z"


@pytest.fixture(scope="module")
def real():
    process = MockProcess("--start", START, "--profile", "real").wait_ready()
    yield process
    process.stop()


@pytest.fixture
def api(real):
    requests.post(real.base + "/admin/faults", json={"clear": True}, timeout=5).raise_for_status()
    requests.post(real.base + "/admin/stats/reset", timeout=5).raise_for_status()
    return real.base + "/solaredge"


def get(session, url, **params):
    return session.get(url, params={**KEY, **params}, timeout=10)


def test_a_site_may_make_exactly_300_calls_a_day_and_they_do_not_spend_the_key(api, real):
    with requests.Session() as session:
        answers = [get(session, f"{api}/site/3002/currentPowerFlow").status_code for _ in range(301)]
        assert answers.count(200) == 300 and answers[-1] == 429
        assert get(session, f"{api}/site/3002/overview").status_code == 429  # every endpoint of the site
        assert get(session, f"{api}/site/3001/overview").status_code == 200  # another site: its own budget
        assert get(session, f"{api}/sites/list").status_code == 200  # the key's budget is untouched
    stats = requests.get(real.base + "/admin/stats", timeout=5).json()
    assert stats["devices"]["7F2B3002-11"] == {**stats["devices"]["7F2B3002-11"], "requests": 302, "rate_limited": 2}


def test_the_key_may_make_exactly_300_calls_without_a_site_a_day(api):
    with requests.Session() as session:
        answers = [get(session, f"{api}/sites/list").status_code for _ in range(301)]
        assert answers.count(200) == 300 and answers[-1] == 429
        assert get(session, f"{api}/site/3001/details").status_code == 200


def test_a_bulk_call_charges_every_site_it_names(tmp_path):
    fleet = json.loads(MockProcess.demo_fleet().read_text())
    fleet["brands"]["solaredge"]["rate_limits"] = {"daily_per_site": 3}
    config = tmp_path / "fleet.json"
    config.write_text(json.dumps(fleet))
    process = MockProcess("--config", str(config), "--start", START, "--profile", "real").wait_ready()
    try:
        url = process.base + "/solaredge"
        with requests.Session() as session:
            bulk = [get(session, f"{url}/sites/3001,3002/overview").status_code for _ in range(3)]
            assert bulk == [200, 200, 200]
            assert get(session, f"{url}/site/3001/details").status_code == 429  # spent by the bulk calls
            assert get(session, f"{url}/site/3002,3001/overview").status_code == 429
    finally:
        process.stop()


def test_a_fourth_request_in_progress_is_refused_while_latency_holds_the_first_three(api, real):
    requests.post(real.base + "/admin/faults", json={"latency_ms": 800}, timeout=5).raise_for_status()
    with ThreadPoolExecutor(4) as pool:
        answers = list(
            pool.map(
                lambda site: requests.get(f"{api}/site/{site}/details", params=KEY, timeout=10),
                (3001, 3002, 3001, 3002),
            )
        )
    assert sorted(a.status_code for a in answers) == [200, 200, 200, 429]
    stats = requests.get(real.base + "/admin/stats", timeout=5).json()
    assert stats["totals"]["rate_limited"] == 1
    requests.post(real.base + "/admin/faults", json={"clear": True}, timeout=5).raise_for_status()
    assert requests.get(f"{api}/site/3001/details", params=KEY, timeout=10).status_code == 200  # released again


def test_bad_parameters_and_keys_get_the_documented_errors(api):
    week = {"startTime": "2024-06-14 00:00:00", "endTime": "2024-06-21 12:00:00"}
    with requests.Session() as session:
        assert get(session, f"{api}/site/3001/storageData", **week).status_code == 403  # over one week
        assert get(session, f"{api}/site/3001/storageData", startTime="yesterday").status_code == 400
        many = ",".join(str(3000 + n) for n in range(101))
        assert get(session, f"{api}/sites/{many}/overview").status_code == 400
        wrong = session.get(f"{api}/sites/list", params={"api_key": "nope"}, timeout=10)
        assert wrong.status_code == 403 and wrong.json() == {"String": "Invalid token"}
        assert session.get(f"{api}/site/3001/details", timeout=10).status_code == 403
