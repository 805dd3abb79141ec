"""Property tests of the one backoff module: every jitter kind stays within its bounds."""

from __future__ import annotations

import math
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from models.backoff import JITTER_KINDS, Backoff

bases = st.floats(min_value=0.0, max_value=86400.0, allow_nan=False, allow_infinity=False)
multipliers = st.floats(min_value=1.0, max_value=100.0, allow_nan=False, allow_infinity=False)
attempts = st.integers(min_value=1, max_value=50)
seeds = st.integers(min_value=0, max_value=2**32 - 1)


@st.composite
def policies(draw, jitter=st.sampled_from(JITTER_KINDS)):
    base = draw(bases)
    cap = draw(st.floats(min_value=base, max_value=7 * 86400.0, allow_nan=False, allow_infinity=False))
    return Backoff(base_s=base, cap_s=cap, multiplier=draw(multipliers), jitter=draw(jitter))


def exact_ceiling(policy: Backoff, attempt: int) -> float:
    """b = min(cap, base * multiplier**(n-1)), computed without overflow in log space."""
    if policy.base_s == 0:
        return 0.0
    log_value = math.log(policy.base_s) + (attempt - 1) * math.log(policy.multiplier)
    if log_value >= math.log(policy.cap_s):  # cap >= base > 0 here
        return policy.cap_s
    return min(policy.cap_s, policy.base_s * policy.multiplier ** (attempt - 1))


@settings(max_examples=300, deadline=None)
@given(policies(), attempts)
def test_ceiling_matches_the_formula_and_is_capped(policy, attempt):
    b = policy.ceiling(attempt)
    assert 0 <= b <= policy.cap_s
    assert b == pytest.approx(exact_ceiling(policy, attempt), rel=1e-9, abs=1e-12)


@settings(max_examples=300, deadline=None)
@given(policies(), attempts)
def test_ceiling_is_monotone(policy, attempt):
    assert policy.ceiling(attempt) <= policy.ceiling(attempt + 1)


@settings(max_examples=300, deadline=None)
@given(policies(jitter=st.just("none")), attempts, seeds)
def test_no_jitter_is_the_ceiling(policy, attempt, seed):
    assert policy.delay(attempt, rng=random.Random(seed)) == policy.ceiling(attempt)


@settings(max_examples=300, deadline=None)
@given(policies(jitter=st.just("full")), attempts, seeds)
def test_full_jitter_is_within_zero_and_b(policy, attempt, seed):
    b = policy.ceiling(attempt)
    assert 0 <= policy.delay(attempt, rng=random.Random(seed)) <= b


@settings(max_examples=300, deadline=None)
@given(policies(jitter=st.just("equal")), attempts, seeds)
def test_equal_jitter_is_within_half_b_and_b(policy, attempt, seed):
    b = policy.ceiling(attempt)
    assert b / 2 <= policy.delay(attempt, rng=random.Random(seed)) <= b


@settings(max_examples=500, deadline=None)
@given(policies(jitter=st.just("decorrelated")), attempts, seeds, st.data())
def test_decorrelated_jitter_is_within_base_and_three_times_previous(policy, attempt, seed, data):
    previous = data.draw(
        st.none() | st.floats(min_value=policy.base_s, max_value=policy.cap_s, allow_nan=False, allow_infinity=False),
        label="previous",
    )
    prev = policy.base_s if previous is None else previous
    delay = policy.delay(attempt, previous=previous, rng=random.Random(seed))
    assert delay <= policy.cap_s
    assert policy.base_s <= delay <= min(policy.cap_s, max(policy.base_s, 3 * prev))


@settings(max_examples=200, deadline=None)
@given(policies(jitter=st.just("decorrelated")), seeds, st.integers(min_value=1, max_value=50))
def test_decorrelated_chain_stays_bounded(policy, seed, length):
    """Feeding each delay back as `previous`, as the engine does, never leaves [base, cap]."""
    rng = random.Random(seed)
    previous = None
    for attempt in range(1, length + 1):
        delay = policy.delay(attempt, previous=previous, rng=rng)
        prev = policy.base_s if previous is None else previous
        assert policy.base_s <= delay <= min(policy.cap_s, max(policy.base_s, 3 * prev))
        previous = delay


@settings(max_examples=500, deadline=None)
@given(
    policies(),
    attempts,
    seeds,
    st.floats(min_value=0, max_value=10 * 7 * 86400.0, allow_nan=False, allow_infinity=False),
)
def test_retry_after_is_a_floor_never_beyond_the_cap(policy, attempt, seed, retry_after):
    plain = policy.delay(attempt, rng=random.Random(seed))
    floored = policy.delay(attempt, retry_after=retry_after, rng=random.Random(seed))
    assert floored <= policy.cap_s
    assert floored >= min(retry_after, policy.cap_s)
    assert floored >= plain
    if retry_after <= plain:
        assert floored == plain


@pytest.mark.parametrize("jitter", JITTER_KINDS)
def test_no_overflow_at_attempt_50_with_multiplier_100(jitter):
    policy = Backoff(base_s=86400.0, cap_s=7 * 86400.0, multiplier=100.0, jitter=jitter)
    for attempt in (49, 50, 51, 1000):
        assert policy.ceiling(attempt) == policy.cap_s
        delay = policy.delay(attempt, previous=policy.cap_s)
        assert math.isfinite(delay) and 0 <= delay <= policy.cap_s


def test_zero_base_gives_zero_delays():
    for jitter in JITTER_KINDS:
        assert Backoff(base_s=0, cap_s=10, multiplier=2, jitter=jitter).delay(5) == 0


@pytest.mark.parametrize("kwargs", [{"jitter": "gaussian"}, {"base_s": -1}, {"cap_s": -1}, {"multiplier": 0.5}])
def test_invalid_policies_are_refused(kwargs):
    with pytest.raises(ValueError):
        Backoff(**kwargs)


def test_round_trip_through_a_dict():
    policy = Backoff(base_s=0.5, cap_s=30, multiplier=3, jitter="equal")
    assert Backoff.from_dict(policy.to_dict()) == policy
    assert Backoff.from_dict(None) == Backoff()
