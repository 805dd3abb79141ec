"""The migration that keeps each attempt's response: a database from before it gains the column, rows intact."""

from __future__ import annotations

import sqlite3

from models.schema import latest_version
from tests.helpers import run_cli, system_env

RESPONSE_COLUMN_VERSION = 7  # the migration that added attempt.response (models/schema.py)


def test_an_older_database_gains_the_attempt_response_column(tmp_path):
    database_file = tmp_path / "app.db"
    env = system_env(f"sqlite:///{database_file}", "redis://127.0.0.1:9/0")
    assert run_cli(["models", "migrate"], env).returncode == 0
    with sqlite3.connect(database_file) as db:  # as the schema was before attempts kept their response
        db.execute("ALTER TABLE attempt DROP COLUMN response")
        db.execute("DELETE FROM schema_version WHERE version >= ?", (RESPONSE_COLUMN_VERSION,))
        db.execute("INSERT INTO account (id, name, created_at) VALUES ('a1', 'old', 0)")
        db.execute(
            "INSERT INTO job (id, account_id, request_hash, status, url, host, method, headers, body_kind,"
            " timeout_s, max_attempts, backoff, attempts, budget_start, created_at, updated_at)"
            " VALUES ('j1', 'a1', 'h', 'dead', 'http://127.0.0.1:9/', '127.0.0.1', 'POST', '{}', 'none', 1, 1,"
            " '{}', 1, 0, 0, 0)"
        )
        db.execute(
            "INSERT INTO attempt (job_id, number, worker, started_at, status_code, outcome)"
            " VALUES ('j1', 1, 'w', 0, 500, 'dead')"
        )
    migrated = run_cli(["models", "migrate"], env)
    assert migrated.stdout.strip() == f"schema at version {latest_version()}", migrated
    with sqlite3.connect(database_file) as db:
        assert db.execute("SELECT status_code, outcome, response FROM attempt").fetchall() == [(500, "dead", None)]
