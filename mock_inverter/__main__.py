from models.gevent_patch import patch_all

patch_all()

import argparse  # noqa: E402
import os  # noqa: E402
import signal  # noqa: E402
import sys  # noqa: E402

import gevent  # noqa: E402

from models.process import exit_process  # noqa: E402

from .app import create_app  # noqa: E402
from .clock import SimClock, parse_iso  # noqa: E402
from .config import ConfigError, generate_fleet, load_fleet, parse_fleet  # noqa: E402
from .faults import FaultError, Faults, parse_outages  # noqa: E402
from .physics import use_curve_store  # noqa: E402
from .ratelimit import PROFILES  # noqa: E402
from .server import MockServer  # noqa: E402


def _env(name, default=None):
    return os.environ.get(f"MOCK_INVERTER_{name}", default)


def parse_args(argv=None):
    p = argparse.ArgumentParser(prog="python -m mock_inverter", description=__doc__)
    p.add_argument("--host", default=_env("HOST", "127.0.0.1"))
    p.add_argument("--port", type=int, default=_env("PORT", "5100"))
    p.add_argument("--config", default=_env("CONFIG"), help="fleet config JSON (default: the demo fleet)")
    p.add_argument(
        "--generate-fleet",
        type=int,
        default=_env("GENERATE_FLEET"),
        metavar="N",
        help="simulate N generated devices across brands instead of --config",
    )
    p.add_argument("--speed", type=float, default=_env("SPEED", "1"), help="simulated seconds per real second")
    p.add_argument("--start", default=_env("START"), help="simulated start, ISO-8601 (default: now)")
    p.add_argument("--seed", type=int, default=_env("SEED"))
    p.add_argument("--profile", choices=sorted(PROFILES), default=_env("PROFILE", "fast"))
    p.add_argument(
        "--limits-clock",
        choices=("real", "sim"),
        default=_env("LIMITS_CLOCK", "real"),
        help="count rate limits in real time (default) or on the simulated clock (benchmarks)",
    )
    p.add_argument("--latency-ms", type=float, default=_env("LATENCY_MS", "0"))
    p.add_argument("--error-rate", type=float, default=_env("ERROR_RATE", "0"))
    p.add_argument("--malformed-rate", type=float, default=_env("MALFORMED_RATE", "0"))
    p.add_argument("--offline", default=_env("OFFLINE", ""), help="comma-separated serials reported offline")
    p.add_argument(
        "--outage",
        default=_env("OUTAGE", ""),
        help="comma-separated START/END simulated-time windows when connections are reset",
    )
    p.add_argument(
        "--curve-cache",
        default=_env("CURVE_CACHE", "var/cache/day-curves"),
        metavar="DIR",
        help="keep the computed pvlib day curves here for the next start (empty: compute them every start)",
    )
    p.add_argument("--access-log", action="store_true", default=_env("ACCESS_LOG", "") not in ("", "0"))
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        if args.generate_fleet:
            fleet = parse_fleet(generate_fleet(args.generate_fleet, args.seed or 0), "--generate-fleet")
        else:
            fleet = load_fleet(args.config, args.seed)
        offline = [s for s in args.offline.split(",") if s]
        for serial in offline:
            if serial not in {d.serial for d in fleet.devices}:
                raise ConfigError("--offline", serial, "serial", "no such device in the fleet")
        faults = Faults(seed=fleet.seed)
        faults.update(
            {
                "latency_ms": args.latency_ms,
                "error_rate": args.error_rate,
                "malformed_rate": args.malformed_rate,
                "offline": offline,
                "outages": parse_outages([w for w in args.outage.split(",") if w]),
            }
        )
        start = parse_iso(args.start) if args.start else None
    except ConfigError as exc:
        print(exc.line, file=sys.stderr)
        return 2
    except (FaultError, ValueError) as exc:
        print(f"mock_inverter: {exc}", file=sys.stderr)
        return 2

    use_curve_store(args.curve_cache)
    app = create_app(fleet, SimClock(start, args.speed), args.profile, faults, args.limits_clock)
    server = MockServer(app, args.host, args.port, args.access_log)
    for signum in (signal.SIGTERM, signal.SIGINT):
        gevent.signal_handler(signum, server.stop)
    try:
        server.start()
    except OSError as exc:
        print(f"mock_inverter: cannot listen on {args.host}:{args.port}: {exc.strerror}", file=sys.stderr)
        return 1
    print(
        f"mock_inverter: {len(fleet.devices)} devices on http://{args.host}:{server.port} "
        f"(profile {args.profile}, speed {args.speed}x, limits on the {args.limits_clock} clock)",
        flush=True,
    )
    server.wsgi._stop_event.wait()
    return 0


if __name__ == "__main__":
    exit_process(main())
