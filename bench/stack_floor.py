"""The ceiling the mandated stack itself puts on the delivery workload, with no engine in between.

    .venv/bin/python bench/stack_floor.py [--jobs 5000] [--rate 100]

Measures, on this machine and at this moment, the CPU that the two unavoidable halves of one job cost
when they do nothing else:

- submit: a Flask app with one POST route that parses the JSON body and answers 202 with a small JSON
  document, served by the same gevent WSGI server as `python -m web`, driven by the same lean
  keep-alive client as bench/jobs_bench.py (no database, no Redis, no validation);
- attempt: ~500-byte JSON POSTs from 64 greenlets to the same sink as bench/jobs_bench.py (no actors,
  no database, no classification), once through a shared `requests` Session and once through the
  engine's own transport (`requests`' adapter called directly, one send per request); the cheaper
  of the two counts.

From those it prints the most deliveries per second two cores could give for the retry-engine
workload (1.34 attempts and 0.95 deliveries per job) if the engine itself cost nothing: every job
needs one submit and 1.34 attempts, each with the CPU of both of its ends. With --rate the submits and
the attempts are paced at that many a second (one attempt per submit, as in jobs_bench.py --all-ok):
the floor of the cost per job at light load, where every request wakes its processes from idle; with it, also
the engine's own pieces at that pace (three write transactions, two publishes and one message received a job,
see persistence_floor) and the floor with them. Run it right before or after bench/jobs_bench.py: this machine's
speed varies by tens of percent between hours.
"""

from gevent import monkey

monkey.patch_all()

import argparse  # noqa: E402
import contextlib  # noqa: E402
import ipaddress  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import random  # noqa: E402
import signal  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import gevent  # noqa: E402
import requests  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import cpu_seconds, free_port, wait_http  # noqa: E402
from jobs_bench import PY, ROOT, SINK, submit_all  # noqa: E402

from actors.transport import Transport  # noqa: E402
from models.net.policy import DestinationPolicy  # noqa: E402

ATTEMPTS_PER_JOB = 1.34  # the workload's attempts per job (6,698 for 5,000 jobs)
DELIVERIES_PER_JOB = 0.95  # 5% of jobs answer 400 and are never delivered
CORES = os.cpu_count() or 2

FLASK_FLOOR = r"""
from gevent import monkey; monkey.patch_all()
import sys, uuid
from flask import Flask, jsonify, request
from models.settings import Settings
from web.server import Server, server_limits
app = Flask("floor")
@app.get("/healthz")
def healthz():
    return {"ok": True}
@app.post("/jobs")
def submit():
    job = request.get_json()
    return jsonify({"id": uuid.uuid4().hex, "status": "pending", "request": job}), 202
Server(("127.0.0.1", int(sys.argv[1])), app, log=None, **server_limits(Settings())).serve_forever()
"""


@contextlib.contextmanager
def serving(tmp: Path, name: str, script: str, ready_path: str):
    """Run `script` as its own process serving on a free port; yield (port, pid) once it answers."""
    port = free_port()
    (tmp / name).write_text(script)
    server = subprocess.Popen([PY, str(tmp / name), str(port)], cwd=ROOT, env=dict(os.environ, PYTHONPATH=str(ROOT)))
    try:
        wait_http(f"http://127.0.0.1:{port}{ready_path}")
        yield port, server.pid
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(10)


def measured(pid: int, work) -> tuple[float, float, float]:
    """Run work(); return (wall seconds, CPU seconds of process pid, CPU seconds of this process)."""
    other, own, start = cpu_seconds(pid), cpu_seconds(), time.time()
    work()
    return time.time() - start, cpu_seconds(pid) - other, cpu_seconds() - own


def submit_floor(tmp: Path, jobs: int, payload: dict, rate: float = 0) -> dict:
    with serving(tmp, "flask_floor.py", FLASK_FLOOR, "/healthz") as (port, pid):
        plan = [random.Random(7).choice(["ok", "fail1"]) for _ in range(jobs)]
        wall, server_cpu, client_cpu = measured(pid, lambda: submit_all(port, "key", 9, plan, payload, 64, rate))
    return {
        "per_s": round(jobs / wall, 1),
        "server_cpu_ms": round(server_cpu / jobs * 1000, 3),
        "client_cpu_ms": round(client_cpu / jobs * 1000, 3),
    }


def attempt_floor(tmp: Path, attempts: int, payload: dict, lean: bool, rate: float = 0) -> dict:
    session = requests.Session()
    session.mount("http://", requests.adapters.HTTPAdapter(pool_connections=1, pool_maxsize=64))
    transport = Transport(DestinationPolicy([ipaddress.ip_network("127.0.0.0/8")]), body_cap=1 << 20, pool_per_host=64)
    body = json.dumps(payload).encode()
    left = list(range(attempts))
    with serving(tmp, "sink.py", SINK, "/stats") as (port, pid):
        start = time.time()

        def sender():
            while left:
                n = left.pop()
                if rate and (due := start + (attempts - n - 1) / rate) > time.time():
                    gevent.sleep(due - time.time())
                headers = {"Content-Type": "application/json", "X-Job-Id": str(n)}
                if lean:
                    status = transport.send("POST", f"http://127.0.0.1:{port}/hook/ok", headers, body, 10).status_code
                else:
                    status = session.post(
                        f"http://127.0.0.1:{port}/hook/ok", data=body, timeout=10, headers=headers
                    ).status_code
                assert status == 200, status

        wall, sink_cpu, client_cpu = measured(
            pid, lambda: gevent.joinall([gevent.spawn(sender) for _ in range(64)], raise_error=True)
        )
    return {
        "per_s": round(attempts / wall, 1),
        "client_cpu_ms": round(client_cpu / attempts * 1000, 3),
        "sink_cpu_ms": round(sink_cpu / attempts * 1000, 3),
    }


