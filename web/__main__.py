"""`python -m web`: serve the app with gevent's WSGI server until SIGTERM or SIGINT."""
from gevent import monkey

monkey.patch_all()

import logging  # noqa: E402
import signal  # noqa: E402
import socket  # noqa: E402
import sys  # noqa: E402

import gevent  # noqa: E402
from gevent.pywsgi import WSGIHandler, WSGIServer  # noqa: E402

from models.logs import configure_logging, one_line  # noqa: E402
from models.settings import SettingsError, get_settings  # noqa: E402

log = logging.getLogger("web")


LISTEN_BACKLOG = 4096


class Handler(WSGIHandler):
    # A 2 KB read buffer instead of the default 8 KB: an SSE client keeps its handler (and this
    # buffer) for hours while reading nothing after its request headers.
    RFILE_BUFFER = 2048

    def __init__(self, sock, address, server):
        super().__init__(sock, address, server)
        self.rfile = sock.makefile("rb", self.RFILE_BUFFER)


class Server(WSGIServer):
    """gevent's WSGI server with Nagle off: on a keep-alive connection a response written in two
    segments otherwise waits for the client's delayed ACK, adding 40 ms to every request."""

    handler_class = Handler

    def handle(self, sock, address):
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            pass
        return super().handle(sock, address)


def main() -> int:
    try:
        settings = get_settings()
    except SettingsError as exc:
        print(f"web: configuration error: {exc}", file=sys.stderr)
        return 2
    configure_logging(settings.log_level, "web", settings.log_format)
    from web import create_app

    try:
        app = create_app(settings)
    except Exception as exc:
        print(f"web: cannot start: {one_line(exc)}", file=sys.stderr)
        return 1
    try:
        # gevent's default listen backlog of 128 overflows when thousands of browsers reconnect at
        # once (a web restart): the excess SYNs are retried after 1, 3, 7 s.
        server = Server((settings.host, settings.port), app, log=None, error_log=log, backlog=LISTEN_BACKLOG)
        server.init_socket()
    except OSError as exc:
        print(f"web: cannot listen on {settings.host}:{settings.port}: {exc.strerror or exc}", file=sys.stderr)
        return 1

    def stop(signum):
        log.info("signal %s: stopping (open streams get %.0f s)", signum, settings.shutdown_grace_s)
        on_shutdown = app.config.get("ON_SHUTDOWN") or []
        for hook in on_shutdown:
            hook()
        server.stop(timeout=min(settings.shutdown_grace_s, 5))

    gevent.signal_handler(signal.SIGTERM, stop, signal.SIGTERM)
    gevent.signal_handler(signal.SIGINT, stop, signal.SIGINT)
    log.info("listening on http://%s:%d", settings.host, server.server_port)
    server.serve_forever()
    # A second copy of the signal can still be pending in a helper thread; once gevent's hub is
    # gone it would kill the process with the default action and a misleading exit status.
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    log.info("stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
