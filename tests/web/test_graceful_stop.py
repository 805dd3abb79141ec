"""The order of a graceful stop, in process: the server stops taking requests before the app's streams are
ended (a browser whose stream ends asks the server something at once; see `web.server.begin_stop`)."""

from __future__ import annotations

import socket

from web.server import Server, begin_stop


def _hello(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "2")])
    return [b"ok"]


def _takes_connections(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except ConnectionRefusedError:
        return False
    return True


def test_the_streams_are_ended_once_no_connection_is_taken_any_more():
    server = Server(("127.0.0.1", 0), _hello, max_connections=16, header_timeout_s=5, idle_timeout_s=5, log=None)
    server.start()
    port = server.server_port
    assert _takes_connections(port)
    seen_by_hooks: list[bool] = []

    def end_streams():
        seen_by_hooks.append(_takes_connections(port))

    def failing_hook():
        raise RuntimeError("Redis is gone")

    begin_stop([server], [failing_hook, end_streams])  # a failing hook keeps neither the stop nor the others
    server.stop(timeout=1)
    assert seen_by_hooks == [False]
