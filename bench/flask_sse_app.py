"""The comparison point for bench/sse_fanout.py: flask-sse (one Redis subscription per client) on the
same gevent WSGI server. Run by the benchmark with --baseline flask-sse; not part of the service."""

from gevent import monkey

monkey.patch_all()

import json  # noqa: E402
import os  # noqa: E402

from flask import Flask, Response, request, stream_with_context  # noqa: E402
from flask_sse import Message, sse  # noqa: E402
from gevent.pywsgi import WSGIServer  # noqa: E402

app = Flask(__name__)
app.config["REDIS_URL"] = os.environ["REDIS_URL"]


@app.get("/stream")
def stream():
    """flask-sse's stream view, plus one comment first: flask-sse sends nothing, not even the
    response headers, until the first event, so a client could not tell it was connected."""
    channel = request.args.get("channel") or "sse"

    @stream_with_context
    def events():
        # flask_sse.messages(), subscribed before the first byte so no event falls in between.
        pubsub = sse.redis.pubsub()
        pubsub.subscribe(channel)
        try:
            yield ":connected\n\n"
            for item in pubsub.listen():
                if item["type"] == "message":
                    yield str(Message(**json.loads(item["data"])))
        finally:
            pubsub.close()

    return Response(events(), mimetype="text/event-stream")


@app.get("/healthz")
def healthz():
    return "ok"


WSGIServer(("127.0.0.1", int(os.environ["PORT"])), app, log=None, backlog=4096).serve_forever()
