"""The app's share of an SSE connect: the stream view called in-process, with no server or socket.

    .venv/bin/python bench/sse_connect_app.py [--connects 10000] [--profile]

Calls the WSGI app of `python -m web` for GET /inverters/<id>/stream (1,000 inverters, each already
viewed once, Bearer key) and reads each response's first chunk, and does the same with the floor app of
bench/sse_fanout.py --baseline floor (a Flask stream view that answers with one comment). Prints the
CPU per connect of each: what our layer (authentication, visibility, the hub, the initial frames)
adds inside the app, without the noise of sockets and load generators. Starts its own redis-server
and uses a temporary SQLite file. --profile prints cProfile's view of ours.
"""

from gevent import monkey

monkey.patch_all()

import argparse  # noqa: E402
import cProfile  # noqa: E402
import os  # noqa: E402
import pstats  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import start_redis_server  # noqa: E402

INVERTERS = 1000
HUB_SUBSCRIBE_TIMEOUT_S = 10


def floor_app():
    from flask import Flask, Response

    app = Flask("floor")

    @app.get("/stream")
    def stream():
        def events():
            yield b": connected\n\n"

        return Response(events(), mimetype="text/event-stream", direct_passthrough=True)

    return app


def our_app(workdir: Path):
    from models import inverters
    from models.accounts import create_account
    from models.db import open_database
    from models.schema import ensure_schema

    db = open_database(os.environ["DATABASE_URL"])
    ensure_schema(db)

    def populate():
        account, key = create_account("bench")
        connection = inverters.connection_for("sandbox", "http://127.0.0.1:9", {"api_key": "bench"})
        return key, [
            inverters.Inverter.create(
                connection=connection.id, brand="sandbox", serial=f"B{n:05d}", device_type="hybrid", owner=account.id
            ).id
            for n in range(INVERTERS)
        ]

    key, ids = db.write(populate)
    from web import create_app

    return create_app(), key, ids


def measure(app, paths, key, connects: int, profile: bool) -> float:
    held = []

    def start_response(status, headers, exc_info=None):
        if not status.startswith("200"):
            raise SystemExit(f"bench: {status}")

    def connect(i):
        environ = {
            "REQUEST_METHOD": "GET",
            "SCRIPT_NAME": "",
            "PATH_INFO": paths[i % len(paths)],
            "QUERY_STRING": "",
            "SERVER_NAME": "127.0.0.1",
            "SERVER_PORT": "80",
            "SERVER_PROTOCOL": "HTTP/1.1",
            "HTTP_HOST": "x",
            "HTTP_AUTHORIZATION": f"Bearer {key}",
            "REMOTE_ADDR": "127.0.0.1",
            "wsgi.url_scheme": "http",
            "wsgi.input": None,
            "wsgi.errors": sys.stderr,
            "wsgi.version": (1, 0),
            "wsgi.multithread": False,
            "wsgi.multiprocess": False,
            "wsgi.run_once": False,
        }
        body = iter(app(environ, start_response))
        next(body)
        held.append(body)  # the stream stays open, as a connected browser's does

    for i in range(2 * len(paths)):  # every inverter viewed once: the steady state of a busy process
        connect(i)
    profiler = cProfile.Profile() if profile else None
    started = time.process_time()
    if profiler:
        profiler.enable()
    for i in range(connects):
        connect(i)
    if profiler:
        profiler.disable()
        pstats.Stats(profiler).sort_stats("cumulative").print_stats(40)
    return (time.process_time() - started) / connects


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--connects", type=int, default=10000)
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="sse-app-") as tmp:
        redis_proc, port = start_redis_server(Path(tmp))
        try:
            os.environ.update(
                DATABASE_URL=f"sqlite:///{tmp}/bench.db", REDIS_URL=f"redis://127.0.0.1:{port}/0", LOG_LEVEL="WARNING"
            )
            app, key, ids = our_app(Path(tmp))
            # The hub subscribes before the first connect (its greenlet runs while this one waits).
            if not app.extensions["sse_hub"].subscribed.wait(timeout=HUB_SUBSCRIBE_TIMEOUT_S):
                raise SystemExit(f"bench: the SSE hub did not subscribe within {HUB_SUBSCRIBE_TIMEOUT_S} s")
            floor = measure(floor_app(), ["/stream"], key, args.connects, False)
            ours = measure(app, [f"/inverters/{i}/stream" for i in ids], key, args.connects, args.profile)
        finally:
            redis_proc.terminate()
    print(
        f"floor app: {floor * 1e6:.1f} us per connect; ours: {ours * 1e6:.1f} us per connect "
        f"(+{(ours - floor) * 1e6:.1f} us)"
    )


if __name__ == "__main__":
    main()
