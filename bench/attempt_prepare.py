"""CPU of making one attempt's request: requests' full `Request(...).prepare()` against the transport's own
`prepare_attempt()` (the steps a job needs), in process, for a job as bench/jobs_bench.py submits them.

    .venv/bin/python bench/attempt_prepare.py [--requests 20000] [--rounds 3]

Both make the same request (tests/jobs/test_attempt_request.py); the difference is CPU the worker spends per
attempt before anything is sent. Rounds alternate the two, so the machine's changing speed falls on both alike.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from actors.transport import USER_AGENT, prepare_attempt  # noqa: E402

URL = "http://127.0.0.1:18080/sink/hook?n=1"
HEADERS = {
    "User-Agent": USER_AGENT,
    "Accept-Encoding": "identity",
    "Accept": "*/*",
    "Content-Type": "application/json",
    "X-Signature": "t=1700000000,v1=" + "a" * 64,
}
BODY = b'{"event":"payment.settled","data":"' + b"x" * 460 + b'"}'  # ~500 bytes, as the workload's


def per_request_us(make, count: int) -> float:
    started = time.process_time()
    for _ in range(count):
        make()
    return (time.process_time() - started) / count * 1e6


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=20000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    for round_number in range(1, args.rounds + 1):
        full = per_request_us(
            lambda: requests.Request("POST", URL, headers=HEADERS, data=BODY).prepare(), args.requests
        )
        ours = per_request_us(lambda: prepare_attempt("POST", URL, HEADERS, BODY), args.requests)
        print(f"round {round_number}: Request.prepare() {full:.1f} us, prepare_attempt() {ours:.1f} us CPU per request")
    return 0


if __name__ == "__main__":
    sys.exit(main())
