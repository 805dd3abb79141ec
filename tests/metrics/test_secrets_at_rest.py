"""Brand credentials at rest: encrypted with SECRET_KEY, never shown, and a process whose key cannot
decrypt them refuses to start (one line) before it sends anything to a brand."""

from __future__ import annotations

import json
import sqlite3

from cryptography.fernet import Fernet

from models import encryption, inverters
from models.accounts import create_account
from models.db import close_database, open_database
from models.schema import ensure_schema, latest_version, version_of
from tests.helpers import TEST_SECRET_KEY, run_cli, system_env, wait_until
from tests.metrics.conftest import SANDBOX_KEY

REAL_KEY = "the-real-brand-key"


def stored_credentials(database_file) -> list[str]:
    with sqlite3.connect(database_file) as db:
        return [row[0] for row in db.execute("SELECT credentials FROM brand_connection ORDER BY id")]


def test_credentials_are_stored_encrypted_and_never_shown(mock, web, api, services, metrics_env, tmp_path):
    created = api.post(
        "/inverters",
        json={
            "brand": "sandbox",
            "serial": "SBX-AMS-0001",
            "connection": {"base_url": mock.url, "api_key": SANDBOX_KEY},
        },
    )
    assert created.status_code == 201, created.text
    refused = api.post(
        "/inverters",
        json={
            "brand": "growatt_v4",
            "serial": "GRTSPH0001",
            "connection": {"base_url": mock.url, "token": "a-refused-token"},
        },
    )
    assert refused.status_code == 422, refused.text

    [token] = stored_credentials(tmp_path / "app.db")
    assert SANDBOX_KEY not in token
    assert json.loads(Fernet(TEST_SECRET_KEY).decrypt(token.encode())) == {"api_key": SANDBOX_KEY}

    inverter_id = created.json()["id"]
    answers = [created.text, refused.text, api.get("/inverters").text, api.get(f"/inverters/{inverter_id}").text]
    # The worker decrypts them to poll: a reading arrives.
    worker = services.worker(metrics_env, role="pollers")
    wait_until(lambda: api.get(f"/inverters/{inverter_id}/latest").json().get("reading"), 20, 0.1, "a reading")
    for text in answers + [web.logs(), worker.logs()]:
        assert SANDBOX_KEY not in text and "a-refused-token" not in text


def test_the_migration_encrypts_credentials_stored_in_plain_text_and_needs_the_key(tmp_path):
    database_file = tmp_path / "app.db"
    env = system_env(f"sqlite:///{database_file}", "redis://127.0.0.1:9/0")
    assert run_cli(["models", "migrate"], env).returncode == 0
    with sqlite3.connect(database_file) as db:  # as the schema was before credentials were encrypted
        db.execute(
            "INSERT INTO brand_connection (id, brand, base_url, credentials, credentials_hash, created_at)"
            " VALUES ('c1', 'sandbox', 'http://127.0.0.1:9', ?, 'h', 0)",
            (json.dumps({"api_key": REAL_KEY}),),
        )
        db.execute(
            "DELETE FROM schema_version WHERE version = ?", (version_of(encryption.encrypt_plaintext_credentials),)
        )

    without_key = run_cli(["models", "migrate"], {**env, "SECRET_KEY": ""})
    assert without_key.returncode == 2 and without_key.stderr.strip().startswith("error: SECRET_KEY is not set")
    assert stored_credentials(database_file) == [json.dumps({"api_key": REAL_KEY})], "nothing was applied"

    migrated = run_cli(["models", "migrate"], env)
    assert migrated.stdout.strip() == f"schema at version {latest_version()}", migrated
    [token] = stored_credentials(database_file)
    assert REAL_KEY not in token
    assert json.loads(Fernet(TEST_SECRET_KEY).decrypt(token.encode())) == {"api_key": REAL_KEY}


def test_a_wrong_key_stops_every_process_before_any_brand_call_and_rotation_fixes_it(
    tmp_path, partner, redis_url, services
):
    url = f"sqlite:///{tmp_path / 'app.db'}"
    owner = open_database(url)  # with TEST_SECRET_KEY, as the processes below first stored it
    try:
        ensure_schema(owner)
        account, _ = owner.write(create_account, "owner")
        connection = owner.write(inverters.connection_for, "sandbox", partner.url, {"api_key": REAL_KEY})
        owner.write(inverters.onboard, account.id, connection, "SBX-1", "inverter", None, None, "UTC")
    finally:
        close_database()
    new_key = Fernet.generate_key().decode()
    env = system_env(url, redis_url, SECRET_KEY=new_key, SANDBOX_POLL_INTERVAL_S="0.5", POLLER_LEASE_S="1")

    for args, prefix in (
        (["actors", "--role", "pollers"], "worker: cannot start: "),
        (["web"], "web: cannot start: "),
        (["models", "migrate"], "error: "),
    ):
        result = run_cli(args, env, timeout=60)
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        assert result.returncode != 0 and len(lines) == 1, result
        assert lines[0].startswith(
            prefix + "SECRET_KEY cannot decrypt the stored credentials of 1 of 1 brand "
            f"connection(s) (first: {connection.id})"
        ), lines
        assert "Traceback" not in result.stderr and new_key not in result.stderr
    assert partner.received() == [], "nothing was sent to the brand"

    # Rotation: the new key first, the old one after it; rotate-secret re-encrypts; then the new key alone works.
    rotated = run_cli(["models", "rotate-secret"], {**env, "SECRET_KEY": f"{new_key},{TEST_SECRET_KEY}"})
    assert rotated.returncode == 0 and "re-encrypted the credentials of 1 brand connection" in rotated.stdout, rotated
    old_key_alone = run_cli(["models", "migrate"], {**env, "SECRET_KEY": TEST_SECRET_KEY})
    assert old_key_alone.returncode != 0 and "SECRET_KEY cannot decrypt" in old_key_alone.stderr
    services.worker(env, role="pollers")
    sent = wait_until(lambda: partner.received("/sandbox/"), 20, 0.05, "the worker to poll the brand")
    assert sent[0].headers["X-API-Key"] == REAL_KEY
