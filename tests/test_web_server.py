"""The web server against hostile or broken clients: deadlines for a request's headers and for an idle
kept-alive connection, the connection cap (health checks still answered), and its own refusals in the
JSON error envelope. Each test talks to a real `python -m web` over raw sockets."""

from __future__ import annotations

import json
import socket
import time

import pytest
import requests

from tests.conftest import make_client
from tests.helpers import create_account, gunicorn_service, wait_until
from tests.metrics.conftest import SSEClient


def connect(web, timeout: float = 10) -> socket.socket:
    return socket.create_connection(("127.0.0.1", web.port), timeout=timeout)


def read_until_closed(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes; raises socket.timeout if it never does."""
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    return data


def read_response(sock: socket.socket) -> tuple[int, dict, bytes]:
    """One response with a Content-Length body, leaving the connection open."""
    data = b""
    while b"\r\n\r\n" not in data:
        data += sock.recv(65536)
    head, body = data.split(b"\r\n\r\n", 1)
    lines = head.decode().split("\r\n")
    headers = {name.lower(): value.strip() for name, value in (line.split(":", 1) for line in lines[1:])}
    while len(body) < int(headers["content-length"]):
        body += sock.recv(65536)
    return int(lines[0].split()[1]), headers, body


def test_a_half_open_request_is_closed_after_the_header_timeout(services, env):
    web = services.web(env, HEADER_READ_TIMEOUT_S="0.5")
    sock = connect(web)
    started = time.monotonic()
    sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")  # and never the blank line
    assert read_until_closed(sock) == b""
    assert 0.45 <= time.monotonic() - started < 5


def test_an_idle_kept_alive_connection_is_closed_after_the_idle_timeout(services, env):
    web = services.web(env, IDLE_TIMEOUT_S="0.5", HEADER_READ_TIMEOUT_S="30")
    sock = connect(web)
    for _ in range(2):  # keep-alive itself still works
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        assert read_response(sock)[0] == 200
    idle_since = time.monotonic()
    assert read_until_closed(sock) == b""
    assert 0.45 <= time.monotonic() - idle_since < 5


def test_a_stream_outlives_both_timeouts(services, env):
    web = services.web(env, HEADER_READ_TIMEOUT_S="0.2", IDLE_TIMEOUT_S="0.2", SSE_KEEPALIVE_S="0.2")
    key = create_account(env)
    job = make_client(web.url, key).post("/jobs", json={"url": "http://127.0.0.1:9/", "run_at": "2099-01-01T00:00:00Z"})
    stream = SSEClient(web.url, f"/jobs/{job.json()['id']}/events", key=key)
    try:
        wait_until(lambda: stream.comments >= 5, 10, 0.05, "a second of keepalive comments")  # 5 x both timeouts
        assert stream.status == 200 and not stream.ended.is_set()
    finally:
        stream.close()


def test_at_the_cap_a_new_client_takes_the_place_of_the_oldest_half_open_connection(services, env):
    web = services.web(env, MAX_CONNECTIONS="3", HEADER_READ_TIMEOUT_S="60")
    half_open = [connect(web) for _ in range(3)]
    for sock in half_open:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
    assert requests.get(web.url + "/healthz", timeout=5).status_code == 200
    assert read_until_closed(half_open[0]) == b""


def test_when_every_connection_is_busy_only_health_checks_are_answered(services, env):
    web = services.web(env, MAX_CONNECTIONS="2")
    key = create_account(env)
    job = make_client(web.url, key).post("/jobs", json={"url": "http://127.0.0.1:9/", "run_at": "2099-01-01T00:00:00Z"})
    streams = []
    try:
        for _ in range(2):  # one after the other: neither may be taken for a half-open connection
            streams.append(SSEClient(web.url, f"/jobs/{job.json()['id']}/events", key=key))
            assert streams[-1].wait_status() == 200
        refused = requests.get(web.url + "/jobs", headers={"Authorization": f"Bearer {key}"}, timeout=5)
        assert refused.status_code == 503, refused.text
        assert refused.headers["Content-Type"] == "application/json" and refused.headers["Connection"] == "close"
        assert refused.json()["error"]["code"] == "too_many_connections"
        for path in ("/healthz", "/readyz"):
            health = requests.get(web.url + path, timeout=5)
            assert health.status_code == 200 and health.headers["Connection"] == "close", path
        assert not any(stream.ended.is_set() for stream in streams)
    finally:
        for stream in streams:
            stream.close()
    wait_until(
        lambda: (
            requests.get(web.url + "/jobs", headers={"Authorization": f"Bearer {key}"}, timeout=5).status_code == 200
        ),
        5,
        0.05,
        "a place once the streams are gone",
    )


REFUSED = [
    (b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 414, "uri_too_long"),
    (b"GET / HTTP/1.1\r\nHost: x\r\nCookie: " + b"c" * 40_000 + b"\r\n\r\n", 431, "headers_too_large"),
    (b"GET / HTTP/1.1\r\n" + b"X-Many: 1\r\n" * 101 + b"\r\n", 431, "headers_too_large"),
    (b"NONSENSE\r\n\r\n", 400, "bad_request"),
    (b"GET / HTTP/9.9\r\n\r\n", 400, "bad_request"),
]


def test_the_servers_own_refusals_are_the_error_envelope(services, env):
    web = services.web(env)
    for request_bytes, status, code in REFUSED:
        sock = connect(web)
        sock.sendall(request_bytes)
        got_status, headers, body = read_response(sock)
        assert got_status == status, request_bytes[:40]
        assert headers["content-type"] == "application/json" and headers["connection"] == "close"
        assert json.loads(body)["error"]["code"] == code
        assert read_until_closed(sock) == b""
        sock.close()


def test_sigterm_answers_the_request_being_read_and_takes_no_more_on_kept_alive_connections(services, env):
    web = services.web(env, SHUTDOWN_GRACE_S="5")
    key = create_account(env)
    body = json.dumps({"url": "http://127.0.0.1:9/x"}).encode()

    kept_alive = connect(web)
    kept_alive.sendall(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n")
    assert read_response(kept_alive)[0] == 200

    in_flight = connect(web)
    in_flight.sendall(
        (
            f"POST /jobs HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer {key}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\nExpect: 100-continue\r\n\r\n"
        ).encode()
    )
    # The server asks for the body once the view reads it: the request is being answered.
    interim = b""
    while b"\r\n\r\n" not in interim:
        interim += in_flight.recv(1)
    assert interim.startswith(b"HTTP/1.1 100 ")

    web.terminate()
    wait_until(lambda: "stopping" in web.logs(), 10, 0.02, "the web to begin stopping")
    in_flight.sendall(body)
    # Answered, then closed: no further request on that connection either.
    head, _, answer = read_until_closed(in_flight).partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 202 ") and json.loads(answer)["status"] == "pending"

    assert not _answered(web.port, kept_alive), "the kept-alive connection took another request"
    assert web.stop() == 0


@pytest.mark.parametrize("server", ["python -m web", "gunicorn"])
def test_sigterm_stops_taking_requests_before_it_ends_the_streams(server, services, env, tmp_path):
    """A browser whose stream ends asks at once whether its session still holds, and goes where the answer
    says. Were that question answered by a server on its way out, the browser would go to an address nobody
    answers any more. So once a stop has ended the streams, no connection, new or kept alive, is answered."""
    if server == "gunicorn":
        web = gunicorn_service({**env, "SHUTDOWN_GRACE_S": "5"}, tmp_path, workers=1).start()
    else:
        web = services.web(env, SHUTDOWN_GRACE_S="5")
    key = create_account(env)
    job = make_client(web.url, key).post("/jobs", json={"url": "http://127.0.0.1:9/", "run_at": "2099-01-01T00:00:00Z"})
    kept_alive = connect(web)
    kept_alive.sendall(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n")
    assert read_response(kept_alive)[0] == 200
    stream = connect(web)
    stream.sendall(
        f"GET /jobs/{job.json()['id']}/events HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer {key}\r\n\r\n".encode()
    )
    received = b""
    while b"\r\n\r\n" not in received:
        chunk = stream.recv(65536)
        assert chunk, "the stream's connection closed before its headers"
        received += chunk
    assert received.startswith(b"HTTP/1.1 200 ")

    web.terminate()
    while not received.endswith(b"\r\n0\r\n\r\n"):  # the stream's last chunk
        chunk = stream.recv(65536)
        assert chunk, "the stream was ended with its last chunk, not cut"
        received += chunk
    assert not _answered(web.port, None), "a new connection was answered after the streams had ended"
    assert not _answered(web.port, kept_alive), "a kept-alive connection was answered after the streams had ended"
    assert not _answered(web.port, stream), "the stream's connection was answered after it ended"
    assert web.stop() == 0


def _answered(port: int, sock: socket.socket | None) -> bool:
    """Whether a health check sent on `sock` (or on a new connection) gets any answer."""
    try:
        sock = sock or socket.create_connection(("127.0.0.1", port), timeout=5)
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n")
        return read_until_closed(sock) != b""
    except (ConnectionRefusedError, ConnectionResetError, BrokenPipeError):
        return False
