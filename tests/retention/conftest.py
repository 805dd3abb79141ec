"""Fixtures for retention tests: a database opened in this process (SQLite file or PostgreSQL) for
arranging rows directly, and the environment the project's processes need to use the same database."""

from __future__ import annotations

import pytest

from models import inverters, jobs
from models.accounts import create_account
from models.db import close_database, open_database
from models.ids import new_id
from models.schema import ensure_schema
from tests.conftest import emptied


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request, database_url):
    if request.param == "sqlite":
        return database_url
    return emptied(request.getfixturevalue("postgres_server_url"))


@pytest.fixture
def store(store_url):
    owner = open_database(store_url)
    ensure_schema(owner)
    yield owner
    close_database()


@pytest.fixture
def store_env(env, store_url):
    return {**env, "DATABASE_URL": store_url}


def add_job(owner, account_id: str, status: str, finished_at: float, attempts: int = 1) -> str:
    """A job in `status` last changed at `finished_at`, with `attempts` attempt rows."""
    job_id = new_id()

    def insert():
        jobs.Job.insert(
            id=job_id,
            account=account_id,
            request_hash="x",
            status=status,
            url="http://127.0.0.1:9/x",
            host="127.0.0.1",
            method="POST",
            headers={},
            body_kind="none",
            timeout_s=5,
            max_attempts=8,
            backoff={},
            attempts=attempts,
            due_at=None if status in jobs.TERMINAL else finished_at,
            created_at=finished_at - 10,
            updated_at=finished_at,
        ).execute()
        for number in range(1, attempts + 1):
            jobs.Attempt.insert(
                job=job_id,
                number=number,
                worker="w",
                started_at=finished_at - 5,
                finished_at=finished_at,
                outcome=jobs.SUCCESS,
            ).execute()

    owner.write(insert)
    return job_id


def add_account(owner, name: str = "retention"):
    account, _ = owner.write(create_account, name)
    return account


def add_inverter(owner, account_id: str, timezone: str | None, serial: str = "SBX-1") -> str:
    def create():
        connection = inverters.connection_for("sandbox", "http://127.0.0.1:9", {"api_key": serial})
        inverter, _ = inverters.onboard(account_id, connection, serial, "hybrid", None, None, timezone)
        return inverter.id

    return owner.write(create)


def add_readings(owner, inverter_id: str, times, data) -> None:
    rows = [
        {"inverter_id": inverter_id, "time": float(t), "event_id": None, "data": data(t) if callable(data) else data}
        for t in times
    ]
    owner.write(inverters.store_readings, rows)
