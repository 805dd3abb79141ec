"""The Redis connection, built once from the settings."""
from __future__ import annotations

import redis

from models.settings import get_settings

_client: redis.Redis | None = None


def redis_client() -> redis.Redis:
    """This process's Redis client (a connection pool shared by every greenlet)."""
    global _client
    if _client is None:
        _client = redis.Redis.from_url(
            get_settings().redis_url,
            decode_responses=True,
            socket_connect_timeout=2,
            socket_timeout=5,
            health_check_interval=15,
            retry_on_timeout=True,
        )
    return _client


def reset_redis_client() -> None:
    global _client
    if _client is not None:
        _client.close()
    _client = None
