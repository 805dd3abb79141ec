"""The quota planner end to end: GET/PATCH /connections/<id> on real web and worker processes against the
mock (its fast profile is the brands' real quotas on the tests' 150x poll clock, see conftest.PACE)."""

from __future__ import annotations

import requests

from tests.conftest import make_client
from tests.helpers import create_account, wait_until
from tests.metrics.conftest import CLOCK_SPEED, INTERVAL_S, mock_stats, onboard, wait_seconds_of_polling

DEVICE_WINDOW_S = 300.0  # sandbox: one latest-data call per device per 5 minutes


def test_the_owner_sees_the_plan_and_budget_and_an_infeasible_interval_is_refused(
    services, metrics_env, mock, web, api
):
    inverters = [onboard(api, mock, "sandbox", serial) for serial in ("SBX-AMS-0001", "SBX-LOS-0001")]
    connection_id = inverters[0]["connection_id"]
    services.worker(metrics_env, role="pollers")
    wait_until(
        lambda: {"SBX-AMS-0001", "SBX-LOS-0001"} <= set(mock_stats(mock)["devices"]), 20, 0.2, "both devices polled"
    )

    view = api.get(f"/connections/{connection_id}").json()
    assert view["brand"] == "sandbox" and view["inverters"] == 2
    assert view["planned_interval_s"] == INTERVAL_S * CLOCK_SPEED
    assert DEVICE_WINDOW_S < view["min_interval_s"] < INTERVAL_S * CLOCK_SPEED
    windows = {w["name"]: w for w in view["windows"]}
    per_device = windows["latest data per device"]
    assert per_device["limit"] == 1 and per_device["used"] == 1 and per_device["remaining"] == 0
    assert per_device["resets_at"] is not None
    assert view["throttling"]["count"] == 0

    # Faster than the quota sustains: refused with the feasible minimum, and nothing changes.
    too_fast = api.patch(f"/connections/{connection_id}", json={"poll_interval_s": 60})
    assert too_fast.status_code == 422, too_fast.text
    error = too_fast.json()["error"]
    assert error["code"] == "interval_not_feasible"
    assert error["details"]["min_interval_s"] == view["min_interval_s"]
    feasible = api.patch(f"/connections/{connection_id}", json={"poll_interval_s": error["details"]["min_interval_s"]})
    assert feasible.status_code == 200, feasible.text

    # Slower: the worker re-plans and the mock sees one call per device per 3 s of real time.
    slower = api.patch(f"/connections/{connection_id}", json={"poll_interval_s": 3.0 * CLOCK_SPEED})
    assert slower.status_code == 200 and slower.json()["planned_interval_s"] == 3.0 * CLOCK_SPEED
    wait_seconds_of_polling(3.5)  # the plan in force before the change runs out its current round
    requests.post(mock.url + "/admin/stats/reset", timeout=5).raise_for_status()
    wait_seconds_of_polling(9.2)
    stats = mock_stats(mock)
    assert stats["totals"]["rate_limited"] == 0
    counts = [stats["devices"][s]["requests"] for s in ("SBX-AMS-0001", "SBX-LOS-0001")]
    assert all(2 <= n <= 4 for n in counts), counts  # 9.2 s / 3 s, not 9.2 / 2.3

    for bad in ({"poll_interval_s": 0}, {"poll_interval_s": "fast"}, {"poll_interval_s": True}, {}):
        reply = api.patch(f"/connections/{connection_id}", json=bad)
        assert reply.status_code == 400 and reply.json()["error"]["code"] == "invalid_field", reply.text
    stranger = make_client(web.url, create_account(metrics_env))
    assert stranger.get(f"/connections/{connection_id}").status_code == 404
    assert stranger.patch(f"/connections/{connection_id}", json={"poll_interval_s": 900}).status_code == 404
    assert api.get("/connections/not-an-id").status_code == 404
