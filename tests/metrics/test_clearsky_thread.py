"""pvlib never runs on the alert engine's greenlet: clear-sky tables and sunsets are computed on a thread
of their own (the engine's `pvlib_pool`), answered None until ready, and the next day's table is asked
for before the day ends. How long the hub stalls either way: bench/alerts_bench.py --pvlib-stall."""

from __future__ import annotations

import threading

import gevent

from models.clearsky import DAY_S, Background, ClearSky, QueuedThread, Site, Sunsets
from tests.helpers import wait_until

NOON_AMSTERDAM = 1_718_964_000.0  # 2024-06-21 10:00 UTC
SITE = Site(52.37, 4.9, 5000.0, 35.0, 180.0)


def on_thread(pool: QueuedThread, threads: set):
    """A pool's spawn that notes which thread each computation ran on."""

    def compute(work, *args):
        def noted():
            threads.add(threading.get_ident())
            return work(*args)

        return pool.spawn(noted)

    return compute


def hub_wait(predicate, message: str):
    """Wait letting the hub run (the pool's results are delivered by it)."""
    return wait_until(lambda: (gevent.sleep(0.01), predicate())[1], 30, 0, message)


def test_a_table_not_ready_is_answered_none_at_once_and_computed_on_the_pool_thread():
    pool, threads = QueuedThread(), set()
    try:
        clear_sky = ClearSky(on_thread(pool, threads))
        assert clear_sky.expected_w(SITE, NOON_AMSTERDAM) is None
        value = hub_wait(lambda: clear_sky.expected_w(SITE, NOON_AMSTERDAM), "the table")
        assert value == ClearSky().expected_w(SITE, NOON_AMSTERDAM), "the same table as computed in line"
        assert value > 0.5 * SITE.peak_power_w
        assert threads and threading.get_ident() not in threads
        today = int(NOON_AMSTERDAM // DAY_S)
        assert (SITE, today + 1) not in clear_sky.tables.ready and (SITE, today + 1) not in clear_sky.tables.pending
        clear_sky.expected_w(SITE, (today + 1) * DAY_S - 1)  # the last second of the UTC day
        hub_wait(lambda: (SITE, today + 1) in clear_sky.tables.ready, "tomorrow's table, asked for ahead of its day")
    finally:
        pool.kill()


def test_a_sunset_not_ready_is_answered_none_and_a_failed_computation_is_asked_again():
    pool, threads = QueuedThread(), set()
    failures = [1]

    def flaky_once(work, *args):
        if failures[0]:
            failures[0] -= 1
            return pool.spawn(lambda: 1 / 0)
        return on_thread(pool, threads)(work, *args)

    try:
        sunsets = Sunsets(flaky_once)
        assert sunsets.of(52.37, 4.9, NOON_AMSTERDAM) is None
        hub_wait(lambda: not sunsets.known.pending, "the failed computation to be forgotten")
        assert sunsets.of(52.37, 4.9, NOON_AMSTERDAM) is None, "asked again"
        day, sunset = hub_wait(lambda: sunsets.of(52.37, 4.9, NOON_AMSTERDAM), "the sunset")
        assert 0 < sunset - NOON_AMSTERDAM < 12 * 3600 and threads
    finally:
        pool.kill()


def test_tables_asked_for_while_one_is_computed_go_together_in_the_next_computation():
    """An engine starting with many sites asks for all their tables within moments: they cost a couple of
    vectorised computations on the pool, not one each, and each is the table computed in line."""
    pool, threads, computations = QueuedThread(), set(), []
    noted = on_thread(pool, threads)

    def counted(work, wanted):
        computations.append(len(wanted))
        return noted(work, wanted)

    sites = [Site(35.0 + i * 0.05, -10.0 + i * 0.1, 5000.0, 30.0, 180.0) for i in range(300)]
    try:
        clear_sky = ClearSky(counted)
        assert all(clear_sky.expected_w(site, NOON_AMSTERDAM) is None for site in sites), "none ready at once"
        hub_wait(lambda: all(clear_sky.expected_w(site, NOON_AMSTERDAM) for site in sites), "all the tables")
        assert sum(computations) == len(sites) and len(computations) <= 3, computations
        in_line = ClearSky()
        assert [clear_sky.expected_w(s, NOON_AMSTERDAM) for s in sites[::37]] == [
            in_line.expected_w(s, NOON_AMSTERDAM) for s in sites[::37]
        ]
        assert threads and threading.get_ident() not in threads
    finally:
        pool.kill()


def test_asking_for_a_table_while_the_thread_computes_something_else_never_waits():
    """gevent's ThreadPool.spawn waits for its thread: a reading of a site with no table yet would hold the
    engine's greenlet until the sunset or table being computed is done. The reading is answered at once."""
    pool, gate = QueuedThread(), threading.Event()
    try:
        # The thread busy, and work waiting for it (a sunset, another batch of tables): gevent's pool takes
        # one task more than it has threads before spawn waits.
        busy = [Background(lambda wanted: [gate.wait(30) for _ in wanted], pool.spawn) for _ in range(2)]
        for number, background in enumerate(busy):
            background.ask(number)
        clear_sky = ClearSky(pool.spawn)
        reading = gevent.spawn(clear_sky.expected_w, SITE, NOON_AMSTERDAM)
        reading.join(timeout=2)
        assert reading.ready() and reading.value is None, "answered at once, while the thread is busy"
        gate.set()
        hub_wait(lambda: clear_sky.expected_w(SITE, NOON_AMSTERDAM), "the table, once the thread is free")
        assert [background.ready for background in busy] == [{0: True}, {1: True}]
    finally:
        gate.set()
        pool.kill()
