"""The group commit's failure rules (models/db.py `DatabaseOwner`): the writes queued together share one
transaction; a write that raises is rolled back alone and its caller gets the exception, the others commit. A
write alone in its transaction takes no SAVEPOINT, on SQLite and on PostgreSQL alike. On a thread of its own (as
in a gevent process), the writes that come while a commit is on its way share the next one, whichever greenlet
carries the first. On SQLite, a brief write that comes alone is committed on the hub, never while the owner's thread
holds the connection or another connection holds the write lock, and the owner checkpoints the WAL on its thread.
Statements take their rows in chunks (`chunks`)."""

from __future__ import annotations

import os
import sqlite3
import threading

import gevent
import pytest
from hypothesis import given
from hypothesis import strategies as st

import models.db
from models.db import DatabaseOwner, checkpoint_wal, chunks, is_sqlite, make_database
from tests.helpers import sqlite_url


class Refused(Exception):
    pass


@pytest.fixture(params=["sqlite", "postgresql"])
def owner(request, tmp_path):
    url = sqlite_url(tmp_path) if request.param == "sqlite" else request.getfixturevalue("postgres_server_url")
    db = make_database(url)
    db.connect()
    db.execute_sql("DROP TABLE IF EXISTS owner_note")
    db.execute_sql("CREATE TABLE owner_note (note TEXT NOT NULL)")
    yield DatabaseOwner(db)
    db.execute_sql("DROP TABLE owner_note")
    db.close()


def _note(owner: DatabaseOwner, text: str, fail: bool = False) -> str:
    owner.db.execute_sql(f"INSERT INTO owner_note (note) VALUES ({owner.db.param})", (text,))
    if fail:
        raise Refused(text)
    return text


def _notes(owner: DatabaseOwner) -> list[str]:
    return sorted(row[0] for row in owner.db.execute_sql("SELECT note FROM owner_note").fetchall())


def _batch(owner: DatabaseOwner, *writes: tuple[str, bool]) -> list:
    """What `DatabaseOwner.write` hands its owner's thread for writes queued together."""
    return owner._commit_batch([(_note, (owner, text, fail), {}, None) for text, fail in writes])


def test_a_write_alone_that_raises_leaves_nothing_and_the_next_commits(owner):
    ((ok, error),) = _batch(owner, ("refused", True))
    assert not ok and isinstance(error, Refused)
    assert not owner.db.in_transaction()
    assert _notes(owner) == []
    assert _batch(owner, ("kept", False)) == [(True, "kept")]
    assert _notes(owner) == ["kept"]


def test_a_write_that_raises_among_others_is_rolled_back_alone(owner):
    first, refused, third = _batch(owner, ("first", False), ("refused", True), ("third", False))
    assert first == (True, "first") and third == (True, "third")
    assert not refused[0] and isinstance(refused[1], Refused)
    assert _notes(owner) == ["first", "third"]


def test_a_write_alone_takes_no_savepoint(owner):
    statements: list[str] = []
    if is_sqlite(owner.db):
        owner.db.connection().set_trace_callback(statements.append)
    else:
        original = owner.db.execute_sql

        def traced(sql, params=None, *args, **kwargs):
            statements.append(sql)
            return original(sql, params, *args, **kwargs)

        owner.db.execute_sql = traced
    _batch(owner, ("alone", False))
    _batch(owner, ("refused alone", True))
    assert not [s for s in statements if "SAVEPOINT" in s.upper()], statements
    _batch(owner, ("one", False), ("two", False))
    assert [s for s in statements if s.upper().startswith("SAVEPOINT")], "writes queued together each take one"
    assert _notes(owner) == ["alone", "one", "two"]


@pytest.fixture
def threaded(owner):
    """The same database owned as in a gevent process: its queries on a thread of their own."""
    threaded = DatabaseOwner(owner.db, own_thread=True)
    commits: list[int] = []
    commit_batch = threaded._commit_batch

    def counted(batch):
        commits.append(len(batch))
        return commit_batch(batch)

    threaded._commit_batch = counted  # the sizes of the transactions, in order
    threaded.commits = commits
    yield threaded
    threaded.close()


