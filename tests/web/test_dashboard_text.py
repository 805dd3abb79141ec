"""How the dashboard writes durations and counts (in-process, no I/O)."""

import pytest

from web.dashboard import duration, plural


@pytest.mark.parametrize(
    "seconds, text",
    [
        (None, "–"),
        (0.0412, "41 ms"),
        (0.9996, "1 s"),
        (1.234, "1.23 s"),
        (12.0, "12 s"),
        (59.96, "1 min"),
        (60, "1 min"),
        (61, "1 min 1 s"),
        (119.6, "2 min"),
        (3599.6, "1 h"),
        (3725, "1 h 2 min"),
        (86400, "1 d"),
        (90000, "1 d 1 h"),
    ],
)
def test_durations_read_as_a_person_would_say_them(seconds, text):
    assert duration(seconds) == text


def test_counts_agree_with_their_noun():
    assert [plural(n, "attempt") for n in (0, 1, 2)] == ["0 attempts", "1 attempt", "2 attempts"]
