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
from dataclasses import dataclass, field
from typing import Mapping


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


def _int(env: Mapping[str, str], name: str, default: int, lo: int, hi: int) -> int:
    return _number(env, name, default, lo, hi, int)


def _float(env: Mapping[str, str], name: str, default: float, lo: float, hi: float) -> float:
    return _number(env, name, default, lo, hi, float)


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
    port: int = 5000
    host: str = "127.0.0.1"
    log_level: str = "INFO"

    # Retry engine
    max_in_flight: int = 256
    max_in_flight_per_host: int = 16
    claim_batch: int = 256
    lease_s: float = 30.0
    shutdown_grace_s: float = 10.0
    result_body_cap: int = 1024 * 1024
    request_body_limit: int = 1024 * 1024
    max_response_read: int = 16 * 1024 * 1024
    allowed_target_networks: tuple = ()
    worker_id: str = field(default_factory=lambda: f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}")

    # Live metrics
    sse_client_queue: int = 256
    sse_keepalive_s: float = 15.0
    sse_retry_ms: int = 3000
    replay_maxlen: int = 1000
    poller_lease_s: float = 10.0
    poll_concurrency: int = 16
    session_ttl_s: int = 7 * 24 * 3600
    secure_cookies: bool = False
    # Per-brand polling pace. Defaults are the real brands' limits (one latest-data call per device per
    # 5 minutes); set a little under the brand's own limit, because arrival jitter eats exact spacing.
    sandbox_poll_interval_s: float = 300.0
    sandbox_requests_per_s: float = 5.0
    growatt_v4_poll_interval_s: float = 300.0
    growatt_v4_requests_per_s: float = 0.19
    brand_timeout_s: float = 10.0
    recorder_batch: int = 500
    recorder_claim_idle_s: float = 10.0
    ingest_maxlen: int = 1_000_000

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> "Settings":
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
        kwargs = dict(
            database_url=database_url,
            redis_url=redis_url,
            port=_int(env, "PORT", cls.port, 0, 65535),
            host=env.get("HOST") or cls.host,
            log_level=log_level,
            max_in_flight=_int(env, "MAX_IN_FLIGHT", cls.max_in_flight, 1, 10000),
            max_in_flight_per_host=_int(env, "MAX_IN_FLIGHT_PER_HOST", cls.max_in_flight_per_host, 1, 10000),
            claim_batch=_int(env, "CLAIM_BATCH", cls.claim_batch, 1, 10000),
            lease_s=_float(env, "LEASE_S", cls.lease_s, 0.5, 3600),
            shutdown_grace_s=_float(env, "SHUTDOWN_GRACE_S", cls.shutdown_grace_s, 0, 600),
            result_body_cap=_int(env, "RESULT_BODY_CAP", cls.result_body_cap, 0, 64 * 1024 * 1024),
            request_body_limit=_int(env, "REQUEST_BODY_LIMIT", cls.request_body_limit, 1024, 64 * 1024 * 1024),
            max_response_read=_int(env, "MAX_RESPONSE_READ", cls.max_response_read, 1024, 1024**3),
            allowed_target_networks=_networks(env, "ALLOWED_TARGET_NETWORKS"),
            sse_client_queue=_int(env, "SSE_CLIENT_QUEUE", cls.sse_client_queue, 1, 100000),
            sse_keepalive_s=_float(env, "SSE_KEEPALIVE_S", cls.sse_keepalive_s, 0.05, 300),
            sse_retry_ms=_int(env, "SSE_RETRY_MS", cls.sse_retry_ms, 0, 600000),
            replay_maxlen=_int(env, "REPLAY_MAXLEN", cls.replay_maxlen, 1, 10**7),
            poller_lease_s=_float(env, "POLLER_LEASE_S", cls.poller_lease_s, 0.5, 3600),
            poll_concurrency=_int(env, "POLL_CONCURRENCY", cls.poll_concurrency, 1, 1000),
            session_ttl_s=_int(env, "SESSION_TTL_S", cls.session_ttl_s, 60, 10**8),
            secure_cookies=_bool(env, "SECURE_COOKIES", cls.secure_cookies),
            sandbox_poll_interval_s=_float(env, "SANDBOX_POLL_INTERVAL_S", cls.sandbox_poll_interval_s, 0.1, 86400),
            sandbox_requests_per_s=_float(env, "SANDBOX_REQUESTS_PER_S", cls.sandbox_requests_per_s, 0.001, 10000),
            growatt_v4_poll_interval_s=_float(env, "GROWATT_V4_POLL_INTERVAL_S", cls.growatt_v4_poll_interval_s,
                                              0.1, 86400),
            growatt_v4_requests_per_s=_float(env, "GROWATT_V4_REQUESTS_PER_S", cls.growatt_v4_requests_per_s,
                                             0.001, 10000),
            brand_timeout_s=_float(env, "BRAND_TIMEOUT_S", cls.brand_timeout_s, 0.1, 120),
            recorder_batch=_int(env, "RECORDER_BATCH", cls.recorder_batch, 1, 100000),
            recorder_claim_idle_s=_float(env, "RECORDER_CLAIM_IDLE_S", cls.recorder_claim_idle_s, 0.1, 3600),
            ingest_maxlen=_int(env, "INGEST_MAXLEN", cls.ingest_maxlen, 1000, 10**9),
        )
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

