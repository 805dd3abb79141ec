import pytest

from tests.conftest import make_client
from tests.servers import ScriptedServer


@pytest.fixture
def partner():
    server = ScriptedServer().start()
    yield server
    server.stop()


@pytest.fixture
def web(services, env):
    return services.web(env)


@pytest.fixture
def api(web, account_key):
    return make_client(web.url, account_key)
