"""Real HTTP servers on 127.0.0.1 that behave like flaky partners, for the retry engine's tests.

Paths:
  /ok                              200 "ok"
  /flaky/<key>?fail=N&status=503   fails N times for that key (with `status`), then 200; with &hold=K its
                                   K-th request answers only once the test calls let_go(key)
  /sleep?s=SECONDS                 waits, then 200
  /hold/<name>                     answers 200 once the test calls let_go(name)
  /reset                           closes the connection without answering (RST)
  /status/<code>?retry_after=V     answers <code>, with Retry-After: V when given
  /redirect                        301 to /ok
Every request is recorded (method, path, headers, body, time) for assertions.
"""

from __future__ import annotations

import socket
import socketserver
import struct
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit


@dataclass
class Received:
    method: str
    path: str
    headers: dict
    body: bytes
    client_port: int = 0
    at: float = field(default_factory=time.time)


def serving_thread(httpd: socketserver.BaseServer) -> threading.Thread:
    """A daemon thread that serves `httpd` once started. Its shutdown() returns within 20 ms: the serving loop
    looks at the flag every poll_interval, 0.5 s by default, which was half a second of every test with a
    partner server."""
    return threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)


class _Server(ThreadingHTTPServer):
    # socketserver's default listen backlog of 5 drops connections when a worker opens dozens at once.
    request_queue_size = 256
    daemon_threads = True


class ScriptedServer:
    def __init__(self):
        self.requests: list[Received] = []
        self.failures: Counter = Counter()
        self.lock = threading.Lock()
        self._held: dict[str, threading.Event] = {}
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # Headers and body go out in separate writes; without this, keep-alive replies wait
            # 40 ms for the client's delayed ACK.
            disable_nagle_algorithm = True

            def log_message(self, *args):
                pass

            def _handle(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                url = urlsplit(self.path)
                query = {k: v[-1] for k, v in parse_qs(url.query).items()}
                with server.lock:
                    server.requests.append(
                        Received(self.command, url.path, dict(self.headers), body, self.client_address[1])
                    )
                parts = [p for p in url.path.split("/") if p]
                kind = parts[0] if parts else "ok"
                if kind == "flaky":
                    key = parts[1] if len(parts) > 1 else "default"
                    with server.lock:
                        server.failures[key] += 1
                        count = server.failures[key]
                    if count == int(query.get("hold", 0)):
                        server._hold_event(key).wait(30)
                    if count <= int(query.get("fail", 1)):
                        return self._reply(int(query.get("status", 503)), b"not yet")
                    return self._reply(200, b"recovered")
                if kind == "hold":
                    server._hold_event(parts[1] if len(parts) > 1 else "default").wait(30)
                    return self._reply(200, b"let go")
                if kind == "sleep":
                    time.sleep(float(query.get("s", 1)))
                    return self._reply(200, b"slept")
                if kind == "reset":
                    self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    self.connection.close()
                    self.close_connection = True
                    return None
                if kind == "status":
                    code = int(parts[1]) if len(parts) > 1 else 500
                    headers = {"Retry-After": query["retry_after"]} if "retry_after" in query else {}
                    return self._reply(code, f"status {code}".encode(), headers)
                if kind == "redirect":
                    return self._reply(301, b"moved", {"Location": "/ok"})
                if kind == "big":
                    return self._reply(200, b"x" * int(query.get("n", 1000)))
                return self._reply(200, b"ok")

            def _reply(self, code, body, headers=None):
                self.send_response(code)
                for name, value in (headers or {}).items():
                    self.send_header(name, value)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = _handle

        self.httpd = _Server(("127.0.0.1", 0), Handler)
        self.port = self.httpd.server_address[1]
        self.thread = serving_thread(self.httpd)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self):
        self.thread.start()
        return self

    def stop(self):
        with self.lock:
            held = list(self._held.values())
        for event in held:
            event.set()  # no handler thread left waiting on a test that is over
        self.httpd.shutdown()
        self.httpd.server_close()

    def _hold_event(self, name: str) -> threading.Event:
        with self.lock:
            return self._held.setdefault(name, threading.Event())

    def let_go(self, name: str) -> None:
        """Answer the requests held under `name` (/hold/<name>, /flaky/<name>?hold=K), waiting or to come."""
        self._hold_event(name).set()

    def received(self, path_prefix: str = "/") -> list[Received]:
        with self.lock:
            return [r for r in self.requests if r.path.startswith(path_prefix)]


class AcceptRecorder:
    """A TCP listener on 127.0.0.1 that counts accepted connections and answers each with a 200 that
    is not JSON: what a port scan through the service would find. Proves a refusal made no connection."""

    def __init__(self):
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.accepted = 0
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _serve(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.accepted += 1
            with conn:
                conn.sendall(
                    b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n"
                    b"Connection: close\r\n\r\nhello"
                )

    def close(self):
        try:
            self.sock.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept()
        except OSError:
            pass
        self.sock.close()
