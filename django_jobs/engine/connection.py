"""Build Redis clients from the DJANGO_JOBS settings.

Three ways to connect:

- ``REDIS_URL``: ``redis://[[user]:password@]host[:port][/db]``, ``rediss://`` for TLS (its
  ``ssl_*`` keyword arguments go in ``REDIS_OPTIONS``), or ``unix:///path/to/redis.sock[?db=0]``.
  Parsed with redis-py's :func:`redis.connection.parse_url` rules.
- ``CACHE_ALIAS``: reuse the server of a Redis cache in ``CACHES``: its first ``LOCATION`` and
  its connection ``OPTIONS`` (django-redis: ``PASSWORD``, ``USERNAME``, ``SOCKET_TIMEOUT``,
  ``SOCKET_CONNECT_TIMEOUT``, ``CONNECTION_POOL_KWARGS``; Django's own ``RedisCache``: its
  pool keyword arguments).
- neither: the embedded Redis server (see :mod:`django_jobs.engine.embedded`).

Keyword arguments are layered: our defaults, then the cache's options, then ``REDIS_OPTIONS``,
then the URL's query string (redis-py lets the URL win). ``decode_responses`` is always on:
the engine reads text.

Nothing here does network I/O except :func:`ping` and starting the embedded server, so the
system checks can call :func:`check_config`. Messages name servers with :func:`safe_url`,
never with their password.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import redis
from redis.backoff import ExponentialWithJitterBackoff, NoBackoff
from redis.retry import Retry

from django_jobs.conf import (
    JobsSettings,
    SettingError,
    ambiguity_error,
    did_you_mean,
    embedded_refusal,
    label,
)
from django_jobs.engine.topology import (
    AnyClient,
    cluster_client,
    sentinel_client,
    sentinel_display,
    servers,
    topology_of,
)
from django_jobs.engine.urls import URL_HINT, URL_SCHEMES, parse_url, redact, safe_url
from django_jobs.exceptions import RedisUnavailable

__all__ = ["URL_HINT", "URL_SCHEMES", "parse_url", "redact", "safe_url"]  # re-exported: engine/urls.py

#: Cache backends CACHE_ALIAS may name (and their subclasses).
DJANGO_REDIS_CACHE = "django_redis.cache.RedisCache"
DJANGO_CACHE = "django.core.cache.backends.redis.RedisCache"
#: How a django-redis OPTIONS key maps to a redis-py keyword argument.
DJANGO_REDIS_OPTIONS = {
    "USERNAME": "username",
    "PASSWORD": "password",
    "SOCKET_TIMEOUT": "socket_timeout",
    "SOCKET_CONNECT_TIMEOUT": "socket_connect_timeout",
}
#: OPTIONS of Django's RedisCache that configure the cache, not the connection.
DJANGO_CACHE_NON_POOL_OPTIONS = frozenset({"pool_class", "parser_class", "serializer"})
#: Seconds a non-blocking command may take, and a connect, unless configured otherwise.
SOCKET_TIMEOUT = 10.0
SOCKET_CONNECT_TIMEOUT = 5.0

# -- CACHE_ALIAS -----------------------------------------------------------------------------


def _cache_kind(backend: Any) -> str | None:
    """Return "django_redis" or "django" for a Redis cache backend path (or subclass), else None."""
    if backend == DJANGO_REDIS_CACHE:
        return "django_redis"
    if backend == DJANGO_CACHE:
        return "django"
    if not isinstance(backend, str) or not backend:
        return None
    from django.utils.module_loading import import_string

    try:
        cls = import_string(backend)
    except Exception:  # noqa: BLE001 - a broken BACKEND path is reported as "not a Redis cache"
        return None
    for kind, path in (("django_redis", DJANGO_REDIS_CACHE), ("django", DJANGO_CACHE)):
        try:
            base = import_string(path)
        except ImportError:
            continue
        if isinstance(cls, type) and issubclass(cls, base):
            return kind
    return None


def cache_config(alias: str) -> tuple[str, dict[str, Any]]:
    """Return the URL and keyword arguments of Redis cache ``alias``; no network I/O.

    Raises:
        SettingError: the alias is missing, not a Redis cache, or not usable by django_jobs.
    """
    from django.conf import settings as django_settings

    where = f"{label('CACHE_ALIAS')} is {alias!r}"
    caches = getattr(django_settings, "CACHES", None) or {}
    if not isinstance(caches, Mapping) or alias not in caches:
        names = list(caches) if isinstance(caches, Mapping) else []
        raise SettingError(
            "CACHE_ALIAS",
            f"{where}, but CACHES has no such alias.",
            did_you_mean(alias, names) or f"Add CACHES[{alias!r}] with BACKEND {DJANGO_REDIS_CACHE!r}, or set REDIS_URL.",
        )
    config = caches[alias]
    backend = config.get("BACKEND") if isinstance(config, Mapping) else None
    kind = _cache_kind(backend)
    if kind is None:
        raise SettingError(
            "CACHE_ALIAS",
            f"{where}, but CACHES[{alias!r}] uses {backend!r}, which is not a Redis cache.",
            f"Point CACHE_ALIAS at a cache with BACKEND {DJANGO_REDIS_CACHE!r}, or set REDIS_URL.",
        )
    assert isinstance(config, Mapping)
    options = config.get("OPTIONS") or {}
    if not isinstance(options, Mapping):
        raise SettingError("CACHE_ALIAS", f"{where}, but CACHES[{alias!r}]['OPTIONS'] is not a dict.", "")
    location = config.get("LOCATION")
    if isinstance(location, str):
        location = re.split("[;,]", location)[0].strip()  # the first server is the primary
    elif isinstance(location, (list, tuple)):
        location = location[0] if location else None
    kwargs: dict[str, Any] = {}
    if kind == "django_redis":
        factory = str(options.get("CONNECTION_FACTORY") or getattr(django_settings, "DJANGO_REDIS_CONNECTION_FACTORY", ""))
        if "SENTINELS" in options or "Sentinel" in factory or "Sentinel" in str(options.get("CLIENT_CLASS", "")):
            # A Sentinel cache: its LOCATION names the service (engine/topology.py reads the rest).
            kwargs.update(options.get("CONNECTION_POOL_KWARGS") or {})
            return str(location), kwargs
        for option, kwarg in DJANGO_REDIS_OPTIONS.items():
            if options.get(option):
                kwargs[kwarg] = options[option]
        pool_kwargs = options.get("CONNECTION_POOL_KWARGS") or {}
        if not isinstance(pool_kwargs, Mapping):
            raise SettingError(
                "CACHE_ALIAS", f"{where}, but CACHES[{alias!r}]['OPTIONS']['CONNECTION_POOL_KWARGS'] is not a dict.", ""
            )
        kwargs.update(pool_kwargs)
    else:
        kwargs.update({k: v for k, v in options.items() if k not in DJANGO_CACHE_NON_POOL_OPTIONS})
    parse_url(location, setting="CACHE_ALIAS", name=f"CACHES[{alias!r}]['LOCATION'] (named by {label('CACHE_ALIAS')})")
    return str(location), kwargs


def is_connection_error(exc: BaseException) -> bool:
    """Return True when ``exc`` means Redis cannot be reached now (:class:`RedisUnavailable` or redis-py's own)."""
    if credentials_refused(exc):
        return False
    return isinstance(exc, (RedisUnavailable, redis.ConnectionError, redis.TimeoutError))


def credentials_refused(exc: BaseException) -> bool:
    """Return True when ``exc`` (or its cause) is Redis refusing our password or ACL user: no retry can fix it."""
    cause = exc if isinstance(exc, redis.RedisError) else exc.__cause__
    if isinstance(cause, redis.AuthenticationError):
        return True
    return isinstance(cause, redis.ResponseError) and str(cause).split(" ", 1)[0] in ("WRONGPASS", "NOAUTH", "NOPERM")


#: Words of the errors Redis (or redis-py) gives when it refuses the credentials.
_CREDENTIAL_WORDS = ("wrongpass", "invalid username-password", "noauth", "authentication required",
                     "hello must be called with the client already authenticated", "invalid password", "noperm")
#: Words of a plain connection that a TLS-only server hangs up on.
_PLAIN_TO_TLS_WORDS = ("connection reset by peer", "connection closed by server", "unexpected eof", "protocol error")
#: Words of a TLS handshake with a server that does not speak TLS.
_TLS_TO_PLAIN_WORDS = ("wrong version number", "timeout connecting", "record layer failure", "eof occurred in violation",
                       "packet length too long", "unknown protocol")


def failure_hint(exc: BaseException, *, tls: bool, where: str) -> str | None:
    """Say what a failed connection most likely means: refused credentials, an untrusted certificate, TLS mismatch.

    ``exc`` is the error (its causes are read too), ``tls`` whether the client spoke TLS (``rediss://``
    or ``ssl``), ``where`` the setting to fix. None: nothing more specific than "does not answer".
    """
    texts: list[str] = []
    seen: BaseException | None = exc
    while seen is not None and len(texts) < 5:
        texts.append(str(seen).lower())
        seen = seen.__cause__ or seen.__context__
    text = " ".join(texts)
    if credentials_refused(exc) or any(word in text for word in _CREDENTIAL_WORDS):
        return (
            f"Redis refused the credentials: check the user and password in {where} "
            "(an ACL user goes in the URL as redis://USER:PASSWORD@host:port, or USERNAME / PASSWORD)."
        )
    if "certificate verify failed" in text or "certificate_verify_failed" in text:
        return (
            "Redis' TLS certificate is not trusted by this machine: set DJANGO_JOBS['REDIS_OPTIONS'] = "
            "{'ssl_ca_certs': '/path/to/ca.crt'} (the CA that signed it)."
        )
    if not tls and any(word in text for word in _PLAIN_TO_TLS_WORDS):
        return (
            f"The server hung up on a plain connection, as a TLS-only Redis does: if it expects TLS, "
            f"use rediss:// in {where}."
        )
    if tls and any(word in text for word in _TLS_TO_PLAIN_WORDS):
        return f"The TLS handshake failed: if this Redis does not use TLS, use redis:// instead of rediss:// in {where}."
    return None


def speaks_tls(settings: JobsSettings) -> bool:
    """Whether the configured client connects over TLS (a rediss:// URL, or ssl in the options). No I/O."""
    config = client_config(settings, start_embedded=False)
    if config is None:
        return False
    url, kwargs = config
    return url.startswith("rediss://") or bool(kwargs.get("ssl")) or kwargs.get("connection_class") is redis.SSLConnection


# -- clients ---------------------------------------------------------------------------------


class ConnectionRetry(Retry):
    """Retry connection errors and timeouts, but not refused credentials.

    redis-py's AuthenticationError is a ConnectionError, so a plain :class:`~redis.retry.Retry`
    retries a wrong password with backoff (and health checks multiply that to tens of
    seconds) although no retry can fix it.
    """

    def call_with_retry(self, do: Any, fail: Any, is_retryable: Any = None, with_failure_count: bool = False) -> Any:
        def retryable(error: Exception) -> bool:
            if isinstance(error, redis.AuthenticationError):
                return False
            return bool(is_retryable(error)) if is_retryable is not None else True

        return super().call_with_retry(do, fail, retryable, with_failure_count)


def _default_kwargs() -> dict[str, Any]:
    return {
        "encoding_errors": "replace",
        "health_check_interval": 30,
        "retry": ConnectionRetry(ExponentialWithJitterBackoff(base=0.05, cap=2.0), 5),
        "retry_on_error": [redis.ConnectionError, redis.TimeoutError],
        "client_name": "django_jobs",
    }


def client_config(settings: JobsSettings, *, blocking: bool = False, start_embedded: bool = True) -> tuple[str, dict[str, Any]] | None:
    """Return the URL and client keyword arguments for ``settings``.

    Returns None in embedded mode when ``start_embedded`` is false (the embedded server's URL
    is only known once it runs). A ``blocking`` client has no socket timeout, for waits on
    idle queues.

    Raises:
        SettingError: the settings do not describe a usable connection.
    """
    error = ambiguity_error(settings.redis_url, settings.cache_alias)
    if error is not None:
        raise error
    source: dict[str, Any] = {}
    kind, detail = topology_of(settings)
    if kind == "sentinel":
        url = sentinel_display(detail)
        if settings.cache_alias:
            source = cache_config(settings.cache_alias)[1]
    elif kind == "cluster" and detail:
        url = detail[0]
        for node in detail:  # DJANGO_JOBS["CLUSTER"] lists the startup nodes: each checked as REDIS_URL is
            if parse_url(node, setting="CLUSTER", name=f"{label('CLUSTER')} node").get("path"):
                raise SettingError(
                    "CLUSTER", f"{label('CLUSTER')} node {safe_url(node)!r} is a unix socket; cluster nodes are reached over TCP.",
                    "E.g. ['redis://10.0.0.1:7000', 'redis://10.0.0.2:7000'] (see docs/scaling.md).",
                )
    elif settings.redis_url:
        url = settings.redis_url
        parse_url(url)
    elif settings.cache_alias:
        url, source = cache_config(settings.cache_alias)
    elif start_embedded:
        if (refused := embedded_refusal(settings)) is not None:
            raise refused
        from django_jobs.engine import embedded

        url = embedded.ensure_running(settings)
    else:
        return None
    kwargs = _default_kwargs()
    if not url.startswith("unix://"):
        kwargs["socket_keepalive"] = True
    kwargs.update(source)
    kwargs.update(settings.redis_options)
    kwargs["decode_responses"] = True  # the engine works with str
    if blocking:
        kwargs["socket_timeout"] = None
        kwargs.pop("health_check_interval", None)
    else:
        kwargs.setdefault("socket_timeout", SOCKET_TIMEOUT)
        kwargs.setdefault("socket_connect_timeout", SOCKET_CONNECT_TIMEOUT)
    return url, kwargs


def _client(url: str, kwargs: dict[str, Any], settings: JobsSettings) -> Any:
    """Return a client for ``url``; raise ConfigurationError if a connection could not be made."""
    # Without REDIS_OPTIONS, a bad keyword argument can only come from the cache's OPTIONS.
    setting = "CACHE_ALIAS" if settings.cache_alias and not settings.redis_options else "REDIS_OPTIONS"
    kind, detail = topology_of(settings)
    try:
        client: AnyClient
        if kind == "sentinel":
            client = sentinel_client(detail, kwargs)
        elif kind == "cluster":
            # RedisCluster connects to a startup node as it is built: a wrong address fails here.
            client = cluster_client(detail or [url], kwargs)
            return client
        else:
            client = redis.Redis.from_url(url, **kwargs)
        pool = client.connection_pool
        # redis-py connects lazily; building (not opening) a connection now surfaces a bad
        # keyword argument at start-up instead of at the first command.
        pool.connection_class(**pool.connection_kwargs)
    except (redis.RedisError, redis.exceptions.RedisClusterException) as exc:  # startup nodes that do not answer
        raise RedisUnavailable(f"Cannot reach the Redis Cluster at {safe_url(url)}: {redact(str(exc), kwargs.get('password'))}") from exc
    except (TypeError, ValueError) as exc:
        where = label("REDIS_OPTIONS")
        if settings.cache_alias:
            where = f"CACHES[{settings.cache_alias!r}]['OPTIONS']" + (f" and {where}" if settings.redis_options else "")
        raise SettingError(
            setting,
            f"Cannot build a Redis client for {safe_url(url)!r} from {where}: {redact(str(exc), kwargs.get('password'))}",
            "Use redis-py connection keyword arguments; ssl_* options need a rediss:// URL, and "
            "unix:// sockets take no TCP options such as socket_keepalive.",
        ) from None
    return client


def build_client(settings: JobsSettings, *, blocking: bool = False) -> Any:
    """Return a Redis client for the settings (starts the embedded server if needed).

    A ``blocking`` client has no socket timeout, for BLPOP waits on idle queues.

    Raises:
        ConfigurationError: the settings do not describe a usable connection.
    """
    config = client_config(settings, blocking=blocking)
    assert config is not None
    url, kwargs = config
    return _client(url, kwargs, settings)


def resolve_url(settings: JobsSettings) -> str:
    """Return the Redis URL the settings point at (starting the embedded server if needed)."""
    config = client_config(settings)
    assert config is not None
    return config[0]


def check_config(settings: JobsSettings) -> str | None:
    """Check that ``settings`` make a usable client, without network I/O.

    Returns the server's :func:`safe_url`, or None in embedded mode (not checked here).

    Raises:
        SettingError: what is wrong, naming the setting.
    """
    config = client_config(settings, start_embedded=False)
    if config is None:
        if (refused := embedded_refusal(settings)) is not None:
            raise refused
        return None
    url, kwargs = config
    if topology_of(settings)[0] == "cluster":
        return safe_url(url)  # RedisCluster connects as it is built: the deploy check E030 asks it
    _client(url, kwargs, settings).close()
    return safe_url(url)


def topology_mismatch(settings: JobsSettings, *, timeout: float = 2.0) -> tuple[str, str] | None:
    """Ask the configured Redis what it is; return ``(problem, hint)`` when the settings describe something else.

    Tells a Redis Cluster node, a Sentinel and a single server apart (``INFO server``'s
    ``redis_mode``). None: they agree, or embedded mode.

    Raises:
        ConfigurationError: the settings are invalid.
        RedisUnavailable: Redis did not answer.
    """
    kind = topology_of(settings)[0]
    try:
        with _fail_fast_client(settings, timeout) as found:
            if found is None:
                return None
            client, shown = found
            mode = "cluster" if kind == "cluster" else str(client.info("server").get("redis_mode", "standalone"))
    except RedisUnavailable as exc:
        if kind == "cluster" and "cluster mode is not enabled" in str(exc).lower():
            config = client_config(settings, start_embedded=False)
            where = safe_url(config[0]) if config is not None else "?"
            return (
                f"{label('CLUSTER')} is set, but the Redis at {where} is not a Redis Cluster node (cluster-enabled no).",
                "Remove CLUSTER to use it as a single server, or point CLUSTER / REDIS_URL at a cluster node.",
            )
        raise
    if mode == "cluster" and kind != "cluster":
        return (
            (
                f"The Redis at {shown} is a Redis Cluster node, but DJANGO_JOBS does not say so: "
                "commands for keys on other nodes would fail with MOVED."
            ),
            "Set DJANGO_JOBS['CLUSTER'] = True (REDIS_URL names one node), or list the startup nodes in CLUSTER.",
        )
    if mode == "sentinel":
        return (
            f"The server at {shown} is a Redis Sentinel, not the Redis that holds the data.",
            "Set DJANGO_JOBS['SENTINEL'] = {'SENTINELS': [...], 'SERVICE_NAME': ...} instead of REDIS_URL.",
        )
    return None


def ping(settings: JobsSettings, *, timeout: float = 2.0) -> str | None:
    """Ping the configured Redis once, failing fast; return its :func:`safe_url`.

    Returns None in embedded mode without pinging: the embedded server starts on first use.

    Raises:
        ConfigurationError: the settings are invalid.
        RedisUnavailable: Redis did not answer (or refused our credentials).
    """
    with _fail_fast_client(settings, timeout) as found:
        if found is None:
            return None
        client, shown = found
        client.ping()
        return shown


@contextmanager
def _fail_fast_client(settings: JobsSettings, timeout: float) -> Iterator[tuple[redis.Redis, str] | None]:
    """Yield ``(client, safe url)`` of the configured Redis with no retries and short timeouts.

    Yields None in embedded mode (nothing is started). Connection errors inside the block
    become :class:`RedisUnavailable` with the password redacted; the client is closed after.
    """
    config = client_config(settings, start_embedded=False)
    if config is None:
        yield None
        return
    url, kwargs = config
    kwargs.update(
        retry=Retry(NoBackoff(), 0), socket_timeout=timeout, socket_connect_timeout=timeout, health_check_interval=0
    )
    shown = safe_url(url)
    client = _client(url, kwargs, settings)
    try:
        yield client, shown
    except redis.RedisError as exc:
        raise RedisUnavailable(f"Cannot reach Redis at {shown}: {redact(str(exc), kwargs.get('password'))}") from exc
    except OSError as exc:  # e.g. a TLS handshake failure outside redis-py's wrapping
        raise RedisUnavailable(f"Cannot reach Redis at {shown}: {exc}") from exc
    finally:
        client.close()


@dataclass(frozen=True, slots=True, kw_only=True)
class Durability:
    """What a Redis server says about keeping its data (None: it would not say)."""

    #: ``noeviction`` keeps every key when memory is full; the other policies delete keys.
    maxmemory_policy: str | None
    #: The append-only file is on.
    aof: bool | None
    #: The RDB save points, e.g. ``"3600 1 300 100"`` (``""``: none).
    save: str | None

    @property
    def persists(self) -> bool | None:
        """False when Redis writes nothing to disk (no AOF, no save points); None when unknown."""
        if self.aof:
            return True
        if self.save:
            return True
        if self.aof is None or self.save is None:
            return None
        return False


def durability(settings: JobsSettings, *, timeout: float = 2.0) -> Durability | None:
    """Ask the configured Redis how it keeps data (``INFO`` and ``CONFIG GET save``), failing fast.

    Returns None in embedded mode (the embedded server runs with AOF on). Managed Redis
    services often refuse ``CONFIG``: the save points are then None (unknown).

    Raises:
        ConfigurationError: the settings are invalid.
        RedisUnavailable: Redis did not answer.
    """
    with _fail_fast_client(settings, timeout) as found:
        if found is None:
            return None
        client, _shown = found
        # A cluster answers for each primary: the worst of them is what a job may meet.
        found_each = [_durability(server) for server in servers(client)]
    worst = found_each[0]
    for other in found_each[1:]:
        if other.maxmemory_policy != "noeviction" or other.persists is False:
            worst = other
    return worst


def _durability(client: redis.Redis) -> Durability:
    try:
        memory = client.info("memory")
        persistence = client.info("persistence")
    except redis.ResponseError:  # INFO refused (ACLs, renamed command)
        return Durability(maxmemory_policy=None, aof=None, save=None)
    try:
        save: str | None = str(client.config_get("save").get("save", ""))
    except redis.ResponseError:  # CONFIG renamed or refused (ElastiCache, Memorystore, ACLs)
        save = None
    policy = memory.get("maxmemory_policy")
    aof = persistence.get("aof_enabled")
    return Durability(
        maxmemory_policy=str(policy) if policy is not None else None,
        aof=bool(int(aof)) if aof is not None else None,
        save=save,
    )
