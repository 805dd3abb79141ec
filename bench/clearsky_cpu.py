"""CPU time of the clear-sky tables: the tables of 1,000 sites for one day (what an alert engine starting
with 1,000 distinct production_low sites asks for), and one table alone.

    .venv/bin/python bench/clearsky_cpu.py

It measures whichever models/clearsky.py sits next to it, with or without many sites a call (tables_of):
copied into a checkout of an older version, it measures that version the same way.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from models import clearsky  # noqa: E402
from models.clearsky import Site, day_table  # noqa: E402

SITES = [Site(35.0 + 25.0 * i / 1000, 5.0 + i * 0.01, 5000.0, 30.0, 180.0) for i in range(1000)]
DAY = 20621  # 2026-06-17


def main() -> None:
    day_table(Site(0.0, 0.0, 1.0), 19_000)  # imports and first-call costs out of the way
    started = time.process_time()
    if hasattr(clearsky, "tables_of"):
        clearsky.tables_of([(site, DAY) for site in SITES])
    else:  # one table at a time, as the engine asked for them before
        for site in SITES:
            day_table(site, DAY)
    many = time.process_time() - started
    started = time.process_time()
    for site in SITES[:200]:
        day_table(site, DAY + 1)
    alone = (time.process_time() - started) / 200
    print(json.dumps({"cpu_s_1000_sites": round(many, 3), "cpu_ms_one_table_alone": round(alone * 1000, 2)}))


if __name__ == "__main__":
    main()
