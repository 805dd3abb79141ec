"""The whole job path on PostgreSQL: web and two workers as real processes on one database."""

from collections import Counter

import pytest

from tests.conftest import emptied, make_client
from tests.helpers import create_account, wait_until


@pytest.fixture
def pg_env(env, postgres_server_url):
    return {**env, "DATABASE_URL": emptied(postgres_server_url)}


def test_jobs_are_delivered_exactly_once_per_attempt_on_postgres(services, pg_env, partner):
    api = make_client(services.web(pg_env).url, create_account(pg_env, "pg"))
    services.worker(pg_env, role="jobs", name="pg-worker-1")
    services.worker(pg_env, role="jobs", name="pg-worker-2")
    ids = []
    for i in range(60):
        url = partner.url + (f"/flaky/pg{i}?fail=1" if i % 3 == 0 else "/ok")
        reply = api.post("/jobs", json={"url": url, "body": "x", "backoff": {"base_s": 0.05, "cap_s": 0.2}})
        assert reply.status_code == 202, reply.text
        ids.append(reply.json()["id"])

    def all_done():
        return all(api.get(f"/jobs/{job_id}").json()["status"] == "succeeded" for job_id in ids)

    wait_until(all_done, 30, 0.2, "every job to succeed on PostgreSQL")
    attempts = Counter((r.headers["X-Job-Id"], r.headers["X-Attempt-Number"]) for r in partner.received("/"))
    assert max(attempts.values()) == 1
    assert len(attempts) == 60 + 20
