"""What a start leaves for later: a web process imports no HTTP client (the brand adapters bring requests when
the first one is built), and a worker whose alert engine has no production_low or daily_summary rule imports
neither numpy, pandas nor pvlib (models/clearsky.py). Each is ~50-1000 ms of CPU a start (docs/benchmarks.md)."""

import subprocess

import pytest

from tests.helpers import PYTHON, ROOT

PREAMBLE = """
from models.gevent_patch import patch_all
patch_all()
import sys
from models.settings import get_settings
"""

WEB = """
from web import create_app
app = create_app(get_settings())
assert app.test_client().get("/healthz").status_code == 200
"""

WORKER = """
from actors.system import ActorSystem
ActorSystem(get_settings(), "all").start().stop(0)
"""

REPORT = """
print(" ".join(sorted(name for name in ("requests", "urllib3", "numpy", "pandas", "pvlib") if name in sys.modules)))
"""


@pytest.mark.parametrize(
    "start, left_out", [(WEB, "requests urllib3 numpy pandas pvlib"), (WORKER, "numpy pandas pvlib")]
)
def test_a_start_does_not_import_what_only_some_starts_need(start, left_out, env):
    result = subprocess.run(
        [PYTHON, "-c", PREAMBLE + start + REPORT], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    imported = set(result.stdout.split())
    assert imported.isdisjoint(left_out.split()), imported
