"""Build Redis clients from the DJANGO_JOBS settings.

Three ways to connect, in order: ``REDIS_URL``; ``CACHE_ALIAS`` (reuse a django-redis
cache's connection settings); otherwise the embedded Redis server (see
:mod:`django_jobs.embedded`).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit, urlunsplit

import redis
from redis.backoff import ExponentialWithJitterBackoff
from redis.retry import Retry

from django_jobs.conf import JobsSettings
from django_jobs.exceptions import ConfigurationError

#: Schemes REDIS_URL accepts.
URL_SCHEMES = ("redis", "rediss", "unix")


def safe_url(url: str) -> str:
    """Return ``url`` with any password replaced by ``***`` (for logs and errors)."""
    parts = urlsplit(url)
    if parts.password:
        netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
        return urlunsplit(parts._replace(netloc=netloc))
    return url


def _base_kwargs(settings: JobsSettings) -> dict[str, Any]:
    kwargs: dict[str, Any] = {
        "decode_responses": True,
        "encoding_errors": "replace",
        "health_check_interval": 30,
        "retry": Retry(ExponentialWithJitterBackoff(base=0.05, cap=2.0), 5),
        "retry_on_error": [redis.ConnectionError, redis.TimeoutError],
        "client_name": "django_jobs",
    }
    kwargs.update(settings.redis_options)
    return kwargs


def resolve_url(settings: JobsSettings) -> str:
    """Return the Redis URL the settings point at (starting the embedded server if needed)."""
    if settings.redis_url:
        return settings.redis_url
    if settings.cache_alias:
        return _cache_url(settings.cache_alias)
    from django_jobs import embedded

    return embedded.ensure_running(settings)


def _cache_url(alias: str) -> str:
    from django.conf import settings as django_settings

    caches = getattr(django_settings, "CACHES", {})
    if alias not in caches:
        raise ConfigurationError(
            f"DJANGO_JOBS['CACHE_ALIAS'] is {alias!r}, but CACHES has no such alias."
        )
    location = caches[alias].get("LOCATION")
    if isinstance(location, (list, tuple)):
        location = location[0] if location else None
    if not location or not str(location).startswith(tuple(f"{s}://" for s in URL_SCHEMES)):
        raise ConfigurationError(
            f"CACHES[{alias!r}]['LOCATION'] is not a redis://, rediss:// or unix:// URL."
        )
    return str(location)


def _cache_kwargs(alias: str) -> dict[str, Any]:
    from django.conf import settings as django_settings

    options = django_settings.CACHES[alias].get("OPTIONS", {}) or {}
    kwargs: dict[str, Any] = dict(options.get("CONNECTION_POOL_KWARGS", {}) or {})
    if options.get("PASSWORD"):
        kwargs["password"] = options["PASSWORD"]
    if options.get("SOCKET_CONNECT_TIMEOUT"):
        kwargs["socket_connect_timeout"] = options["SOCKET_CONNECT_TIMEOUT"]
    return kwargs


def build_client(settings: JobsSettings, *, blocking: bool = False) -> redis.Redis:
    """Return a Redis client for the settings.

    A ``blocking`` client has no socket timeout, for BLPOP waits on idle queues.
    """
    url = resolve_url(settings)
    kwargs = _base_kwargs(settings)
    if not url.startswith("unix://"):
        kwargs.setdefault("socket_keepalive", True)
    if settings.cache_alias and not settings.redis_url:
        kwargs.update(_cache_kwargs(settings.cache_alias))
    if blocking:
        kwargs["socket_timeout"] = None
        kwargs.pop("health_check_interval", None)
    else:
        kwargs.setdefault("socket_timeout", 10)
        kwargs.setdefault("socket_connect_timeout", 5)
    try:
        return redis.Redis.from_url(url, **kwargs)
    except ValueError as exc:
        raise ConfigurationError(f"Invalid Redis URL {safe_url(url)!r}: {exc}") from exc
