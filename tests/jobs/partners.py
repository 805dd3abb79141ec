"""A second scripted partner for cases tests/servers.py does not cover (raw bytes, odd replies)."""

from __future__ import annotations

import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from tests.servers import serving_thread


class OddPartner:
    """/binary: 200 with non-UTF-8 bytes; /slow-body?s=: headers at once, body trickled for s seconds;
    /huge-headers: a header line longer than http.client accepts; /chunked: a chunked body;
    /slow-headers: header lines trickled for 3 s; /repeated-headers: one field twice in two cases, and two
    Set-Cookie fields."""

    def __init__(self):
        self.requests: list[tuple[str, float]] = []

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_GET(handler):  # noqa: N805
                self.requests.append((handler.path, time.time()))
                if handler.path.startswith("/binary"):
                    return handler._reply(200, b"\xff\xfe\x00\x81binary\xc3(", "application/octet-stream")
                if handler.path.startswith("/slow-body"):
                    seconds = float(handler.path.split("s=", 1)[1]) if "s=" in handler.path else 2.0
                    handler.send_response(200)
                    handler.send_header("Content-Length", "1000")
                    handler.end_headers()
                    deadline = time.monotonic() + seconds
                    try:
                        while time.monotonic() < deadline:
                            handler.wfile.write(b"x")
                            handler.wfile.flush()
                            time.sleep(0.05)
                    except OSError:
                        pass
                    handler.close_connection = True
                    return None
                if handler.path.startswith("/chunked"):
                    handler.send_response(200)
                    handler.send_header("Transfer-Encoding", "chunked")
                    handler.end_headers()
                    for part in (b"hello ", b"chunked ", b"world"):
                        handler.wfile.write(b"%x\r\n%s\r\n" % (len(part), part))
                        handler.wfile.flush()
                        time.sleep(0.02)
                    handler.wfile.write(b"0\r\n\r\n")
                    return None
                if handler.path.startswith("/slow-headers"):
                    handler.wfile.write(b"HTTP/1.1 200 OK\r\n")
                    try:
                        for n in range(60):
                            handler.wfile.write(b"X-Slow-%d: 1\r\n" % n)
                            handler.wfile.flush()
                            time.sleep(0.05)
                        handler.wfile.write(b"Content-Length: 0\r\n\r\n")
                    except OSError:
                        pass
                    handler.close_connection = True
                    return None
                if handler.path.startswith("/repeated-headers"):
                    handler.send_response(200)
                    for name, value in (
                        ("X-Repeat", "a"),
                        ("x-repeat", "b"),
                        ("Set-Cookie", "one=1"),
                        ("Set-Cookie", "two=2"),
                    ):
                        handler.send_header(name, value)
                    handler.send_header("Content-Length", "2")
                    handler.end_headers()
                    handler.wfile.write(b"ok")
                    return None
                if handler.path.startswith("/huge-headers"):
                    handler.send_response(200)
                    handler.send_header("X-Huge", "h" * 70000)
                    handler.send_header("Content-Length", "0")
                    handler.end_headers()
                    return None
                return handler._reply(404, b"no", "text/plain")

            def _reply(handler, code, body, content_type):  # noqa: N805
                handler.send_response(code)
                handler.send_header("Content-Type", content_type)
                handler.send_header("Content-Length", str(len(body)))
                handler.end_headers()
                handler.wfile.write(body)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        serving_thread(self.httpd).start()

    def stop(self):
        self.httpd.shutdown()
        self.httpd.server_close()
