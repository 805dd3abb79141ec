from mock_inverter.ratelimit import RateLimits


class FakeClock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


def test_real_profile_allows_one_latest_call_per_device_per_five_minutes():
    clock = FakeClock()
    limits = RateLimits("real", {}, monotonic=clock)
    assert limits.check("growatt", "tok", "v1:last_data", ["A"]) == (0.0, "")
    clock.now += 10
    wait, scope = limits.check("growatt", "tok", "v1:last_data", ["A"])
    assert scope == "device" and abs(wait - 290) < 1e-9
    assert limits.check("growatt", "tok", "v1:last_data", ["B"]) == (0.0, ""), "other devices are independent"
    assert limits.check("growatt", "other-token", "v1:last_data", ["A"]) == (0.0, ""), "limits are per token"
    clock.now += 290
    assert limits.check("growatt", "tok", "v1:last_data", ["A"]) == (0.0, "")


def test_rejected_calls_do_not_use_up_the_window_and_overrides_win():
    clock = FakeClock()
    limits = RateLimits("fast", {"sandbox": {"sandbox:devices": {"limit": 2, "window_s": 10}}}, monotonic=clock)
    results = [limits.check("sandbox", "k", "sandbox:devices")[1] for _ in range(5)]
    assert results == ["", "", "endpoint", "endpoint", "endpoint"]
    clock.now += 10
    assert limits.check("sandbox", "k", "sandbox:devices") == (0.0, "")


def test_a_batch_is_refused_whole_when_one_device_is_too_early():
    clock = FakeClock()
    limits = RateLimits("fast", {}, monotonic=clock)
    assert limits.check("growatt", "t", "v4:queryLastData", ["A"])[1] == ""
    assert limits.check("growatt", "t", "v4:queryLastData", ["B", "A"])[1] == "device"
    assert limits.check("growatt", "t", "v4:queryLastData", ["B"])[1] == "", "B was not counted by the refusal"


def test_enphase_months_follow_the_clock_the_limits_are_given():
    # The month is read from the wall clock handed to RateLimits (the simulated one under --limits-clock sim),
    # not from the machine's: a simulated month's end frees the next month's budget.
    clock = FakeClock()
    clock.now = 1_719_791_990.0  # 2024-06-30T23:59:50Z
    limits = RateLimits("real", {}, monotonic=clock, wall=clock)
    overrides = {"per_month": 2}
    assert [limits.plans.check("key", "watt", overrides) for _ in range(3)] == ["", "", "month"]
    clock.now += 70  # July, and past the rolling minute
    assert limits.plans.check("key", "watt", overrides) == ""