def _write_held_on_owner_thread(threaded: DatabaseOwner, text: str):
    """A write that its caller's greenlet takes to the owner's thread and that stays there until released."""
    started, release = threading.Event(), threading.Event()

    def held():
        started.set()
        assert release.wait(10)
        return _note(threaded, text)

    writer = gevent.spawn(threaded.write, held)
    gevent.sleep(0)
    assert started.wait(10)
    return writer, release


def test_writes_that_come_while_a_lone_write_commits_share_the_next_transaction(threaded):
    first, release = _write_held_on_owner_thread(threaded, "first")
    later = [gevent.spawn(threaded.write, _note, threaded, text) for text in ("second", "third")]
    refused = gevent.spawn(threaded.write, _note, threaded, "refused", True)
    gevent.sleep(0)
    release.set()
    gevent.joinall([first, *later, refused], timeout=10)
    assert [g.value for g in (first, *later)] == ["first", "second", "third"]
    assert isinstance(refused.exception, Refused)
    assert threaded.commits == [1, 3]
    assert threaded.write(_note, threaded, "alone again") == "alone again"
    assert threaded.commits == [1, 3, 1]
    assert _notes(threaded) == ["alone again", "first", "second", "third"]


def test_writes_queued_behind_a_caller_killed_while_its_write_commits_still_commit(threaded):
    first, release = _write_held_on_owner_thread(threaded, "first")
    later = gevent.spawn(threaded.write, _note, threaded, "second")
    gevent.sleep(0)
    first.kill(block=False)
    gevent.sleep(0)
    release.set()
    assert later.get(timeout=10) == "second"
    assert threaded.write(_note, threaded, "third") == "third"
    assert _notes(threaded) == ["first", "second", "third"]


# -- lone writes on the hub (SQLite) ---------------------------------------------------------------------------
HUB = threading.get_ident()  # the test's thread, where gevent's hub runs


@pytest.fixture
def checkpoint_interval_s():
    return models.db.WAL_CHECKPOINT_INTERVAL_S


@pytest.fixture
def checkpoint_bytes():
    return models.db.WAL_CHECKPOINT_BYTES


@pytest.fixture
def hub_owner(tmp_path, checkpoint_interval_s, checkpoint_bytes):
    """A SQLite database owned as in a gevent process: a lone write may be committed on the hub."""
    db = make_database(sqlite_url(tmp_path), hub_writes=True)
    db.connect()
    db.execute_sql("CREATE TABLE owner_note (note TEXT NOT NULL)")
    owner = DatabaseOwner(
        db, own_thread=True, checkpoint_interval_s=checkpoint_interval_s, checkpoint_bytes=checkpoint_bytes
    )
    owner.threads = []  # (statement, thread) as SQLite ran them
    db.connection().set_trace_callback(lambda sql: owner.threads.append((sql, threading.get_ident())))
    yield owner
    owner.close()


def _noted_where(owner: DatabaseOwner, text: str) -> int:
    _note(owner, text)
    return threading.get_ident()


def test_a_lone_brief_write_commits_on_the_hub_and_the_owners_thread_reads_it(hub_owner):
    assert hub_owner.write_brief(_noted_where, hub_owner, "alone") == HUB
    assert [thread for sql, thread in hub_owner.threads if sql == "COMMIT"] == [HUB]
    assert hub_owner.call(_notes, hub_owner) == ["alone"]


def test_any_other_write_commits_on_the_owners_thread(hub_owner):
    assert hub_owner.write(_noted_where, hub_owner, "any size") != HUB
    assert hub_owner.call(_notes, hub_owner) == ["any size"]


