"""Run by test_poller_resilience.py as its own (gevent) process: a real BrandPoller against the mock
inverter is handed a message whose handling raises, and must go on polling. Exit 0 when it does."""

from gevent import monkey

monkey.patch_all()

import sys  # noqa: E402
import time  # noqa: E402

from actors.poller import BrandPoller, Polled, Publisher  # noqa: E402
from models import inverters  # noqa: E402
from models.channels import inverter_log  # noqa: E402
from models.db import open_database  # noqa: E402
from models.redis_client import redis_client  # noqa: E402
from models.settings import get_settings  # noqa: E402


def logged(inverter_id: str) -> int:
    return redis_client().xlen(inverter_log(inverter_id))


def wait_for_more(inverter_id: str, than: int, within_s: float) -> int:
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        count = logged(inverter_id)
        if count > than:
            return count
        time.sleep(0.05)
    print(f"no new reading within {within_s} s (still {than})", file=sys.stderr)
    sys.exit(1)


settings = get_settings()
db = open_database(settings.database_url)
connection = db.call(inverters.connections_with_inverters)[0]
inverter_id = db.call(inverters.pollable, connection.id)[0].id
publisher = Publisher(redis_client(), settings)
poller = BrandPoller.start(connection, settings, db, redis_client(), publisher)
seen = wait_for_more(inverter_id, 0, 15)
# Neither a result nor an error: handling it raises. Before, the exception stopped the actor.
poller.tell(
    Polled(
        entry=None, sent_at=time.time(), answered_at=time.time(), inverter_ids=(inverter_id,), result=None, error=None
    )
)
wait_for_more(inverter_id, wait_for_more(inverter_id, seen, 15), 15)  # two more rounds of polling
assert poller.is_alive(), "the poller stopped"
poller.stop()
publisher.close()
print("polling carried on")
