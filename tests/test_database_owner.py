"""The group commit's failure rules (models/db.py `DatabaseOwner`): the writes queued together share one
transaction; a write that raises is rolled back alone and its caller gets the exception, the others commit. A
write alone in its transaction takes no SAVEPOINT, on SQLite and on PostgreSQL alike. On a thread of its own (as
in a gevent process), the writes that come while a commit is on its way share the next one, whichever greenlet
carries the first."""

from __future__ import annotations

import threading

import gevent
import pytest

from models.db import DatabaseOwner, is_sqlite, make_database
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
