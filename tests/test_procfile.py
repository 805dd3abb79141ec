"""The Procfile under honcho, as `make run` starts it: every process comes up and SIGTERM stops all."""

import re
import signal
import subprocess

import requests

from tests.conftest import make_client
from tests.helpers import ROOT, create_account_with_cli, free_port, wait_until


def test_honcho_starts_every_process_and_sigterm_stops_them_all(env, tmp_path):
    web_port, mock_port = free_port(), free_port()
    env = {**env, "MOCK_INVERTER_PORT": str(mock_port)}
    key = create_account_with_cli(env, "procfile")
    log = open(tmp_path / "honcho.log", "wb")
    honcho = subprocess.Popen(
        [str(ROOT / ".venv/bin/honcho"), "start", "-f", "Procfile", "-p", str(web_port)],
        cwd=ROOT,
        env={**env, "PATH": f"{ROOT / '.venv/bin'}:{env['PATH']}"},
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        wait_until(
            lambda: requests.get(f"http://127.0.0.1:{web_port}/readyz", timeout=1).status_code == 200,
            30,
            0.1,
            "web under honcho",
        )
        wait_until(
            lambda: (
                requests.get(
                    f"http://127.0.0.1:{mock_port}/sandbox/v1/devices",
                    timeout=1,
                    headers={"X-API-Key": "demo-sandbox-key"},
                ).status_code
                == 200
            ),
            30,
            0.1,
            "mock inverter under honcho",
        )
        wait_until(lambda: "actor system up" in (tmp_path / "honcho.log").read_text(), 30, 0.1, "worker under honcho")
        # The worker is really working: a job reaches the mock inverter's sandbox API.
        api = make_client(f"http://127.0.0.1:{web_port}", key)
        reply = api.post(
            "/jobs",
            json={
                "url": f"http://127.0.0.1:{mock_port}/sandbox/v1/devices",
                "method": "GET",
                "headers": {"X-API-Key": "demo-sandbox-key"},
            },
            timeout=5,
        )
        job_path = f"/jobs/{reply.json()['id']}"
        wait_until(lambda: api.get(job_path).json()["status"] == "succeeded", 20, 0.1, "the job to be delivered")
    finally:
        honcho.send_signal(signal.SIGTERM)
        code = honcho.wait(30)
        log.close()
    output = (tmp_path / "honcho.log").read_text()
    assert "Traceback" not in output, output[-3000:]
    for process in ("web", "worker", "mock_inverter"):
        # honcho runs each through the shell, so a clean stop on SIGTERM reads rc=-15; a crash, rc=1.
        assert re.search(rf"{process}\.1 stopped \(rc=(0|-15)\)", output), output[-3000:]
    # honcho itself exits 143 after relaying SIGTERM; each child must have stopped on its own.
    assert code in (0, 143, -signal.SIGTERM), output[-3000:]
