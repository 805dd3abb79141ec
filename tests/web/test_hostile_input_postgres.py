"""The hostile-input tests of test_hostile_input.py again on PostgreSQL, which refuses what SQLite stores
(a NUL in a text parameter): the same refusals must come before the database."""

from __future__ import annotations

import pytest

from tests.conftest import emptied, in_process_app
from tests.web.test_hostile_input import (  # noqa: F401 - collected here again, on this module's app
    owner_client,
    test_a_control_character_in_a_serial_or_an_account_is_refused,
    test_a_control_character_in_a_webhook_endpoints_description_is_refused,
    test_a_credential_that_cannot_travel_in_a_header_is_422_without_echo,
    test_a_lone_surrogate_is_400_naming_where_it_is,
    test_an_idempotency_key_with_a_control_character_is_400,
    test_no_input_to_a_write_endpoint_is_a_5xx_and_no_refusal_stores_anything,
)


@pytest.fixture(scope="module")
def app(postgres_server_url, redis_server):
    with in_process_app(emptied(postgres_server_url), redis_server.url) as flask_app:
        yield flask_app
