import pytest

from tests.conftest import make_client
from tests.helpers import create_account, sqlite_url, system_env, web_service
from tests.jobs.partners import OddPartner


@pytest.fixture(scope="module")
def module_env(redis_server, tmp_path_factory):
    """An environment shared by a module's tests (one database), for tests that only read or are refused."""
    workdir = tmp_path_factory.mktemp("jobs-module")
    return system_env(sqlite_url(workdir), redis_server.url), workdir


@pytest.fixture(scope="module")
def shared_web(module_env):
    env, workdir = module_env
    svc = web_service(env, workdir, name="web-shared").start()
    yield svc
    if svc.alive():
        svc.stop(timeout=20)


@pytest.fixture(scope="module")
def new_key(module_env):
    """new_key() creates an account in the shared database with the real CLI; returns its key."""
    env, _ = module_env
    return lambda: create_account(env)


@pytest.fixture(scope="module")
def empty_api(shared_web, new_key):
    """A client of an account that must never have a job: every request it makes is refused."""
    return make_client(shared_web.url, new_key())


@pytest.fixture
def odd_partner():
    """A partner that misbehaves at the HTTP level (see tests/jobs/partners.py)."""
    server = OddPartner()
    yield server
    server.stop()
