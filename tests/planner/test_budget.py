"""The quota budget in real Redis: charged atomically over every window, refused when one is full, and the
same count seen by a second budget object (a restarted worker, a new lease holder)."""

from __future__ import annotations

from datetime import datetime, timezone

import redis as redis_lib

from models.brands.budget import QuotaBudget
from models.brands.planner import PlanCall, charges
from models.brands.quota import DAY, Quota, Window

QUOTA = Quota(
    windows=(
        Window("daily per key", 3, DAY, calendar=True, timezone="Africa/Lagos"),
        Window("per device", 1, 60.0, scope="device"),
    )
)
AT_1500 = datetime(2024, 7, 1, 14, 0, tzinfo=timezone.utc).timestamp()  # 15:00 in Lagos


def call(device: str) -> PlanCall:
    return PlanCall((device,), (device,), False)


def test_a_restarted_worker_continues_the_days_count_and_a_full_window_refuses(redis_url):
    redis = redis_lib.Redis.from_url(redis_url)
    first = QuotaBudget(redis, "c1", QUOTA)
    assert first.charge(charges(QUOTA, call("a")), AT_1500, "w1:1") is None
    assert first.charge(charges(QUOTA, call("b")), AT_1500 + 1, "w1:2") is None
    refused = first.charge(charges(QUOTA, call("a")), AT_1500 + 30, "w1:3")
    assert refused is not None and refused.window == "per device" and 30 < refused.wait_s <= 31.3

    restarted = QuotaBudget(redis_lib.Redis.from_url(redis_url), "c1", QUOTA)  # another process, same Redis
    assert restarted.calendar_used(AT_1500 + 60) == {(0, ""): 2}
    assert restarted.charge(charges(QUOTA, call("c")), AT_1500 + 62, "w2:1") is None
    spent = restarted.charge(charges(QUOTA, call("d")), AT_1500 + 63, "w2:2")
    midnight_lagos = datetime(2024, 7, 1, 23, 0, tzinfo=timezone.utc).timestamp()
    assert spent is not None and spent.window == "daily per key"
    assert abs(spent.wait_s - (midnight_lagos - AT_1500 - 63)) < 1
    # Refused charges counted nothing: the device window of "d" is still free after the day resets.
    assert restarted.charge(charges(QUOTA, call("d")), midnight_lagos + 1, "w2:3") is None
    usage = {u.name: u for u in restarted.usage(midnight_lagos + 2, {1: ["d", "a"]})}
    assert usage["daily per key"].used == 1 and usage["daily per key"].remaining == 2
    assert usage["per device"].used == 1


def test_a_throttling_reply_is_recorded(redis_url):
    budget = QuotaBudget(redis_lib.Redis.from_url(redis_url), "c2", QUOTA)
    assert budget.throttle_record()["throttled_count"] == 0
    budget.record_throttle(AT_1500, "sandbox: too many requests", AT_1500 + 30)
    budget.record_throttle(AT_1500 + 40, "sandbox: too many requests", AT_1500 + 70)
    record = budget.throttle_record()
    assert record["throttled_count"] == 2 and record["throttled_at"] == AT_1500 + 40
    assert record["paused_until"] == AT_1500 + 70
