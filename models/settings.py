"""The one settings object: every tunable, read from the environment once at start.

Both processes (web, worker) and the CLI call `get_settings()`; nothing else reads os.environ.
A bad value raises `SettingsError` naming the variable, which the entry points turn into a
one-line message and a non-zero exit.
"""

from __future__ import annotations

import ipaddress
import os
import socket
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field, fields


class SettingsError(ValueError):
    """An environment variable has a value we cannot use."""


def _number(env: Mapping[str, str], name: str, default, lo, hi, kind=float):
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = kind(raw)
    except ValueError:
        raise SettingsError(f"{name}={raw!r} is not {'a whole number' if kind is int else 'a number'}") from None
    if not lo <= value <= hi:
        raise SettingsError(f"{name}={value} is outside {lo}..{hi}")
    return value


_KINDS = {"int": int, "float": float}


def _within(default, lo, hi):
    """A number read from the environment variable named like the field in capitals, within lo..hi."""
    return field(default=default, metadata={"within": (lo, hi)})


def _flag(default: bool):
    """A boolean read from the environment variable named like the field in capitals."""
    return field(default=default, metadata={"flag": True})


def _networks(env: Mapping[str, str], name: str) -> tuple:
    raw = env.get(name, "")
    networks = []
    for part in raw.replace(";", ",").split(","):
        part = part.strip()
        if not part:
            continue
        try:
            networks.append(ipaddress.ip_network(part, strict=False))
        except ValueError:
            raise SettingsError(f"{name}: {part!r} is not a CIDR network") from None
    return tuple(networks)


def _fernet_keys(env: Mapping[str, str], name: str) -> tuple:
    from cryptography.fernet import Fernet

    keys = tuple(part.strip() for part in env.get(name, "").split(",") if part.strip())
    for position, key in enumerate(keys, 1):
        try:
            Fernet(key)
        except ValueError:  # the value itself is never repeated: it is a secret
            raise SettingsError(
                f"{name}: key {position} of {len(keys)} is not a Fernet key (32 url-safe "
                "base64-encoded bytes); make one with `python -m models new-secret-key`"
            ) from None
    return keys


