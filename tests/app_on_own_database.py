"""`app` and `new_app_key` on each test's own database, for a module whose tests also start processes on theirs
(a process holds one database at a time: models/db.py). Such a module takes both in place of the module-wide
ones of tests/conftest.py with `from tests.app_on_own_database import app, new_app_key  # noqa: F401`."""

from __future__ import annotations

import pytest

from tests.conftest import app_key_maker


@pytest.fixture
def app(app_on_test_database):
    return app_on_test_database


@pytest.fixture
def new_app_key(app):
    return app_key_maker(app)
