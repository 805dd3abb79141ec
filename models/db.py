"""The database: one connection owner per process, group commit, and the schema at start-up.

Why an owner: under gevent, SQLite's busy wait runs in C and freezes every greenlet, and peewee
would open one connection per greenlet. So in a gevent-patched process every query runs on one
native thread (a gevent ThreadPool of size 1) that holds the only connection; greenlets wait on it
cooperatively. Writes queued while that thread is busy are committed together in one transaction
(group commit), each in its own savepoint so one failing write does not undo the others.

A brief write (`write_brief`) that comes alone to a SQLite owner is committed on the hub instead, when the owner's
thread is idle and no other process holds the write lock: the trip to the thread cost more than the write
(docs/benchmarks.md). The hub never waits there: a busy lock sends the write to the thread, which waits for it,
and the WAL checkpoints (an fsync) run on the thread, every WAL_CHECKPOINT_INTERVAL_S or WAL_CHECKPOINT_BYTES of log,
instead of inside a commit.

Outside gevent (the CLI, tests calling queries directly) calls run inline.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any, TypeVar

import gevent
import peewee
from gevent import monkey
from gevent.event import AsyncResult
from playhouse.db_url import connect as connect_url

from models.backoff import SQLITE_BUSY_BACKOFF

log = logging.getLogger(__name__)
T = TypeVar("T")

database = peewee.DatabaseProxy()


def _gevent_patched() -> bool:
    return monkey.is_module_patched("threading")


def make_database(url: str, hub_writes: bool = False) -> peewee.Database:
    """The peewee database at url. hub_writes: a SQLite database whose owner may commit on the gevent hub as well as
    on its own thread (DatabaseOwner), so both threads share one connection state, and the owner, not a commit,
    runs the WAL checkpoints."""
    if url.startswith("sqlite:"):
        path = url.split("sqlite:///", 1)[-1] if url.startswith("sqlite:///") else url[len("sqlite:") :]
        if path and path != ":memory:":
            directory = os.path.dirname(os.path.abspath(path))
            os.makedirs(directory, exist_ok=True)
        return peewee.SqliteDatabase(
            path or ":memory:",
            pragmas={
                "journal_mode": "wal",
                "synchronous": "normal",
                # Waiting for another process's write lock is done by DatabaseOwner in short steps:
                # SQLite's own busy handler backs off to 100 ms sleeps and starves a process that
                # competes with a steady stream of commits (a worker against busy web submissions).
                "busy_timeout": 0,
                "foreign_keys": 1,
                "cache_size": -16000,
                **({"wal_autocheckpoint": 0, "journal_size_limit": WAL_SIZE_LIMIT} if hub_writes else {}),
            },
            timeout=0,
            **({"thread_safe": False, "check_same_thread": False} if hub_writes else {}),
        )
    return connect_url(url.replace("postgres://", "postgresql://", 1))


_SQL_CACHE: dict = {}


def sql(text: str) -> str:
    """Hot-path SQL written once with ? placeholders, adapted to the bound database's style.

    Why raw SQL on hot paths: peewee spends ~40 µs of Python building each statement, which was
    most of the CPU of a delivery or of an SSE connect; these few statements run per request.
    """
    key = (text, database.obj.param)
    if key not in _SQL_CACHE:
        _SQL_CACHE[key] = built_sql(text)
    return _SQL_CACHE[key]


def built_sql(text: str) -> str:
    """A statement built per call with ? placeholders (a batch's VALUES list, one row per item), adapted to the
    bound database's style; not cached as sql() is, which would keep one text per batch size."""
    param = database.obj.param
    return text if param == "?" else text.replace("?", param)


def chunks(items: Iterable[T], size: int) -> Iterator[list[T]]:
    """items in order, in lists of at most size: one statement each, under the databases' limits on parameters.

    Not peewee.chunked, which pads every group to size and pops the padding one by one: a chunk of one at size 500,
    a claim's or an outcome write's common case at light load, cost it ~0.1-0.2 ms (docs/benchmarks.md)."""
    listed = items if isinstance(items, list) else list(items)
    for start in range(0, len(listed), size):
        yield listed[start : start + size]


def checkpoint_wal(db: peewee.Database | None = None) -> None:
    """Copy SQLite's WAL into the database file now (a passive checkpoint: it waits for no reader or writer).

    Its row is read here: a cursor left unread keeps its statement open on the connection, and the next COMMIT
    would fail with "SQL statements in progress"."""
    (db or database.obj).execute_sql("PRAGMA wal_checkpoint(PASSIVE)").fetchall()


def is_sqlite(db: peewee.Database | None = None) -> bool:
    db = db or database.obj
    return isinstance(db, peewee.SqliteDatabase)


def write_transaction(db: peewee.Database | None = None):
    """A transaction that takes the write lock at once (SQLite IMMEDIATE), avoiding upgrade deadlocks."""
    db = db or database.obj
    if isinstance(db, peewee.SqliteDatabase):
        return db.atomic("IMMEDIATE")
    return db.atomic()


BUSY_DEADLINE_S = 10.0
# How often an owner that commits on the hub checkpoints the WAL (on its thread), while it writes: every second, and
# as soon as the log holds WAL_CHECKPOINT_BYTES, as SQLite's own automatic checkpoint would (1,000 pages), but on the
# thread: SQLite's would run inside whichever commit crossed them, on the hub, an fsync under every stream. On time
# alone, three processes writing flat out grew the log to 288 MB in ten seconds (docs/benchmarks.md): a passive
# checkpoint of a second's frames rarely catches up with the writers, and the log restarts only when one has.
WAL_CHECKPOINT_INTERVAL_S = 1.0
WAL_CHECKPOINT_BYTES = 4 << 20
# The log file is cut back to this at the first commit after it restarts (PRAGMA journal_size_limit), so that its size
# tells how much was written since: below WAL_CHECKPOINT_BYTES, and it keeps no disk a burst once took.
WAL_SIZE_LIMIT = 1 << 20


def _is_busy(exc: Exception) -> bool:
    text = str(exc).lower()
    return isinstance(exc, peewee.OperationalError) and ("locked" in text or "busy" in text)


# The unpatched time.sleep, whether this module is imported before or after monkey-patching.
_real_sleep = monkey.get_original("time", "sleep")


def retry_while_busy(fn: Callable[[], Any]) -> Any:
    """Run fn, again and again while SQLite says another process holds the lock (up to 10 s).

    Safe because a statement or transaction that met a busy lock was rolled back whole. Sleeps in
    short steps (SQLITE_BUSY_BACKOFF) with the real (unpatched) sleep: this runs on the owner's
    native thread.
    """
    deadline = time.monotonic() + BUSY_DEADLINE_S
    attempt = 0
    while True:
        try:
            return fn()
        except peewee.OperationalError as exc:
            if not _is_busy(exc) or time.monotonic() > deadline:
                raise
        attempt += 1
        _real_sleep(SQLITE_BUSY_BACKOFF.delay(attempt))


class _WriteFailed(Exception):
    """A write's own exception, carried out of its transaction so that the transaction rolls back."""

    def __init__(self, error: Exception):
        super().__init__(error)
        self.error = error


def _capture(work, *args):
    try:
        return True, work(*args)
    except Exception as exc:
        return False, exc


class DatabaseOwner:
    """Runs every query of this process on one connection; batches writes into group commits."""

    url = ""  # the URL it was opened with (open_database)

    def __init__(
        self,
        db: peewee.Database,
        own_thread: bool | None = None,
        checkpoint_interval_s: float = WAL_CHECKPOINT_INTERVAL_S,
        checkpoint_bytes: int = WAL_CHECKPOINT_BYTES,
    ):
        """own_thread: run the queries on a thread of their own, for a gevent process (the default when gevent
        has patched threading); else under a lock, on the caller's thread. checkpoint_interval_s, checkpoint_bytes:
        how often to checkpoint the WAL while writing (at the latest; as soon as the log holds that much), when lone
        writes commit on the hub."""
        self.db = db
        self.checkpoint_interval_s = checkpoint_interval_s
        self.checkpoint_bytes = checkpoint_bytes
        self._pending: list = []
        self._committing = False  # a commit is on its way: writes queue for the next
        self._hub_writes = False  # a lone write may be committed on the hub (see write_brief)
        self._checkpoint_after = 0.0  # monotonic time; 0 while a checkpoint is on its way
        self._closed = False
        self._on_hub = False  # a query runs on the hub (call_brief, write_brief)
        if _gevent_patched() if own_thread is None else own_thread:
            from gevent.threadpool import ThreadPool

            self._pool = ThreadPool(1)
            self._lock = None
            # One connection state for the hub and the thread (make_database(hub_writes=True)); the owner keeps
            # them from using it at once.
            self._hub_writes = isinstance(db, peewee.SqliteDatabase) and not db.thread_safe
            self._checkpoint_after = time.monotonic() + checkpoint_interval_s
        else:
            self._pool = None
            self._lock = threading.RLock()

    # -- reads and single statements -------------------------------------------------------
    def call(self, fn: Callable[..., Any], *args, **kwargs) -> Any:
        """Run fn on the owner's connection and return its result (blocking this greenlet only)."""
        return self._owned(self._run, fn, args, kwargs)

    def call_brief(self, fn: Callable[..., Any], *args, **kwargs) -> Any:
        """As call, for a read of a few rows found by key (a job, an account by its key), whatever the data: when
        the owner's thread has nothing to do, a SQLite owner runs it on the hub itself, sparing the trip to the
        thread (at light load most of such a read's cost: docs/benchmarks.md). fn must not yield to other greenlets
        (no network I/O, no sleeps) and must return rows already read, not a cursor.

        Not for a read whose size grows with stored history or a client's choice (a listing, a reading range)."""
        if self._hub_may_query():
            with self._querying_on_hub():
                try:
                    return fn(*args, **kwargs)
                except peewee.OperationalError as exc:
                    # A WAL reader is busy only in rare moments (another connection recovering the WAL); the thread
                    # waits them out.
                    if not _is_busy(exc):
                        raise
        return self.call(fn, *args, **kwargs)

    def _hub_may_query(self) -> bool:
        """The hub may use the connection now: a SQLite owner that shares it with the hub, open, and no task on the
        thread. len(pool): tasks handed to the thread and not finished, counted by the thread itself, so a caller
        killed while it waited for its task does not make the connection look free while the task still runs."""
        return self._hub_writes and not len(self._pool) and not self._on_hub and not self.db.is_closed()

    @contextlib.contextmanager
    def _querying_on_hub(self):
        # Marked so that a query handed to the thread meanwhile (the hub's query yielded) is refused, not run inside it.
        self._on_hub = True
        try:
            yield
        finally:
            self._on_hub = False

    def _owned(self, work, *args):
        """work(*args) where the connection lives: on the owner's thread under gevent, else under its lock."""
        if self._pool is not None:
            return self._on_owner_thread(work, *args)
        with self._lock:
            return work(*args)

    def _on_owner_thread(self, work, *args):
        # The exception travels back as a value: raised inside the pool, gevent would also print
        # its traceback to stderr, and a caller that handles it (or a one-line start-up error)
        # would still leave a stack trace in the log.
        if self._on_hub:
            raise RuntimeError("a query on the hub yielded to other greenlets (see call_brief and write_brief)")
        ok, value = self._pool.apply(_capture, (work, *args))
        if ok:
            return value
        raise value

    def _connect(self):
        # Opening sets the pragmas, and switching a new file to WAL needs the write lock: another
        # process starting at the same moment (two `migrate`s on a fresh file) makes it busy.
        retry_while_busy(lambda: self.db.connect(reuse_if_open=True))

    def _run(self, fn, args, kwargs):
        self._connect()
        try:
            return retry_while_busy(lambda: fn(*args, **kwargs))
        except peewee.InterfaceError:
            # A dropped PostgreSQL connection: reconnect once and let the caller see a retry fail.
            self.db.close()
            raise

    # -- group commit ------------------------------------------------------------------------
    def write(self, fn: Callable[..., Any], *args, **kwargs) -> Any:
        """Run fn inside a transaction shared with other writes queued meanwhile; return its result.

        fn's exception is re-raised to its caller only; the other writes of the batch commit.
        """
        return self._write(False, fn, args, kwargs)

    def write_brief(self, fn: Callable[..., Any], *args, **kwargs) -> Any:
        """As write, for a write of a few rows, bounded whatever the data (a job, a claim, a job's outcome): when it
        comes alone to a SQLite owner it may be committed on the hub itself, which it then holds for well under a
        millisecond. fn must not yield to other greenlets (no network I/O, no sleeps) inside its transaction.

        Not for a write whose size grows with stored history or a client's choice (an inverter's readings, a
        batch of jobs): on the hub, the process would serve nothing else until it ended."""
        return self._write(True, fn, args, kwargs)

    def _write(self, may_use_hub: bool, fn, args, kwargs) -> Any:
        if self._pool is None:
            with self._lock:
                self._connect()
                return retry_while_busy(lambda: self._in_transaction(fn, args, kwargs))
        if not self._committing:
            # No commit on its way: this greenlet commits its write itself. A writer greenlet to spawn and an
            # AsyncResult to wait on cost ~40 µs a write at light load, where nearly every write is alone
            # (docs/benchmarks.md). Writes that come meanwhile queue for a writer greenlet, as behind any commit.
            self._committing = True
            try:
                ((ok, value),) = self._commit_alone((fn, args, kwargs, None), may_use_hub)
            finally:
                if self._pending:
                    gevent.spawn(self._write_loop)
                else:
                    self._committing = False
            if ok:
                return value
            raise value
        result = AsyncResult()
        self._pending.append((fn, args, kwargs, result))
        return result.get()

    def _commit_alone(self, write, may_use_hub: bool) -> list:
        if may_use_hub and self._hub_may_query():
            with self._querying_on_hub():
                try:
                    outcomes = self._commit_once([write])
                except Exception as exc:
                    # The transaction never began (another process holds the write lock: the thread waits for it),
                    # or the commit failed and rolled back: as on the thread, every write in it failed.
                    outcomes = None if _is_busy(exc) else [(False, exc)]
            if outcomes is not None:
                self._after_commit()
                return outcomes
        return self._commit_on_owner_thread([write])

    def _after_commit(self):
        if not self._hub_writes or not self._checkpoint_after:  # 0: a checkpoint is on its way
            return
        if self._checkpoint_after <= time.monotonic() or self._wal_bytes() >= self.checkpoint_bytes:
            self._checkpoint_after = 0.0
            gevent.spawn(self._checkpoint)

    def _wal_bytes(self) -> int:
        try:
            return os.stat(self.db.database + "-wal").st_size
        except OSError:
            return 0

    def _checkpoint(self):
        if self._closed:
            return
        try:
            self._owned(self._checkpoint_on_connection)
        except Exception as exc:  # the next interval tries again
            log.warning("WAL checkpoint failed: %s", exc)
        finally:
            self._checkpoint_after = time.monotonic() + self.checkpoint_interval_s

    def _checkpoint_on_connection(self):
        if not self.db.is_closed():  # closed meanwhile: closing checkpointed it (not through call(), which reopens)
            checkpoint_wal(self.db)

    def _write_loop(self):
        try:
            while self._pending:
                batch, self._pending = self._pending, []
                outcomes = self._commit_on_owner_thread(batch)
                for (_, _, _, result), (ok, value) in zip(batch, outcomes):
                    if ok:
                        result.set(value)
                    else:
                        result.set_exception(value)
        finally:
            self._committing = False

    def _commit_on_owner_thread(self, batch) -> list:
        try:
            return self._on_owner_thread(self._commit_batch, batch)
        except Exception as exc:  # the commit itself failed: every write in it failed
            return [(False, exc)] * len(batch)
        finally:
            self._after_commit()

    def _in_transaction(self, fn, args, kwargs):
        with write_transaction(self.db):
            return fn(*args, **kwargs)

    def _commit_batch(self, batch):
        self._connect()
        return retry_while_busy(lambda: self._commit_once(batch))

    def _commit_once(self, batch):
        if len(batch) == 1:
            # Alone in its transaction, a write needs no SAVEPOINT of its own (two more statements and a
            # uuid4 each): its failure rolls the whole transaction back, which holds nothing else. That is
            # most writes at light load, about 0.07 ms of CPU each (docs/benchmarks.md).
            fn, args, kwargs, _ = batch[0]
            try:
                with write_transaction(self.db):  # a busy lock fails here, before the write ran
                    try:
                        value = fn(*args, **kwargs)
                    except Exception as exc:
                        raise _WriteFailed(exc) from exc  # out through the transaction: rolled back
                return [(True, value)]
            except _WriteFailed as failed:
                return [(False, failed.error)]
        outcomes = []
        with write_transaction(self.db):  # a busy lock fails here, before any write of the batch ran
            for fn, args, kwargs, _ in batch:
                try:
                    with self.db.atomic():
                        outcomes.append((True, fn(*args, **kwargs)))
                except Exception as exc:
                    outcomes.append((False, exc))
        return outcomes

    def close(self):
        def _close():
            if not self.db.is_closed():
                self.db.close()

        self._closed = True
        # Not through call(), which connects first: closing a database never reached must not try again.
        try:
            self._owned(_close)
        finally:
            if self._pool is not None:
                self._pool.kill()


class DatabaseInUse(RuntimeError):
    """A second database asked for while a web app holds this process's one (see `hold_database`)."""


_owner: DatabaseOwner | None = None
# How many web apps hold the current owner (`hold_database`). The models are bound to one process-wide
# `database` proxy, so while an app holds it, another URL cannot be bound under it.
_holders = 0


def open_database(url: str) -> DatabaseOwner:
    """Bind the models to the database at url and return this process's owner (idempotent per url).

    Another url closes the previous owner, unless a web app holds it: then DatabaseInUse."""
    global _owner
    if _owner is not None and getattr(_owner, "url", None) == url:
        return _owner
    if _owner is not None:
        if _holders:
            raise DatabaseInUse(
                f"this process's database is {_owner.url} (held by {_holders} web app(s)); the models are bound to "
                f"one database per process, so {url} cannot be opened beside it"
            )
        _owner.close()
    db = make_database(url, hub_writes=_gevent_patched())
    database.initialize(db)
    _owner = DatabaseOwner(db)
    _owner.url = url
    return _owner


def hold_database(url: str) -> DatabaseOwner:
    """The owner of url for a web app, kept open until every app holding it has let go
    (`release_database`): a second app on the same url shares it, one on another url is refused."""
    global _holders
    held = open_database(url)
    _holders += 1
    return held


def release_database(held: DatabaseOwner) -> None:
    """A web app lets go of its owner; the last one to let go closes it."""
    global _holders, _owner
    if held is not _owner or _holders == 0:
        return
    _holders -= 1
    if _holders == 0:
        _owner.close()
        _owner = None


def owner() -> DatabaseOwner:
    if _owner is None:
        raise RuntimeError("open_database() has not been called in this process")
    return _owner


def close_database() -> None:
    global _owner, _holders
    if _owner is not None:
        _owner.close()
        _owner = None
    _holders = 0