def _bool(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    lowered = raw.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise SettingsError(f"{name}={raw!r} is not a boolean (use 1/0, true/false)")


@dataclass(frozen=True)
class Settings:
    database_url: str = "sqlite:///var/app.db"
    redis_url: str = "redis://127.0.0.1:6379/0"
    port: int = _within(5000, 0, 65535)
    host: str = "127.0.0.1"
    log_level: str = "INFO"
    log_format: str = "text"
    # gunicorn worker processes under gunicorn.conf.py (each holds its own streams and Redis subscription).
    web_workers: int = _within(2, 1, 64)
    # The worker's Prometheus endpoint (0: none). The web process serves GET /metrics on its own port.
    metrics_port: int = _within(9100, 0, 65535)

    # Retry engine
    max_in_flight: int = _within(256, 1, 10000)
    max_in_flight_per_host: int = _within(16, 1, 10000)
    claim_batch: int = _within(256, 1, 10000)
    # How long a dispatcher woken by a submission waits before it claims, when another submission came within
    # that time before it, so that the submissions of that moment share one claim; and the longest an outcome
    # waits for the attempts sent with it, so that they share one write (actors/coalescing.py; 0: neither waits).
    wake_coalesce_ms: float = _within(20.0, 0, 1000)
    lease_s: float = _within(30.0, 0.5, 3600)
    shutdown_grace_s: float = _within(10.0, 0, 600)
    result_body_cap: int = _within(1024 * 1024, 0, 64 * 1024 * 1024)
    # Each attempt's response body kept with the attempt; never more than result_body_cap (the transport reads no more).
    attempt_body_cap: int = _within(16 * 1024, 0, 1024 * 1024)
    request_body_limit: int = _within(1024 * 1024, 1024, 64 * 1024 * 1024)
    batch_body_limit: int = _within(16 * 1024 * 1024, 1024, 256 * 1024 * 1024)
    allowed_target_networks: tuple = ()
    # Fernet keys for brand credentials at rest (models/encryption.py): the first encrypts, all decrypt.
    secret_key: tuple = field(default=(), repr=False)
    worker_id: str = field(default_factory=lambda: f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}")

    # The web server's limits against hostile or broken clients (web/server.py). MAX_CONNECTIONS 0: as many as
    # the file-descriptor limit leaves room for.
    max_connections: int = _within(0, 0, 1_000_000)
    header_read_timeout_s: float = _within(10.0, 0.05, 600)
    idle_timeout_s: float = _within(20.0, 0.05, 3600)
    streams_per_account: int = _within(100, 1, 1_000_000)

    # Live metrics
    sse_client_queue: int = _within(256, 1, 100000)
    sse_keepalive_s: float = _within(15.0, 0.05, 300)
    sse_retry_ms: int = _within(3000, 0, 600000)
    replay_maxlen: int = _within(1000, 1, 10**7)
    poller_lease_s: float = _within(10.0, 0.5, 3600)
    poll_concurrency: int = _within(16, 1, 1000)
    session_ttl_s: int = _within(7 * 24 * 3600, 60, 10**8)
    secure_cookies: bool = _flag(False)
    # Per-brand poll interval asked for when a connection's owner has not asked for one (PATCH
    # /connections/<id>). The quota planner polls no faster than the brand's declared limits allow, so a
    # small value means "as fast as the brand permits".
    sandbox_poll_interval_s: float = _within(300.0, 0.1, 86400)
    growatt_v4_poll_interval_s: float = _within(300.0, 0.1, 86400)
    # SolarEdge: a poll is two calls per site (power flow, overview) within 300 a day per site.
    solaredge_poll_interval_s: float = _within(600.0, 0.1, 86400)
    # Enphase's free Watt plan: 1,000 calls a month is one call per system every ~45 minutes.
    enphase_poll_interval_s: float = _within(2700.0, 0.1, 86400)
    growatt_v1_poll_interval_s: float = _within(300.0, 0.1, 86400)
    fusionsolar_poll_interval_s: float = _within(300.0, 0.1, 86400)
    # The pollers' clock (actors/schedule.py) runs this many times faster than real time from
    # POLL_CLOCK_ANCHOR (epoch seconds; 0: the process's start): for benchmarks against the mock's
    # accelerated clock (its --speed) and tests against its fast profile. Offline alert rules count their
    # minutes on it too (actors/alerts.py): devices are polled that many times as often. 1 in production.
    poll_clock_speed: float = _within(1.0, 1.0, 1_000_000)
    poll_clock_anchor: float = _within(0.0, 0.0, 10**11)
    brand_timeout_s: float = _within(10.0, 0.1, 120)
    recorder_batch: int = _within(500, 1, 100000)
    recorder_claim_idle_s: float = _within(10.0, 0.1, 3600)
    ingest_maxlen: int = _within(1_000_000, 1000, 10**9)

    # Retention (models/retention.py): finished jobs and raw readings older than this go; rollups stay.
    job_retention_days: float = _within(30.0, 0.0001, 36500)
    reading_retention_days: float = _within(30.0, 0.0001, 36500)
    purge_interval_s: float = _within(600.0, 1, 86400)
    purge_batch: int = _within(200, 1, 100000)

    # Alerts and webhooks (models/alerts.py, models/webhooks.py): how long a rotated-out signing secret keeps
    # signing beside the new one.
    webhook_secret_overlap_s: float = _within(24 * 3600.0, 0, 30 * 86400)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        database_url = env.get("DATABASE_URL") or cls.database_url
        if not database_url.startswith(("sqlite:", "postgres://", "postgresql://", "postgresext://")):
            raise SettingsError(f"DATABASE_URL={database_url!r}: use sqlite:///path or postgresql://…")
        redis_url = env.get("REDIS_URL") or cls.redis_url
        if not redis_url.startswith(("redis://", "rediss://", "unix://")):
            raise SettingsError(f"REDIS_URL={redis_url!r}: use redis://host:port/db or unix:///path")
        log_level = (env.get("LOG_LEVEL") or cls.log_level).upper()
        if log_level not in ("DEBUG", "INFO", "WARNING", "ERROR"):
            raise SettingsError(f"LOG_LEVEL={log_level!r}: use DEBUG, INFO, WARNING or ERROR")
        log_format = (env.get("LOG_FORMAT") or cls.log_format).lower()
        if log_format not in ("text", "json"):
            raise SettingsError(f"LOG_FORMAT={log_format!r}: use text or json")
        kwargs = dict(
            database_url=database_url,
            redis_url=redis_url,
            host=env.get("HOST") or cls.host,
            log_level=log_level,
            log_format=log_format,
            allowed_target_networks=_networks(env, "ALLOWED_TARGET_NETWORKS"),
            secret_key=_fernet_keys(env, "SECRET_KEY"),
        )
        for setting in fields(cls):  # each bounded number or flag, from the variable of its name in capitals
            name = setting.name.upper()
            if "within" in setting.metadata:
                lo, hi = setting.metadata["within"]
                kwargs[setting.name] = _number(env, name, setting.default, lo, hi, _KINDS[setting.type])
            elif "flag" in setting.metadata:
                kwargs[setting.name] = _bool(env, name, setting.default)
        if env.get("WORKER_ID"):
            kwargs["worker_id"] = env["WORKER_ID"]
        return cls(**kwargs)


_current: Settings | None = None


def get_settings() -> Settings:
    """The process's settings, read from the environment on first use."""
    global _current
    if _current is None:
        _current = Settings.from_env()
    return _current
