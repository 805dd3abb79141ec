"""The order of a graceful stop, in process: the server stops taking requests before the app's streams are
ended (a browser whose stream ends asks the server something at once; see `web.server.begin_stop`)."""

from __future__ import annotations

from gevent import socket as cooperative_socket

from web.server import Server, begin_stop


def _hello(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "2")])
    return [b"ok"]


def _answered(port: int) -> bool:
    """Whether a request on a new connection gets an answer. Cooperative, so that the server runs meanwhile."""
    try:
        with cooperative_socket.create_connection(("127.0.0.1", port), timeout=2) as sock:
            sock.sendall(b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
            return sock.recv(1024) != b""
    except (ConnectionRefusedError, ConnectionResetError, TimeoutError):
        return False


def test_the_streams_are_ended_once_no_request_is_taken_any_more():
    server = Server(("127.0.0.1", 0), _hello, max_connections=16, header_timeout_s=5, idle_timeout_s=5, log=None)
    server.start()
    port = server.server_port
    assert _answered(port)
    answered_while_streams_end: list[bool] = []

    def end_streams():
        answered_while_streams_end.append(_answered(port))

    def failing_hook():
        raise RuntimeError("Redis is gone")

    begin_stop([server], [failing_hook, end_streams])  # a failing hook keeps neither the stop nor the others
    server.stop(timeout=1)
    assert answered_while_streams_end == [False]
