"""A web app owns its settings, database owner, Redis client and destination policy (web/extensions.py):
two apps built with different settings live in one process and each answers by its own."""

from __future__ import annotations

import pytest

from models.accounts import create_account
from models.db import DatabaseInUse
from tests.conftest import in_process_app
from tests.helpers import free_port, sqlite_url
from web import close_app
from web.extensions import collaborators_of, on_shutdown, shutdown_hooks


def _signed_in(app, key: str):
    client = app.test_client()
    client.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {key}"
    return client


def test_two_apps_in_one_process_use_their_own_settings_and_redis(database_url, redis_url):
    unreachable_redis = f"redis://127.0.0.1:{free_port()}/0"
    with (
        in_process_app(database_url, redis_url, STREAMS_PER_ACCOUNT="3") as first,
        in_process_app(database_url, unreachable_redis, STREAMS_PER_ACCOUNT="7", REQUEST_BODY_LIMIT="2048") as second,
    ):
        assert collaborators_of(first).owner is collaborators_of(second).owner  # one database: one owner
        _, key = collaborators_of(first).owner.write(create_account, "both-apps")
        one, two = _signed_in(first, key), _signed_in(second, key)

        assert one.get("/streams/stats").get_json()["limit"] == 3
        assert two.get("/streams/stats").get_json()["limit"] == 7

        assert one.get("/readyz").status_code == 200
        not_ready = two.get("/readyz")
        assert not_ready.status_code == 503
        assert set(not_ready.get_json()["error"]["details"]) == {"redis"}

        job = {"url": "http://127.0.0.1:9/hook", "body": "x" * 3000}
        assert one.post("/jobs", json=job).status_code == 202
        too_large = two.post("/jobs", json=job)
        assert too_large.status_code == 413
        assert too_large.get_json()["error"]["code"] == "payload_too_large"


def test_closing_one_app_leaves_the_other_its_database(database_url, redis_url):
    with in_process_app(database_url, redis_url) as staying:
        with in_process_app(database_url, redis_url):
            pass
        _, key = collaborators_of(staying).owner.write(create_account, "still-here")
        assert _signed_in(staying, key).get("/jobs").status_code == 200


def test_an_app_on_a_second_database_is_refused_with_a_clear_error(database_url, redis_url, tmp_path):
    with in_process_app(database_url, redis_url) as first:
        other_url = sqlite_url(tmp_path / "other")
        with pytest.raises(DatabaseInUse, match="one database per process"):
            with in_process_app(other_url, redis_url):
                pass
        _, key = collaborators_of(first).owner.write(create_account, "unharmed")
        assert _signed_in(first, key).get("/jobs").status_code == 200


def test_a_failing_shutdown_hook_does_not_keep_close_app_from_letting_go(database_url, redis_url, tmp_path):
    ran = []

    def failing():
        raise RuntimeError("stream hub already gone")

    with in_process_app(database_url, redis_url) as app:
        on_shutdown(app, failing)
        on_shutdown(app, lambda: ran.append("the next hook"))
        with pytest.raises(RuntimeError, match="stream hub already gone"):
            close_app(app)
        shutdown_hooks(app).clear()  # the context's own close_app must not fail again
        assert ran == ["the next hook"]
        assert collaborators_of(app).closed
        with in_process_app(sqlite_url(tmp_path / "next"), redis_url) as next_app:  # the database was let go
            assert next_app.test_client().get("/healthz").status_code == 200
