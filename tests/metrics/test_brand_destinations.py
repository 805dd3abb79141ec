"""Brand calls follow the destination policy like job attempts: onboarding decides about a base URL
without connecting (the same answer whatever listens there), and every brand call, from onboarding or
from a poller, is checked again on the address actually connected to.

Nothing here sends a packet anywhere but 127.0.0.1; an AcceptRecorder proves that a refusal made no
connection at all.
"""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from models.brands import adapter_for
from models.brands.base import BAD_REPLY, BLOCKED, BrandError
from models.net.policy import DestinationPolicy
from models.settings import Settings
from tests.app_on_own_database import app, new_app_key  # noqa: F401 - this module's tests use their own database
from tests.helpers import free_port, wait_until
from tests.metrics.conftest import SANDBOX_KEY, mock_stats, onboard
from tests.servers import AcceptRecorder

# Hosts that do not resolve as written but that requests (or IDNA 2003) turns into 127.0.0.1.
DISGUISED_LOOPBACK = [
    "%31%32%37.0.0.1",
    "127%2e0%2e0%2e1",
    "%6c%6f%63%61%6c%68%6f%73%74",
    "0x7f.0.0.1",
    "127.1",
    "2130706433",
    "\uff11\uff12\uff17.\uff10.\uff10.\uff11",
    "127\u30020\u30020\u30021",
]


@pytest.fixture
def recorder():
    server = AcceptRecorder()
    yield server
    server.close()


def _onboard(api, base_url: str, brand: str = "sandbox"):
    credential = {"api_key": SANDBOX_KEY} if brand == "sandbox" else {"token": "t"}
    return api.post(
        "/inverters",
        json={"brand": brand, "serial": "SBX-AMS-0001", "connection": {"base_url": base_url, **credential}},
    )


@pytest.mark.parametrize("host", DISGUISED_LOOPBACK)
def test_a_disguised_host_is_refused_without_connecting_and_nothing_stored(client, recorder, host):
    reply = _onboard(client, f"http://{host}:{recorder.port}")
    assert reply.status_code == 422, reply.text
    error = reply.get_json()["error"]
    assert (error["code"], error["details"]["field"]) == ("validation_failed", "connection.base_url")
    assert recorder.accepted == 0
    assert client.get("/inverters").get_json()["inverters"] == []


def test_userinfo_in_a_base_url_is_refused_and_never_echoed_or_logged(web, api, recorder):
    reply = _onboard(api, f"http://relay-user:S3cret-Pa55@127.0.0.1:{recorder.port}")
    assert reply.status_code == 422, reply.text
    error = reply.json()["error"]
    assert (error["code"], error["details"]["field"]) == ("validation_failed", "connection.base_url")
    assert "connection.api_key" in error["message"]
    assert "S3cret-Pa55" not in reply.text and "S3cret-Pa55" not in web.logs()
    assert recorder.accepted == 0
    assert api.get("/inverters").json()["inverters"] == []


@pytest.mark.parametrize(
    "brand,path,added",
    [("sandbox", "/sandbox/v1", "/sandbox/v1"), ("growatt_v4", "/v4/new-api", "/v4/new-api and /v1")],
)
def test_a_base_url_with_a_path_says_the_expected_form(mock, api, brand, path, added):
    reply = _onboard(api, mock.url + path, brand)
    assert reply.status_code == 422, reply.text
    error = reply.json()["error"]
    assert error["code"] == "validation_failed"
    assert error["details"] == {"field": "connection.base_url", "expected": "scheme://host[:port]"}
    assert "scheme://host[:port]" in error["message"] and f"adds {added}" in error["message"]
    assert api.get("/inverters").json()["inverters"] == []
    assert _onboard(api, mock.url + "/").status_code == 201  # a trailing slash is only the origin


def test_a_refused_destination_gets_the_same_answer_whether_or_not_something_listens(
    services, metrics_env, account_key, client_for, recorder
):
    strict = services.web({**metrics_env, "ALLOWED_TARGET_NETWORKS": ""})
    api = client_for(strict.url, account_key)
    closed_port = free_port()
    for host in ["127.0.0.1", "localhost", "[::ffff:127.0.0.1]", *DISGUISED_LOOPBACK]:
        listening = _onboard(api, f"http://{host}:{recorder.port}")
        closed = _onboard(api, f"http://{host}:{closed_port}")
        assert listening.status_code == 422, (host, listening.text)
        assert (listening.status_code, listening.content) == (closed.status_code, closed.content), host
    assert _onboard(api, f"http://localhost:{recorder.port}").json()["error"]["code"] == "blocked_destination"
    assert recorder.accepted == 0
    assert api.get("/inverters").json()["inverters"] == []


def test_a_poller_adapter_checks_the_address_at_connect(recorder):
    """The adapter the poller builds (adapter_for + the policy from settings) refuses a name resolving to
    loopback when ALLOWED_TARGET_NETWORKS is empty, before connecting; with 127.0.0.0/8 allowed it connects."""
    connection = SimpleNamespace(
        brand="sandbox", base_url=f"http://localhost:{recorder.port}", credentials={"api_key": SANDBOX_KEY}
    )
    strict = adapter_for(connection, DestinationPolicy.from_settings(Settings.from_env({})), 2.0)
    with pytest.raises(BrandError) as caught:
        strict.list_devices()
    strict.close()
    assert caught.value.kind == BLOCKED
    assert "localhost resolves to 127.0.0.1, which is loopback; refused" in caught.value.message
    assert recorder.accepted == 0

    allowed = DestinationPolicy.from_settings(Settings.from_env({"ALLOWED_TARGET_NETWORKS": "127.0.0.0/8"}))
    adapter = adapter_for(connection, allowed, 2.0)
    with pytest.raises(BrandError) as caught:
        adapter.list_devices()
    adapter.close()
    assert caught.value.kind == BAD_REPLY  # it did connect: the recorder's 200 is not JSON
    assert recorder.accepted == 1


def test_a_worker_without_loopback_allowed_never_polls_loopback(services, metrics_env, mock, api):
    """Onboarded while 127.0.0.0/8 was allowed; a worker whose policy refuses loopback backs the brand
    off as blocked and the mock never sees a latest-data call."""
    onboard(api, mock, "sandbox", "SBX-AMS-0001")
    listed = mock_stats(mock)["totals"]["requests"]
    worker = services.worker({**metrics_env, "ALLOWED_TARGET_NETWORKS": ""}, role="pollers")
    wait_until(lambda: "kind=blocked_destination" in worker.logs(), 15, 0.1, "the poller's blocked call")
    assert "127.0.0.1 is loopback; refused" in worker.logs()
    assert mock_stats(mock)["totals"]["requests"] == listed
