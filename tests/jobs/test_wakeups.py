"""How a worker hears submissions (actors/dispatcher.py, WakeDelay in actors/coalescing.py): a lone one is claimed at
once; those of a stream wait the window and share a claim, while their wake-ups wait unread until it ends; and a
submission after that is heard again. A real worker process, the jobs submitted through the app in this process."""

from __future__ import annotations

import time

import redis

from models.channels import JOBS_WAKEUP
from tests.app_on_own_database import app, new_app_key  # noqa: F401 - the worker uses the test's own database
from tests.helpers import wait_until
from tests.jobs.test_outcome_writes import at_partner, start_worker, submit

WINDOW_S = 1.0  # long, so that a loaded machine's slow reads do not split the stream
FALLBACK_TIMER_S = 5.0  # actors/dispatcher.py MAX_IDLE_S: when a job is found without its wake-up


def test_a_stream_of_submissions_shares_a_claim_and_a_later_submission_is_heard(client, services, env, partner):
    start_worker(services, env, WAKE_COALESCE_MS=str(int(WINDOW_S * 1000)))
    wakeups = redis.Redis.from_url(env["REDIS_URL"])
    wait_until(lambda: wakeups.pubsub_numsub(JOBS_WAKEUP)[0][1] == 1, 15, 0.02, "the worker listening for wake-ups")

    submitted = {"lone": time.time()}
    submit(client, f"{partner.url}/ok/lone")
    at_partner(partner, 1)
    time.sleep(0.1)  # the next comes within the window: a stream
    submitted["b"] = time.time()
    submit(client, f"{partner.url}/ok/b")
    time.sleep(0.1)
    submitted["c"] = time.time()
    submit(client, f"{partner.url}/ok/c")
    arrived = {r.path.rsplit("/", 1)[-1]: r.at for r in at_partner(partner, 3)}

    assert arrived["lone"] - submitted["lone"] < WINDOW_S * 0.75  # claimed at once, not after the window
    assert WINDOW_S * 0.9 <= arrived["b"] - submitted["b"] < WINDOW_S + 0.8  # waited for the window ...
    assert abs(arrived["b"] - arrived["c"]) < 0.1  # ... and went out with c, in one claim

    # The listener reads again after the window: a submission now starts the next one, well before the timer
    # that would find the job without its wake-up.
    submitted["d"] = time.time()
    submit(client, f"{partner.url}/ok/d")
    arrived_d = at_partner(partner, 4)[3]
    assert arrived_d.path == "/ok/d"
    assert arrived_d.at - submitted["d"] < WINDOW_S + 1.0 < FALLBACK_TIMER_S
