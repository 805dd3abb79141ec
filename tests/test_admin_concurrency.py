"""Administrative commands run at the same moment (several processes starting on a fresh database, a
deployment script running `migrate` beside a starting worker) all succeed: migrations run under a lock
and waiting for SQLite's write lock is retried, so nobody sees "database is locked"."""

import subprocess

import pytest

from models.schema import latest_version
from tests.helpers import PYTHON, ROOT, project_env, sqlite_url

SQLITE_ROUNDS = 10
POSTGRES_ROUNDS = 5  # each PostgreSQL round costs twice a SQLite one; the advisory lock leaves less to chance


def run_together(commands: list[list[str]], env: dict) -> list[subprocess.CompletedProcess]:
    procs = [
        subprocess.Popen(
            [PYTHON, "-m", "models", *args],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for args in commands
    ]
    results = []
    for args, proc in zip(commands, procs):
        out, err = proc.communicate(timeout=60)
        results.append(subprocess.CompletedProcess(args, proc.returncode, out, err))
    return results


def one_round(database_url: str):
    """On a fresh database at once: two migrations, two `create-account shared --if-missing`, one plain
    `create-account shared` (may lose: "already exists"), one account of another name."""
    commands = [
        ["migrate"],
        ["migrate"],
        ["create-account", "shared", "--if-missing"],
        ["create-account", "shared", "--if-missing"],
        ["create-account", "shared"],
        ["create-account", "other"],
    ]
    results = run_together(commands, project_env(DATABASE_URL=database_url))
    for result in results:
        assert "locked" not in result.stderr + result.stdout, result
        assert "Traceback" not in result.stderr, result
    plain = results[4]
    assert plain.returncode == 0 or (plain.returncode == 1 and "already exists" in plain.stderr), plain
    assert all(r.returncode == 0 for r in results[:4] + results[5:]), results
    for migrate in results[:2]:
        assert migrate.stdout.strip() == f"schema at version {latest_version()}", migrate
    keys_of_shared = [r for r in results[2:5] if r.stdout.strip()]
    assert len(keys_of_shared) == 1, results  # exactly one run created "shared" and printed its key
    assert results[5].stdout.strip().splitlines()[-1].startswith("sk_")


def test_concurrent_admin_commands_on_fresh_sqlite_files(tmp_path):
    for round_number in range(SQLITE_ROUNDS):
        directory = tmp_path / f"round-{round_number}"
        directory.mkdir()
        one_round(sqlite_url(directory))


def test_concurrent_admin_commands_on_fresh_postgresql_databases(postgres_server_url):
    psycopg2 = pytest.importorskip("psycopg2")
    admin = psycopg2.connect(postgres_server_url)
    admin.autocommit = True
    base = postgres_server_url.rsplit("/", 1)[1]
    names = [f"{base}_r{round_number}" for round_number in range(POSTGRES_ROUNDS)]
    try:
        for name in names:
            with admin.cursor() as cur:
                cur.execute(f'CREATE DATABASE "{name}"')
            one_round(postgres_server_url.rsplit("/", 1)[0] + "/" + name)
    finally:
        with admin.cursor() as cur:
            for name in names:
                cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()