PERSISTENCE_SUBSCRIBER = r"""
import sys
import redis
client = redis.Redis.from_url(sys.argv[1])
subscription = client.pubsub(ignore_subscribe_messages=True)
subscription.subscribe("stack-floor")
print("subscribed", flush=True)
for message in subscription.listen():
    if message["data"] == b"end":
        break
"""


def persistence_floor(tmp: Path, jobs: int, payload: dict, rate: float) -> dict:
    """With --rate: what the engine's own unavoidable pieces cost a job at that pace, each alone. A job is stored
    by the web (one write transaction) and claimed and finished by a worker (two more); the web publishes its
    event and the dispatchers' wake-up, a worker receives the wake-up and publishes the outcome's event. Each
    piece is the project's own: `DatabaseOwner.write_brief` of `insert_job` (a write transaction, which the web commits
    on the hub when it comes alone, as here) on a fresh SQLite file with the project's schema, and `NoReplyPublisher`
    PUBLISHes received by a redis-py subscriber in another process."""
    import redis

    from models.accounts import create_account
    from models.db import open_database
    from models.events import NoReplyPublisher
    from models.jobs import insert_job
    from models.schema import ensure_schema
    from web.job_request import parse_job_request

    owner = open_database(f"sqlite:///{tmp}/floor.db")
    ensure_schema(owner)
    account_id = owner.write(create_account, "floor")[0].id
    policy = DestinationPolicy([ipaddress.ip_network("127.0.0.0/8")])
    spec = parse_job_request(payload, policy)

    def paced(step) -> float:
        """CPU seconds of this process per step, `jobs` steps at `rate` a second."""
        start, cpu = time.time(), cpu_seconds()
        for n in range(jobs):
            if (due := start + n / rate) > time.time():
                gevent.sleep(due - time.time())
            step()
        return (cpu_seconds() - cpu) / jobs

    idle_wake = paced(lambda: None)
    transaction = paced(lambda: owner.write_brief(insert_job, account_id, spec, None)) - idle_wake
    owner.close()

    redis_url = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
    (tmp / "subscriber.py").write_text(PERSISTENCE_SUBSCRIBER)
    subscriber = subprocess.Popen([PY, str(tmp / "subscriber.py"), redis_url], stdout=subprocess.PIPE, text=True)
    client = redis.Redis.from_url(redis_url)
    publisher = NoReplyPublisher(client)
    try:
        assert subscriber.stdout.readline().strip() == "subscribed"
        message = json.dumps({"type": "job", "data": {"id": "x" * 26, "status": "pending"}})
        before = cpu_seconds(subscriber.pid)
        publish = paced(lambda: publisher.publish([("stack-floor", message)])) - idle_wake
        receive = (cpu_seconds(subscriber.pid) - before) / jobs
        publisher.publish([("stack-floor", "end")])
        subscriber.wait(10)
    finally:
        subscriber.kill()
        publisher.close()
        client.close()
    pieces = 3 * transaction + 2 * publish + receive
    return {
        "write_transaction_ms": round(transaction * 1000, 3),
        "publish_ms": round(publish * 1000, 3),
        "receive_ms": round(receive * 1000, 3),
        "pacing_wake_ms": round(idle_wake * 1000, 3),
        "per_job_ms": round(pieces * 1000, 3),
    }


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, default=5000)
    parser.add_argument("--rate", type=float, default=0, help="pace submits and attempts at this many a second")
    args = parser.parse_args()
    payload = {
        "url": "http://127.0.0.1:9/hook/ok",
        "json": {"event": "payment.succeeded", "data": {"id": "x" * 380, "amount": 1234, "currency": "EUR"}},
    }
    with tempfile.TemporaryDirectory(prefix="stack-floor-") as tmp:
        submit = submit_floor(Path(tmp), args.jobs, payload, args.rate)
        attempts_per_job = 1.0 if args.rate else ATTEMPTS_PER_JOB
        attempts = round(args.jobs * attempts_per_job)
        session = attempt_floor(Path(tmp), attempts, payload["json"], lean=False, rate=args.rate)
        adapter = attempt_floor(Path(tmp), attempts, payload["json"], lean=True, rate=args.rate)
        persistence = persistence_floor(Path(tmp), min(args.jobs, 1000), payload, args.rate) if args.rate else None
    attempt = min(session, adapter, key=lambda a: a["client_cpu_ms"] + a["sink_cpu_ms"])
    per_job_ms = (
        submit["server_cpu_ms"]
        + submit["client_cpu_ms"]
        + attempts_per_job * (attempt["client_cpu_ms"] + attempt["sink_cpu_ms"])
    )
    print(
        json.dumps(
            {
                "cores": CORES,
                "submit_flask_pywsgi": submit,
                "attempt_requests_session": session,
                "attempt_engine_transport": adapter,
                "cpu_per_job_ms": round(per_job_ms, 3),
                # What jobs_bench.py counts as "web + worker": the submit's server and the attempt's client.
                "server_and_client_cpu_per_job_ms": round(
                    submit["server_cpu_ms"] + attempts_per_job * attempt["client_cpu_ms"], 3
                ),
                "ceiling_deliveries_per_s": round(CORES * 1000 / per_job_ms * DELIVERIES_PER_JOB, 1),
                **(
                    {
                        # With --rate: the engine's own pieces at that pace (three write transactions, two
                        # publishes, one message received), and the web and worker's floor with them.
                        "persistence": persistence,
                        "server_and_client_with_persistence_per_job_ms": round(
                            submit["server_cpu_ms"] + attempt["client_cpu_ms"] + persistence["per_job_ms"], 3
                        ),
                    }
                    if persistence
                    else {}
                ),
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
