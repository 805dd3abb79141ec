"""The mock's day curves kept on disk (mock_inverter/physics.py, CurveStore): read back the same to the bit,
a damaged file computed again, concurrent writers of one curve."""

from __future__ import annotations

import os
import threading
import time

import pytest

from mock_inverter import physics
from mock_inverter.physics import CurveKey, CurveStore, compute_day_curve, day_curve, use_curve_store

DAY = 19895  # 2024-06-21
KEYS = [
    CurveKey(52.3702, 4.8952, 35.0, 180.0),
    CurveKey(-33.8688, 151.2093, 20.0, 0.0),  # southern winter, panels facing north
    CurveKey(78.22, 15.65, 10.0, 200.0),  # polar day: the sun up all day
    CurveKey(-78.0, 166.0, 30.0, 0.0),  # polar night: never
]


@pytest.fixture
def store(tmp_path):
    """This process's day curves kept under tmp_path, and the memory of computed ones emptied, for one test."""
    use_curve_store(tmp_path)
    yield physics._curve_store
    use_curve_store(None)


def assert_same_to_the_bit(curve, expected):
    for array, wanted in zip(curve, expected, strict=True):
        assert array.dtype == wanted.dtype and array.shape == wanted.shape
        assert array.tobytes() == wanted.tobytes()


@pytest.mark.parametrize("key", KEYS)
def test_a_stored_curve_reads_back_the_same_to_the_bit(tmp_path, key):
    computed = compute_day_curve(key, DAY)
    store = CurveStore(tmp_path)
    assert store.load(key, DAY) is None
    store.save(key, DAY, computed)
    assert_same_to_the_bit(store.load(key, DAY), computed)


def test_a_start_reads_the_curves_an_earlier_one_kept(store):
    first = [day_curve(key, DAY) for key in KEYS]
    physics.day_curve.cache_clear()  # as in a new process
    again = [day_curve(key, DAY) for key in KEYS]
    for curve, expected in zip(again, first):
        assert_same_to_the_bit(curve, expected)
        assert all(isinstance(array.base, bytes) for array in curve)  # read from the file, not computed
        assert not any(array.flags.writeable for array in curve)


def test_curves_of_other_keys_and_days_are_not_mixed_up(store):
    for key in KEYS:
        for day in (DAY, DAY + 1):
            day_curve(key, day)
    physics.day_curve.cache_clear()
    for key in KEYS:
        for day in (DAY, DAY + 1):
            assert_same_to_the_bit(day_curve(key, day), compute_day_curve(key, day))


@pytest.mark.parametrize(
    "damage",
    [
        lambda data: b"",
        lambda data: data[: len(data) // 2],  # truncated
        lambda data: data[:-1],
        lambda data: data + b"\0",
        lambda data: data[:100] + bytes([data[100] ^ 1]) + data[101:],  # a bit flipped in the power
        lambda data: data[:-1] + bytes([data[-1] ^ 0x80]),  # in the digest
    ],
    ids=["empty", "truncated", "one-byte-short", "one-byte-long", "bit-flipped", "digest-flipped"],
)
def test_a_damaged_file_is_computed_and_written_again(store, damage):
    key = KEYS[0]
    expected = compute_day_curve(key, DAY)
    day_curve(key, DAY)
    path = store.path(key, DAY)
    path.write_bytes(damage(path.read_bytes()))
    assert store.load(key, DAY) is None
    physics.day_curve.cache_clear()
    assert_same_to_the_bit(day_curve(key, DAY), expected)
    assert_same_to_the_bit(store.load(key, DAY), expected)  # the file is whole again


def test_a_store_that_cannot_be_written_only_costs_the_computation(tmp_path):
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")
    use_curve_store(blocker)
    try:
        assert_same_to_the_bit(day_curve(KEYS[0], DAY), compute_day_curve(KEYS[0], DAY))
    finally:
        use_curve_store(None)


def test_writers_of_the_same_curve_at_once_leave_readers_a_whole_file_or_none(tmp_path):
    key = KEYS[0]
    expected = compute_day_curve(key, DAY)
    store = CurveStore(tmp_path)
    writers, rounds = 6, 30
    start = threading.Barrier(writers + 1)
    writing = threading.Event()
    writing.set()
    seen = []

    def write():
        start.wait()
        for _ in range(rounds):
            store.save(key, DAY, expected)

    def read():
        start.wait()
        while writing.is_set():
            curve = store.load(key, DAY)
            seen.append(None if curve is None else all(a.tobytes() == b.tobytes() for a, b in zip(curve, expected)))

    threads = [threading.Thread(target=write) for _ in range(writers)]
    reader = threading.Thread(target=read)
    for thread in [*threads, reader]:
        thread.start()
    for thread in threads:
        thread.join()
    writing.clear()
    reader.join()
    assert seen and False not in seen
    assert_same_to_the_bit(store.load(key, DAY), expected)
    assert [p.name for p in store.directory.iterdir()] == [store.path(key, DAY).name]  # no temporary left


def test_the_first_curve_a_process_writes_removes_those_written_over_a_week_ago(tmp_path):
    week_and_a_day_ago = time.time() - 8 * 86400
    store = CurveStore(tmp_path)
    store.save(KEYS[0], DAY, compute_day_curve(KEYS[0], DAY))
    store.save(KEYS[1], DAY, compute_day_curve(KEYS[1], DAY))
    os.utime(store.path(KEYS[0], DAY), (week_and_a_day_ago, week_and_a_day_ago))
    older_version = tmp_path / "0123456789abcdef"
    older_version.mkdir()
    (older_version / "old.curve").write_bytes(b"")
    os.utime(older_version / "old.curve", (week_and_a_day_ago, week_and_a_day_ago))

    CurveStore(tmp_path).save(KEYS[2], DAY, compute_day_curve(KEYS[2], DAY))
    assert sorted(p.name for p in store.directory.iterdir()) == sorted(
        store.path(key, DAY).name for key in (KEYS[1], KEYS[2])
    )
    assert not older_version.exists()