def _held_on_owner_thread(owner: DatabaseOwner):
    """A read that its caller's greenlet takes to the owner's thread and that stays there until released."""
    started, release = threading.Event(), threading.Event()

    def held():
        started.set()
        assert release.wait(10)
        return _notes(owner)

    reader = gevent.spawn(owner.call, held)
    gevent.sleep(0)
    assert started.wait(10)
    return reader, release


@pytest.mark.parametrize("reader_killed", [False, True], ids=["reader-waiting", "reader-killed"])
def test_a_write_while_the_owners_thread_holds_the_connection_waits_its_turn_there(hub_owner, reader_killed):
    """The connection is the thread's until its task ends, even when the greenlet that handed the task over was
    killed meanwhile: a write on the hub then would run inside the thread's statements."""
    reader, release = _held_on_owner_thread(hub_owner)
    if reader_killed:
        reader.kill()
    writer = gevent.spawn(hub_owner.write_brief, _noted_where, hub_owner, "after the read")
    gevent.sleep(0)
    assert not writer.ready() and _notes_of(hub_owner) == []
    release.set()
    assert writer.get(timeout=10) != HUB
    assert hub_owner.call(_notes, hub_owner) == ["after the read"]


def _notes_of(owner: DatabaseOwner) -> list[str]:
    """What another connection sees committed."""
    with sqlite3.connect(owner.db.database) as other:
        return [row[0] for row in other.execute("SELECT note FROM owner_note")]


