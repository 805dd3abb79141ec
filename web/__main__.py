"""`python -m web`: serve the app with gevent's WSGI server until SIGTERM or SIGINT."""

from models.gevent_patch import patch_all

patch_all()

import logging  # noqa: E402
import signal  # noqa: E402
import sys  # noqa: E402

import gevent  # noqa: E402

from models.logs import configure_logging, one_line  # noqa: E402
from models.process import exit_process  # noqa: E402
from models.settings import SettingsError, get_settings  # noqa: E402
from web.extensions import collaborators_of, shutdown_hooks  # noqa: E402
from web.server import Server, begin_stop, server_limits  # noqa: E402

log = logging.getLogger("web")


def main() -> int:
    try:
        settings = get_settings()
    except SettingsError as exc:
        print(f"web: configuration error: {exc}", file=sys.stderr)
        return 2
    try:
        limits = server_limits(settings)
    except ValueError as exc:
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
        server = Server((settings.host, settings.port), app, log=None, error_log=log, **limits)
        server.init_socket()
    except OSError as exc:
        print(f"web: cannot listen on {settings.host}:{settings.port}: {exc.strerror or exc}", file=sys.stderr)
        return 1

    def stop(signum):
        log.info("signal %s: stopping (open streams get %.0f s)", signum, settings.shutdown_grace_s)
        begin_stop([server], shutdown_hooks(app))
        server.stop(timeout=min(settings.shutdown_grace_s, 5))

    gevent.signal_handler(signal.SIGTERM, stop, signal.SIGTERM)
    gevent.signal_handler(signal.SIGINT, stop, signal.SIGINT)
    log.info(
        "listening on http://%s:%d (at most %d connections)",
        settings.host,
        server.server_port,
        limits["max_connections"],
    )
    server.serve_forever()
    collaborators_of(app).close()  # the database closed (its WAL checkpointed) and Redis let go, before the exit
    # A second copy of the signal can still be pending in a helper thread; once gevent's hub is
    # gone it would kill the process with the default action and a misleading exit status.
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    log.info("stopped")
    return 0


if __name__ == "__main__":
    exit_process(main())
