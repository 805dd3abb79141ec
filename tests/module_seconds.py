"""Refresh tests/module_seconds.json, the seconds each test module took, from pytest's --durations report.

    .venv/bin/python -m pytest -n 2 --dist loadfile --no-loadscope-reorder -p no:cacheprovider --durations=0 -vv \
        | .venv/bin/python -m tests.module_seconds

With --merge, only the modules on stdin are updated and the others kept (a run of a few modules).

tests/conftest.py hands the modules out longest first (the longest-processing-time rule), so the modules
that run for minutes start at once and the quick ones fill in at the end, instead of one process finishing
a long module alone while the other idles. The figures only order the modules: a stale or missing one
costs balance, never a test.
"""

from __future__ import annotations

import json
import re
import sys
from collections import defaultdict
from pathlib import Path

FILE = Path(__file__).with_name("module_seconds.json")
LINE = re.compile(r"^\s*([0-9.]+)s (?:setup|call|teardown)\s+(tests/\S+?\.py)::")


def main() -> int:
    seconds: dict[str, float] = defaultdict(float)
    for line in sys.stdin:
        if match := LINE.match(line):
            seconds[match[2]] += float(match[1])
    if not seconds:
        print("no --durations lines on stdin", file=sys.stderr)
        return 1
    table = {m: round(s, 1) for m, s in seconds.items()}
    if "--merge" in sys.argv[1:]:
        table = {**json.loads(FILE.read_text()), **table}
    FILE.write_text(json.dumps(dict(sorted(table.items())), indent=0) + "\n")
    print(f"{FILE}: {len(seconds)} modules from stdin, {len(table)} in all, {sum(table.values()):.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
