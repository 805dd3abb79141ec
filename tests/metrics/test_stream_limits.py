"""Each account may hold at most STREAMS_PER_ACCOUNT open streams (of every kind) per web process, and
/streams/stats shows the caller its own streams only."""

from __future__ import annotations

import json

from tests.conftest import make_client
from tests.helpers import create_account, wait_until
from tests.metrics.conftest import onboard

FAR_FUTURE = "2099-01-01T00:00:00Z"


def a_waiting_job(api) -> dict:
    reply = api.post("/jobs", json={"url": "http://127.0.0.1:9/never", "run_at": FAR_FUTURE})
    assert reply.status_code == 202, reply.text
    return reply.json()


def open_streams(api) -> int:
    return api.get("/streams/stats").json()["streams"]


def test_an_account_gets_429_beyond_its_streams_and_a_closed_one_frees_its_place(
    services, metrics_env, account_key, sse, mock
):
    web = services.web({**metrics_env, "STREAMS_PER_ACCOUNT": "3"})
    api = make_client(web.url, account_key)
    inverter = onboard(api, mock, "sandbox", "SBX-AMS-0001")
    job = a_waiting_job(api)
    kinds = [f"/inverters/{inverter['id']}/stream", f"/stream?inverters={inverter['id']}", f"/jobs/{job['id']}/events"]
    opened = [sse(web.url, path, key=account_key) for path in kinds]
    assert [stream.wait_status() for stream in opened] == [200, 200, 200]

    for path in kinds:  # every kind counts against the same limit
        refused = sse(web.url, path, key=account_key)
        assert refused.wait_status() == 429, path
        assert refused.ended.wait(5)
        assert json.loads(refused.body)["error"] == {
            "code": "too_many_streams",
            "details": {"limit": 3},
            "message": "at most 3 streams per account are open at once on this server; close one first",
        }

    # Another account's streams are its own, and neither sees the other's figures.
    other_key = create_account(metrics_env)
    other = make_client(web.url, other_key)
    others = sse(web.url, f"/jobs/{a_waiting_job(other)['id']}/events", key=other_key)
    assert others.wait_status() == 200
    assert open_streams(api) == 3 and open_streams(other) == 1
    assert set(api.get("/streams/stats").json()) == {"streams", "limit", "at"}

    opened[0].close()  # a client going away frees its place
    wait_until(lambda: open_streams(api) == 2, 5, 0.05, "the closed stream to be released")
    assert sse(web.url, kinds[0], key=account_key).wait_status() == 200
    assert open_streams(api) == 3


def test_a_stream_the_server_ends_frees_its_place(services, metrics_env, account_key, sse, mock):
    web = services.web({**metrics_env, "STREAMS_PER_ACCOUNT": "1"})
    api = make_client(web.url, account_key)
    inverter = onboard(api, mock, "sandbox", "SBX-AMS-0001")
    member_key = create_account(metrics_env, "member-of-one")
    member = make_client(web.url, member_key)
    member_id = api.post(f"/inverters/{inverter['id']}/members", json={"account": "member-of-one"}).json()["account"]
    stream = sse(web.url, f"/inverters/{inverter['id']}/stream", key=member_key)
    assert stream.wait_status() == 200
    assert sse(web.url, f"/jobs/{a_waiting_job(member)['id']}/events", key=member_key).wait_status() == 429

    # Losing access closes the stream from the server's side: its place is free again.
    assert api.delete(f"/inverters/{inverter['id']}/members/{member_id}").status_code == 204
    assert stream.ended.wait(5)
    wait_until(lambda: open_streams(member) == 0, 5, 0.05, "the ended stream to be released")
    assert sse(web.url, f"/jobs/{a_waiting_job(member)['id']}/events", key=member_key).wait_status() == 200
