"""Run a benchmark alternately on another revision and on this tree, round by round, and print the figures side by
side: this machine's speed moves by tens of percent from hour to hour, so a change is only compared with its
baseline measured in the same minutes.

    .venv/bin/python bench/alternate.py BASE_REV [--rounds 3] [--keys k1,k2.sub] -- bench/<name>.py [its arguments]

BASE_REV is checked out in a temporary git worktree (removed afterwards) that uses this checkout's .venv. Each round
runs the benchmark there, then here; the benchmark must print one JSON object (the last `{` that starts a line to
the end of its output). --keys picks the figures to print (a dot reaches into a nested object); by default every
number at the top level. Environment variables (SECRET_KEY, REDIS_URL) pass through to both runs.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run(tree: Path, command: list[str]) -> dict:
    env = {**os.environ, "PYTHONPATH": str(tree)}
    done = subprocess.run([sys.executable, *command], cwd=tree, env=env, capture_output=True, text=True)
    start = done.stdout.rfind("\n{") + 1
    try:
        return json.loads(done.stdout[start:])
    except json.JSONDecodeError:
        tail = (done.stderr or done.stdout).strip().splitlines()[-1:]
        raise SystemExit(f"alternate: {' '.join(command)} in {tree} printed no JSON object: {tail}") from None


def picked(figures: dict, keys: list[str]) -> dict:
    if not keys:
        return {k: v for k, v in figures.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
    out = {}
    for key in keys:
        value: object = figures
        for part in key.split("."):
            value = value.get(part) if isinstance(value, dict) else None
        out[key] = value
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("base", help="the revision to compare with (a commit, a tag, a branch)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--keys", default="", help="comma-separated figures to print; a dot reaches into an object")
    argv = sys.argv[1:]
    if "--" not in argv or argv.index("--") == len(argv) - 1:
        parser.error("give the benchmark to run after --: -- bench/<name>.py [its arguments]")
    split = argv.index("--")
    args, command = parser.parse_args(argv[:split]), argv[split + 1 :]
    keys = [k for k in args.keys.split(",") if k]
    with tempfile.TemporaryDirectory(prefix="alternate-") as scratch:
        base = Path(scratch) / "base"
        subprocess.run(["git", "worktree", "add", "--detach", "--quiet", str(base), args.base], cwd=ROOT, check=True)
        try:
            (base / ".venv").symlink_to(ROOT / ".venv")
            series: dict[str, list[dict]] = {"base": [], "this": []}
            for _ in range(args.rounds):
                for name, tree in (("base", base), ("this", ROOT)):
                    figures = picked(run(tree, command), keys)
                    series[name].append(figures)
                    load = os.getloadavg()[0]
                    print(f"{time.strftime('%H:%M:%S')} load {load:.2f} {name}: {json.dumps(figures)}", flush=True)
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(base)], cwd=ROOT, check=False)
    print(f"\nbase {args.base} | this tree, {args.rounds} rounds alternated:")
    for key in series["this"][0]:
        before = ", ".join(str(f.get(key)) for f in series["base"])
        after = ", ".join(str(f.get(key)) for f in series["this"])
        print(f"  {key}: {before} | {after}")


if __name__ == "__main__":
    main()
