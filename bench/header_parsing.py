"""CPU to read one request's header block: the web server's reader (web/server.py `parsed_headers`) against gevent's
own parser (the email package's), on the header block bench/jobs_bench.py's client sends with each POST /jobs.

    .venv/bin/python bench/header_parsing.py [--rounds 50000]

Prints microseconds of CPU per block for each, best of five runs.
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from gevent.pywsgi import headers_factory  # noqa: E402

from web.server import parsed_headers  # noqa: E402

BLOCK = (
    b"Host: 127.0.0.1:8000\r\nUser-Agent: python-requests/2.34.2\r\nAccept-Encoding: gzip, deflate\r\n"
    b"Accept: */*\r\nConnection: keep-alive\r\nAuthorization: Bearer sk_live_abcdefghijklmnopqrstuvwxyz0123456789\r\n"
    b"Content-Type: application/json\r\nContent-Length: 512\r\n\r\n"
)


def cpu_us(read, rounds: int) -> float:
    best = float("inf")
    for _ in range(5):
        start = time.process_time()
        for _ in range(rounds):
            read(BLOCK)
        best = min(best, (time.process_time() - start) / rounds * 1e6)
    return round(best, 2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=50_000)
    args = parser.parse_args()
    assert parsed_headers(BLOCK).items() == headers_factory(io.BytesIO(BLOCK)).items()
    print(
        json.dumps(
            {
                "gevent_parser_us": cpu_us(lambda block: headers_factory(io.BytesIO(block)), args.rounds),
                "server_reader_us": cpu_us(parsed_headers, args.rounds),
            }
        )
    )


if __name__ == "__main__":
    main()
