"""Bad configuration stops each process with one line that says what is wrong, never a stack trace."""

import resource
import subprocess

import pytest
from cryptography.fernet import Fernet

from tests.helpers import PYTHON, ROOT, free_port, project_env, run_cli, sqlite_url

CLOSED = f"postgresql://nobody@127.0.0.1:{free_port()}/none"


@pytest.mark.parametrize(
    "args, env, says",
    [
        (["web"], {"PORT": "abc"}, "PORT='abc' is not a whole number"),
        (["web"], {"DATABASE_URL": "mysql://x/y"}, "DATABASE_URL"),
        (["web"], {"DATABASE_URL": CLOSED}, "web: cannot start: connection to server"),
        (["actors"], {"DATABASE_URL": CLOSED}, "worker: cannot start: connection to server"),
        (["actors", "--role", "jobs"], {"MAX_IN_FLIGHT": "0"}, "MAX_IN_FLIGHT=0 is outside 1..10000"),
        (["actors", "--role", "jobs"], {"ALLOWED_TARGET_NETWORKS": "10.0.0.0/99"}, "is not a CIDR network"),
        (["models", "migrate"], {"DATABASE_URL": CLOSED}, "cannot open the database"),
        (["models", "create-account", ""], {}, "account name must be 1..200 characters"),
        (["web"], {"SECRET_KEY": ""}, "web: cannot start: SECRET_KEY is not set"),
        (["actors", "--role", "pollers"], {"SECRET_KEY": ""}, "worker: cannot start: SECRET_KEY is not set"),
        (["actors", "--role", "jobs"], {"SECRET_KEY": ""}, "worker: cannot start: SECRET_KEY is not set"),
        (["models", "migrate"], {"SECRET_KEY": ""}, "error: SECRET_KEY is not set"),
        (["actors"], {"SECRET_KEY": "not-a-fernet-key"}, "SECRET_KEY: key 1 of 1 is not a Fernet key"),
        (
            ["web"],
            {"SECRET_KEY": f"{Fernet.generate_key().decode()},truncated"},
            "SECRET_KEY: key 2 of 2 is not a Fernet key",
        ),
    ],
)
def test_one_line_and_a_non_zero_exit(args, env, says, tmp_path):
    result = run_cli(args, project_env(**{"DATABASE_URL": sqlite_url(tmp_path), **env}), timeout=60)
    assert result.returncode != 0
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and says in lines[0], result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    if env.get("SECRET_KEY"):
        assert not any(key in result.stderr for key in env["SECRET_KEY"].split(",")), "a secret is never echoed"


def test_web_refuses_a_connection_cap_the_descriptor_limit_cannot_hold(tmp_path):
    def low_descriptor_limit():
        resource.setrlimit(resource.RLIMIT_NOFILE, (1000, 1000))

    env = project_env(DATABASE_URL=sqlite_url(tmp_path), MAX_CONNECTIONS="900")
    result = subprocess.run(
        [PYTHON, "-m", "web"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        preexec_fn=low_descriptor_limit,
    )
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "web: configuration error: MAX_CONNECTIONS=900 leaves too few file descriptors: the limit is 1000 per process "
        "and the web process needs 564 besides its connections; use at most 436 (or 0 for that many)"
    )
