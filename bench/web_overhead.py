"""The web's own CPU per `POST /jobs`, without the HTTP server: the Flask app in this process, called as WSGI.

    .venv/bin/python bench/web_overhead.py [--jobs 3000] [--concurrency 64] [--rate 100] [--profile out.prof]

Builds the app with `create_app` on a fresh SQLite file (the real database owner, its group commit, and Redis at
REDIS_URL or 127.0.0.1:6379 for the job events and wake-ups), makes an account, then submits `--jobs` times the
body bench/jobs_bench.py submits (Authorization, Content-Type and Content-Length headers) from `--concurrency`
greenlets, each calling the app with a WSGI environ as gevent's server would build it, and reading its answer.
Prints the CPU of this process's main thread (Flask, validation, views, the event's publish) and of its other
threads (the database owner's: the insert and the commit) per submission. That is bench/jobs_bench.py's web
CPU per job without gevent's HTTP server and the client's sockets: far less noise from the machine's neighbours,
so a change of a few microseconds shows. Nothing consumes the jobs (no worker runs); they stay pending.
`--show` asks for one job (`GET /jobs/<id>`) instead of submitting. `--rate` paces the requests (the hub idles between them, as at light load: `--concurrency 1 --rate 100` is
bench/jobs_bench.py's `--rate 100` for the app alone).
"""

from gevent import monkey

monkey.patch_all()

import argparse  # noqa: E402
import io  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import gevent  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from models.accounts import create_account  # noqa: E402
from models.settings import Settings  # noqa: E402
from web import close_app, create_app  # noqa: E402
from web.extensions import collaborators_of  # noqa: E402

_main_thread_clock = time.pthread_getcpuclockid(monkey.get_original("threading", "get_ident")())


def _environ(body: bytes, key: str, path: str = "/jobs") -> dict:
    return {
        "REQUEST_METHOD": "POST" if body else "GET",
        "SCRIPT_NAME": "",
        "PATH_INFO": path,
        "QUERY_STRING": "",
        "SERVER_NAME": "127.0.0.1",
        "SERVER_PORT": "8000",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": "127.0.0.1",
        "REMOTE_PORT": "50000",
        "HTTP_HOST": "127.0.0.1",
        "HTTP_AUTHORIZATION": f"Bearer {key}",
        **({"CONTENT_TYPE": "application/json", "CONTENT_LENGTH": str(len(body))} if body else {}),
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": "http",
        "wsgi.input": io.BytesIO(body),
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": False,
        "wsgi.multiprocess": False,
        "wsgi.run_once": False,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, default=3000)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument(
        "--rate", type=float, default=0, help="submissions a second, all submitters together (default: flat out)"
    )
    parser.add_argument(
        "--show", action="store_true", help="GET /jobs/<id> of one job submitted before, instead of submitting"
    )
    parser.add_argument("--profile", default=None, help="cProfile the main thread's CPU while submitting")
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="web-overhead-"))
    env = dict(os.environ)
    env["DATABASE_URL"] = f"sqlite:///{tmp / 'bench.db'}"
    env.setdefault("REDIS_URL", "redis://127.0.0.1:6379/0")
    env["ALLOWED_TARGET_NETWORKS"] = "127.0.0.0/8"
    app = create_app(Settings.from_env(env))
    try:
        key = collaborators_of(app).owner.write(create_account, "bench")[1]
        body = json.dumps(
            {
                "url": "http://127.0.0.1:9/hook/ok",
                "json": {"event": "payment.succeeded", "data": {"id": "x" * 380, "amount": 1234, "currency": "EUR"}},
                "max_attempts": 5,
                "backoff": {"base_s": 0.2, "cap_s": 5, "jitter": "full"},
            }
        ).encode()
        path, expected = "/jobs", "202"
        if args.show:
            answer = b"".join(app(_environ(body, key), lambda s, h, e=None: None))
            path, expected, body = f"/jobs/{json.loads(answer)['id']}", "200", b""
        queue = list(range(args.jobs))
        statuses: dict[str, int] = {}
        started = time.monotonic()

        def submitter():
            while queue:
                sequence = args.jobs - len(queue)
                queue.pop()
                if args.rate:
                    # Paced: the hub idles between submissions, as a web process does at light load.
                    gevent.sleep(max(0.0, started + sequence / args.rate - time.monotonic()))
                status: list[str] = []
                answer = b"".join(app(_environ(body, key, path), lambda s, h, e=None, seen=status: seen.append(s)))
                statuses[status[0]] = statuses.get(status[0], 0) + 1
                if not status[0].startswith(expected):
                    raise SystemExit(f"web_overhead: {status[0]} {answer[:200]!r}")

        profiler = None
        if args.profile:
            import cProfile

            profiler = cProfile.Profile(time.thread_time)
        main_before, process_before = time.clock_gettime(_main_thread_clock), time.process_time()
        if profiler:
            profiler.enable()
        gevent.joinall([gevent.spawn(submitter) for _ in range(args.concurrency)], raise_error=True)
        if profiler:
            profiler.disable()
            profiler.dump_stats(args.profile)
        main = time.clock_gettime(_main_thread_clock) - main_before
        other = time.process_time() - process_before - main
        print(
            json.dumps(
                {
                    "jobs": args.jobs,
                    "concurrency": args.concurrency,
                    "rate": args.rate or None,
                    "statuses": statuses,
                    "cpu_ms_main_thread_per_job": round(main / args.jobs * 1000, 4),
                    "cpu_ms_other_threads_per_job": round(other / args.jobs * 1000, 4),
                    "cpu_ms_per_job": round((main + other) / args.jobs * 1000, 4),
                },
                indent=2,
            )
        )
    finally:
        close_app(app)


if __name__ == "__main__":
    main()
