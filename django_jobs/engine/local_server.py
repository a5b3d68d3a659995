"""The two commands :mod:`django_jobs.embedded` sends to its own server (over its unix socket).

Kept in ``engine/`` so that no Redis command is sent from outside it.
"""

from __future__ import annotations

from pathlib import Path

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry


def _client(sock: Path, *, timeout: float) -> redis.Redis:
    # No retries: a refused connection means "not running", and SHUTDOWN closes the connection.
    return redis.Redis(unix_socket_path=str(sock), socket_timeout=timeout,
                       socket_connect_timeout=timeout, retry=Retry(NoBackoff(), 0))


def probe(sock: Path) -> str:
    """Return ``"up"``, ``"loading"`` (replaying its AOF) or ``"down"``."""
    if not sock.exists():
        return "down"
    try:
        with _client(sock, timeout=2) as client:
            return "up" if client.ping() else "down"
    except redis.BusyLoadingError:  # a subclass of ConnectionError: check it first
        return "loading"
    except (redis.ConnectionError, redis.TimeoutError, OSError):
        return "down"


def shutdown(sock: Path, *, timeout: float) -> str:
    """Send SHUTDOWN to the server at ``sock``: ``""`` sent (or the server went away), else the refusal."""
    try:
        with _client(sock, timeout=timeout) as client:
            client.shutdown()
    except (redis.ConnectionError, redis.TimeoutError, OSError):
        pass  # the connection closes as the server exits
    except redis.RedisError as exc:  # e.g. "Errors trying to SHUTDOWN"
        return str(exc) or type(exc).__name__
    return ""