def test_a_write_that_finds_the_lock_taken_waits_for_it_on_the_owners_thread_not_the_hub(hub_owner):
    hub_owner.write_brief(_note, hub_owner, "first")  # connected, the table known
    other = sqlite3.connect(hub_owner.db.database, timeout=0, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # another process's write lock
    writer = gevent.spawn(hub_owner.write_brief, _noted_where, hub_owner, "second")
    # Not a wait for anything: a window in which a write waiting for the lock on the hub would have held this
    # greenlet up, then failed (busy_timeout is 0 there). This one waits on the thread, the hub free.
    gevent.sleep(0.1)
    assert not writer.ready()
    other.execute("COMMIT")
    other.close()
    assert writer.get(timeout=10) != HUB
    assert _notes_of(hub_owner) == ["first", "second"]


def _write_a_burst(owner: DatabaseOwner) -> None:
    """~4.8 MB of notes written on the hub, one at a time: without checkpoints, a WAL of ~9.9 MB (measured)."""
    page = "x" * 8000
    for n in range(600):
        owner.write_brief(_note, owner, f"{n} {page}")
        gevent.sleep(0)  # other greenlets run between requests: the checkpoint's among them


@pytest.mark.parametrize("checkpoint_interval_s", [0.01])
def test_the_owner_checkpoints_the_wal_on_its_thread_while_writes_commit_on_the_hub(hub_owner):
    """SQLite's automatic checkpoint is off on this connection (it would fsync inside a commit, on the hub): the
    owner's own keeps the WAL from growing with every write."""
    _write_a_burst(hub_owner)
    wal = os.path.getsize(hub_owner.db.database + "-wal")
    assert wal < 5_000_000, f"the WAL grew to {wal} bytes"  # ~2.5 MB (measured)
    checkpoints = [thread for sql, thread in hub_owner.threads if "wal_checkpoint" in sql]
    assert checkpoints and HUB not in checkpoints
    assert HUB in [thread for sql, thread in hub_owner.threads if sql == "COMMIT"]


def _notes_and_where(owner: DatabaseOwner) -> tuple[list[str], int]:
    return _notes(owner), threading.get_ident()


def test_a_lone_brief_read_runs_on_the_hub_and_sees_what_the_thread_committed(hub_owner):
    assert hub_owner.write(_noted_where, hub_owner, "on the thread") != HUB
    assert hub_owner.call_brief(_notes_and_where, hub_owner) == (["on the thread"], HUB)
    assert hub_owner.call(_notes_and_where, hub_owner)[1] != HUB  # any other read: on the thread


@pytest.mark.parametrize("reader_killed", [False, True], ids=["reader-waiting", "reader-killed"])
def test_a_brief_read_while_the_owners_thread_holds_the_connection_waits_its_turn_there(hub_owner, reader_killed):
    """As for a brief write: the connection is the thread's until its task ends."""
    hub_owner.write_brief(_note, hub_owner, "first")
    held, release = _held_on_owner_thread(hub_owner)
    if reader_killed:
        held.kill()
    reader = gevent.spawn(hub_owner.call_brief, _notes_and_where, hub_owner)
    gevent.sleep(0)
    assert not reader.ready()
    release.set()
    notes, where = reader.get(timeout=10)
    assert notes == ["first"]
    assert where != HUB


def test_a_brief_read_goes_on_while_another_process_holds_the_write_lock(hub_owner):
    hub_owner.write_brief(_note, hub_owner, "committed")
    other = sqlite3.connect(hub_owner.db.database, timeout=0, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    other.execute("INSERT INTO owner_note VALUES ('not yet')")
    try:
        assert hub_owner.call_brief(_notes_and_where, hub_owner) == (["committed"], HUB)  # WAL: readers never wait
    finally:
        other.execute("ROLLBACK")
        other.close()


def test_a_brief_read_that_yields_fails_the_others_loudly(hub_owner):
    hub_owner.write_brief(_note, hub_owner, "first")

    def yielding():
        notes = _notes(hub_owner)
        gevent.sleep(0)
        return notes

    reader = gevent.spawn(hub_owner.call_brief, yielding)
    other = gevent.spawn(hub_owner.call, _notes, hub_owner)
    gevent.joinall([reader, other], timeout=10)
    assert reader.value == ["first"]
    assert isinstance(other.exception, RuntimeError)


@pytest.mark.parametrize("checkpoint_interval_s", [3600.0])
@pytest.mark.parametrize("checkpoint_bytes", [2 << 20])
def test_a_burst_of_writes_checkpoints_by_the_logs_size_and_the_log_is_cut_back_after(hub_owner):
    """Writes that come faster than the interval: the log holding checkpoint_bytes is checkpointed at once (on time
    alone it grew without bound under three busy processes), and once it restarts its file is cut back."""
    _write_a_burst(hub_owner)
    wal_path = hub_owner.db.database + "-wal"
    assert os.path.getsize(wal_path) < 2 * hub_owner.checkpoint_bytes
    assert [thread for sql, thread in hub_owner.threads if "wal_checkpoint" in sql]
    hub_owner.call(checkpoint_wal, hub_owner.db)  # caught up, no reader: the next write restarts the log
    hub_owner.write_brief(_note, hub_owner, "after the burst")
    assert os.path.getsize(wal_path) <= models.db.WAL_SIZE_LIMIT


def test_a_write_that_yields_inside_its_transaction_on_the_hub_fails_the_others_loudly(hub_owner):
    """A brief write must not yield (write_brief's contract): if one did, a query handed to the thread meanwhile
    would run inside its open transaction. It is refused instead."""

    def yielding():
        _note(hub_owner, "yielding")
        gevent.sleep(0)
        return "done"

    writer = gevent.spawn(hub_owner.write_brief, yielding)
    reader = gevent.spawn(hub_owner.call, _notes, hub_owner)
    gevent.joinall([writer, reader], timeout=10)
    assert writer.value == "done"
    assert isinstance(reader.exception, RuntimeError)
    assert hub_owner.call(_notes, hub_owner) == ["yielding"]


@given(st.lists(st.integers(), max_size=60), st.integers(min_value=1, max_value=25), st.booleans())
def test_chunks_keep_every_item_in_order_in_lists_of_at_most_size(items, size, as_iterator):
    chunked = list(chunks(iter(items) if as_iterator else items, size))
    assert [item for chunk in chunked for item in chunk] == items
    assert all(0 < len(chunk) <= size for chunk in chunked)
    assert all(len(chunk) == size for chunk in chunked[:-1])
