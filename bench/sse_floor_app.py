"""The floor for bench/sse_fanout.py's connect time: the bare stack, nothing of ours on the path.

A Flask stream view that answers every GET /stream at once with one comment and then holds the
connection, served by the same server as `python -m web` (web.server.Server: 2 KB read buffer,
backlog 4,096, Nagle off). No authentication, no visibility check, no Redis, no database, no events:
it measures what accepting, parsing, dispatching through Flask and answering cost on this machine.
Run by the benchmark with --baseline floor; not part of the service.
"""

from gevent import monkey

monkey.patch_all()

import os  # noqa: E402

import gevent.event  # noqa: E402
from flask import Flask, Response  # noqa: E402

from models.settings import Settings  # noqa: E402
from web.server import Server, server_limits  # noqa: E402

app = Flask(__name__)
forever = gevent.event.Event()


@app.get("/stream")
def stream():
    def events():
        yield b": connected\n\n"
        forever.wait()

    return Response(events(), mimetype="text/event-stream", direct_passthrough=True)


@app.get("/healthz")
def healthz():
    return "ok"


Server(("127.0.0.1", int(os.environ["PORT"])), app, log=None, **server_limits(Settings())).serve_forever()
