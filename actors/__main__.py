"""`python -m actors [--role jobs|pollers|all]`: the worker process, until SIGTERM or SIGINT."""

from models.gevent_patch import patch_all

patch_all()

import argparse  # noqa: E402
import logging  # noqa: E402
import signal  # noqa: E402
import sys  # noqa: E402

import gevent  # noqa: E402
import gevent.event  # noqa: E402

from models.logs import configure_logging, one_line  # noqa: E402
from models.process import exit_process  # noqa: E402
from models.settings import SettingsError, get_settings  # noqa: E402

log = logging.getLogger("worker")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m actors", description="The Pykka actor system.")
    parser.add_argument(
        "--role",
        choices=("jobs", "pollers", "all"),
        default="all",
        help="jobs: dispatch outbound HTTP jobs; pollers: poll inverters; all: both",
    )
    args = parser.parse_args(argv)
    try:
        settings = get_settings()
    except SettingsError as exc:
        print(f"worker: configuration error: {exc}", file=sys.stderr)
        return 2
    configure_logging(settings.log_level, f"worker[{args.role}]", settings.log_format)
    from actors.system import ActorSystem

    try:
        system = ActorSystem(settings, args.role).start()
    except Exception as exc:
        print(f"worker: cannot start: {one_line(exc)}", file=sys.stderr)
        return 1

    stop_requested = gevent.event.Event()

    def on_signal(signum):
        log.info("signal %s: shutting down (grace %.1f s)", signum, settings.shutdown_grace_s)
        stop_requested.set()

    gevent.signal_handler(signal.SIGTERM, on_signal, signal.SIGTERM)
    gevent.signal_handler(signal.SIGINT, on_signal, signal.SIGINT)
    stop_requested.wait()
    system.stop()
    return 0


if __name__ == "__main__":
    exit_process(main())
