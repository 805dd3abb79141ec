"""What one hand-off of the engine costs in CPU, back to back and from idle (the case of light load).

    .venv/bin/python bench/wakeup_costs.py [--redis redis://127.0.0.1:6379/0]

Under gevent, in one process: a trip to the database owner's thread (a trivial call, and a one-row insert
through the group-committing write), a Pykka ask and tell, a Redis PUBLISH and a two-PUBLISH pipeline, a
greenlet spawn. Each is timed back to back, then once every 5 ms (the process idle in between, as at 100
jobs/s); the paced figure has the cost of the 5 ms sleep itself (also printed) taken off. CPU is this
process's (both threads), so the database thread's share is counted.
"""

from gevent import monkey

monkey.patch_all()

import argparse  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import gevent  # noqa: E402
import gevent.event  # noqa: E402
import pykka  # noqa: E402
import redis  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from models.db import DatabaseOwner, make_database  # noqa: E402

PACE_S = 0.005


def cpu_us_per_op(fn, n: int, pace: float = 0.0) -> float:
    start = time.process_time()
    for _ in range(n):
        fn()
        if pace:
            gevent.sleep(pace)
    return (time.process_time() - start) / n * 1e6


class Echo(pykka.ThreadingActor):
    def __init__(self, done: gevent.event.Event):
        super().__init__()
        self.done = done

    def on_receive(self, message):
        self.done.set()
        return 1


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--n", type=int, default=2000, help="operations back to back (a tenth of that paced)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="wakeup-costs-") as tmp:
        db = DatabaseOwner(make_database(f"sqlite:///{tmp}/costs.db"))
        db.call(lambda: db.db.execute_sql("CREATE TABLE t (x)"))
        done = gevent.event.Event()
        echo = Echo.start(done)
        client = redis.Redis.from_url(args.redis, decode_responses=True)

        def tell():
            done.clear()
            echo.tell("x")
            done.wait()

        def pipeline():
            pipe = client.pipeline(transaction=False)
            pipe.publish("wakeup-costs:a", "1")
            pipe.publish("wakeup-costs:b", "1")
            pipe.execute()

        operations = {
            "database thread, trivial call": lambda: db.call(lambda: 1),
            "database write, one-row insert": lambda: db.write(lambda: db.db.execute_sql("INSERT INTO t VALUES (1)")),
            "pykka ask": lambda: echo.ask("x"),
            "pykka tell (and an event back)": tell,
            "redis PUBLISH": lambda: client.publish("wakeup-costs:a", "1"),
            "redis pipeline of two PUBLISH": pipeline,
            "gevent spawn and join": lambda: gevent.spawn(lambda: 1).join(),
        }
        sleep_alone = cpu_us_per_op(lambda: None, args.n // 10, PACE_S)
        results = {"sleep_5ms_alone_us": round(sleep_alone, 1)}
        for name, fn in operations.items():
            fn()
            back_to_back = cpu_us_per_op(fn, args.n)
            from_idle = cpu_us_per_op(fn, args.n // 10, PACE_S) - sleep_alone
            results[name] = {"back_to_back_us": round(back_to_back, 1), "from_idle_us": round(from_idle, 1)}
        pykka.ActorRegistry.stop_all()
        db.close()
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
