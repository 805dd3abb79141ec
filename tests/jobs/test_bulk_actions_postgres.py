"""The filter and bulk-action tests of test_bulk_actions.py again on PostgreSQL (the bulk UPDATE's sub-select and
RETURNING, and a NUL in q refused before the database)."""

from __future__ import annotations

import pytest

from tests.conftest import emptied, in_process_app
from tests.jobs.test_bulk_actions import (  # noqa: F401 - collected here again, on this module's app
    test_bad_filters_are_refused_with_the_envelope,
    test_bulk_actions_touch_only_the_callers_jobs_and_at_most_the_maximum,
    test_bulk_cancel_cancels_the_waiting_jobs_of_the_filter_and_publishes_each,
    test_bulk_retry_requeues_dead_jobs_with_a_fresh_budget_and_wakes_the_dispatcher,
    test_the_list_is_filtered_by_creation_time,
    test_the_list_is_searched_by_job_id_url_host_and_idempotency_key,
)


@pytest.fixture(scope="module")
def app(postgres_server_url, redis_server):
    with in_process_app(emptied(postgres_server_url), redis_server.url) as flask_app:
        yield flask_app
