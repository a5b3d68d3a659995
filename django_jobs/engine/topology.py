"""Clients for a Redis that is more than one server: a Sentinel group or a Redis Cluster.

:mod:`django_jobs.engine.connection` decides which kind the settings describe
(:func:`topology_of`) and calls :func:`sentinel_client` or :func:`cluster_client`; the engine
asks :func:`is_cluster` to pick its per-slot code paths. No hand-written slot routing: redis-py's
:class:`~redis.cluster.RedisCluster` follows MOVED / ASK and failovers, and a Sentinel
``master_for`` client asks the sentinels for the primary on every new connection.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote, urlparse

import redis
from redis.backoff import NoBackoff
from redis.cluster import ClusterNode, RedisCluster
from redis.retry import Retry
from redis.sentinel import Sentinel, SentinelConnectionPool, SentinelManagedConnection

from django_jobs.conf import JobsSettings, SettingError, label
from django_jobs.conf.topology import parse_sentinel

#: Seconds a sentinel may take to answer (it answers from memory).
SENTINEL_TIMEOUT = 2.0
#: Keyword arguments only a single-server client understands; RedisCluster refuses them.
NOT_FOR_CLUSTER = ("db", "retry_on_error", "health_check_interval")

type AnyClient = redis.Redis | RedisCluster


def topology_of(settings: JobsSettings) -> tuple[str, Any]:
    """Return ``("server", None)``, ``("sentinel", parsed SENTINEL)`` or ``("cluster", [node URLs] | None)``.

    ``None`` nodes: the cluster is reached through REDIS_URL / the CACHE_ALIAS location. No I/O.

    Raises:
        SettingError: a Sentinel cache named by CACHE_ALIAS is incomplete.
    """
    if settings.sentinel:
        return "sentinel", settings.sentinel
    if isinstance(settings.cluster, list):
        return "cluster", list(settings.cluster)
    if settings.cluster:
        return "cluster", None
    if settings.cache_alias:
        found = cache_topology(settings.cache_alias)
        if found is not None:
            return found
    return "server", None


def cache_topology(alias: str) -> tuple[str, Any] | None:
    """Return the topology of a django-redis cache that is a Sentinel or Cluster cache (None: a server)."""
    from django.conf import settings as django_settings
    from django.utils.module_loading import import_string

    config = (getattr(django_settings, "CACHES", None) or {}).get(alias) or {}
    options = config.get("OPTIONS") or {}
    factory = str(options.get("CONNECTION_FACTORY") or getattr(django_settings, "DJANGO_REDIS_CONNECTION_FACTORY", ""))
    client_class = str(options.get("CLIENT_CLASS", ""))
    where = f"CACHES[{alias!r}]"
    if "SENTINELS" in options or "Sentinel" in factory or "Sentinel" in client_class:
        location = config.get("LOCATION")
        if isinstance(location, (list, tuple)):
            location = location[0] if location else None
        if not isinstance(location, str) or "://" not in location:
            raise SettingError(
                "CACHE_ALIAS", f"{where} is a Sentinel cache, but its LOCATION {location!r} is not 'redis://SERVICE/DB'.",
                "E.g. 'LOCATION': 'redis://mymaster/0' (the service name in place of the host).",
            )
        parts = urlparse(location.split(",")[0])
        sentinel_kwargs = options.get("SENTINEL_KWARGS") or {}
        raw = {
            "SENTINELS": options.get("SENTINELS"),
            "SERVICE_NAME": parts.hostname,
            "DB": int(parts.path.strip("/") or 0) if parts.path.strip("/").isdigit() else 0,
            "USERNAME": options.get("USERNAME") or (unquote(parts.username) if parts.username else None),
            "PASSWORD": options.get("PASSWORD") or (unquote(parts.password) if parts.password else None),
            "SENTINEL_USERNAME": sentinel_kwargs.get("username"),
            "SENTINEL_PASSWORD": sentinel_kwargs.get("password"),
        }
        try:
            return "sentinel", parse_sentinel("CACHE_ALIAS", raw)
        except SettingError as exc:
            raise SettingError("CACHE_ALIAS", f"{where} is a Sentinel cache: {exc.problem}", exc.hint) from None
    client_path = options.get("REDIS_CLIENT_CLASS")
    if client_path:
        try:
            cls = import_string(str(client_path))
        except ImportError:
            cls = None
        if isinstance(cls, type) and issubclass(cls, RedisCluster):
            return "cluster", None
    return None


class SentinelConnection(SentinelManagedConnection):
    """A Sentinel-managed connection that finds the primary however it is opened.

    redis-py's SentinelManagedConnection asks the sentinels only in ``connect()``; a connection
    opened by ``send_command`` (the engine's per-thread script connections) goes through
    ``connect_check_health`` and would connect to the default localhost:6379 instead.
    """

    _routing = False

    def connect_to(self, address: Any) -> None:
        self._routing = True
        try:
            super().connect_to(address)  # type: ignore[no-untyped-call]
        finally:
            self._routing = False

    def connect_check_health(self, check_health: bool = True, retry_socket_connect: bool = True) -> None:
        if self._routing:
            super().connect_check_health(check_health=check_health, retry_socket_connect=retry_socket_connect)
        else:
            self.connect()  # type: ignore[no-untyped-call]


class SentinelSSLConnection(SentinelConnection, redis.SSLConnection):
    """:class:`SentinelConnection` over TLS (``REDIS_OPTIONS = {"ssl": True, ...}``)."""


def sentinel_display(sentinel: dict[str, Any]) -> str:
    """How messages name a Sentinel service (no password)."""
    hosts = ",".join(f"{h}:{p}" for h, p in sentinel["sentinels"])
    return f"sentinel://{hosts}/{sentinel['service_name']}"


def sentinel_client(sentinel: dict[str, Any], kwargs: dict[str, Any]) -> redis.Redis:
    """Return a client of the service's primary: each new connection asks the sentinels where it is.

    ``kwargs`` configure the connections to Redis itself; the sentinels get short timeouts and
    their own credentials.
    """
    kwargs = dict(kwargs)
    kwargs["db"] = sentinel["db"]
    for name in ("username", "password"):
        if sentinel.get(name):
            kwargs[name] = sentinel[name]
    sentinel_kwargs: dict[str, Any] = {
        "socket_timeout": SENTINEL_TIMEOUT, "socket_connect_timeout": SENTINEL_TIMEOUT, "decode_responses": True,
    }
    if sentinel.get("sentinel_username"):
        sentinel_kwargs["username"] = sentinel["sentinel_username"]
    if sentinel.get("sentinel_password"):
        sentinel_kwargs["password"] = sentinel["sentinel_password"]
    kwargs["connection_class"] = SentinelSSLConnection if kwargs.pop("ssl", False) else SentinelConnection
    manager = Sentinel(sentinel["sentinels"], sentinel_kwargs=sentinel_kwargs)
    client: redis.Redis = manager.master_for(sentinel["service_name"], redis_class=SentinelClient, **kwargs)
    return client


class SentinelClient(redis.Redis):
    """A client of a Sentinel service's primary whose :meth:`close` closes the connections to the sentinels too.

    redis-py's closes the pool of the primary's connections only: those its sentinel manager
    asked where the primary is stayed open until the garbage collector finalized them (see
    :class:`BlockingTwin`). They reconnect when the client is used again.
    """

    def close(self) -> None:
        super().close()
        pool = self.connection_pool
        if isinstance(pool, SentinelConnectionPool):
            for sentinel in pool.sentinel_manager.sentinels:
                sentinel.close()


def cluster_client(urls: list[str], kwargs: dict[str, Any]) -> RedisCluster:
    """Return a RedisCluster that starts from ``urls`` (credentials and TLS from the first one)."""
    from django_jobs.engine.urls import parse_url

    first = parse_url(urls[0], setting="CLUSTER")
    kwargs = {**{k: v for k, v in first.items() if k not in ("host", "port", "db")}, **kwargs}
    db = first.get("db") or kwargs.get("db") or 0
    if int(db) != 0:
        raise SettingError(
            "CLUSTER", f"{label('CLUSTER')}: a Redis Cluster has only database 0, and {urls[0]!r} names database {db}.",
            "Drop the database number from the URL.",
        )
    for name in NOT_FOR_CLUSTER:
        kwargs.pop(name, None)
    if kwargs.get("connection_class") is redis.SSLConnection:
        kwargs.pop("connection_class")
        kwargs["ssl"] = True
    nodes = []
    for url in urls:
        parts = parse_url(url, setting="CLUSTER")
        nodes.append(ClusterNode(parts.get("host", "localhost"), int(parts.get("port", 6379))))  # type: ignore[no-untyped-call]
    return RedisCluster(startup_nodes=nodes, **kwargs)


def is_cluster(client: Any) -> bool:
    """True for a RedisCluster client (and its pipelines)."""
    return isinstance(client, RedisCluster)


def describe(client: AnyClient) -> str:
    """A printable description of where ``client`` points (no password)."""
    from django_jobs.engine.urls import safe_url

    if isinstance(client, RedisCluster):
        nodes = ",".join(f"{n.host}:{n.port}" for n in client.nodes_manager.startup_nodes.values())
        return f"Redis Cluster ({nodes})"
    pool = client.connection_pool
    if isinstance(pool, SentinelConnectionPool):
        hosts = ",".join(f"{s.connection_pool.connection_kwargs.get('host')}:{s.connection_pool.connection_kwargs.get('port')}"
                         for s in pool.sentinel_manager.sentinels)
        return f"sentinel://{hosts}/{pool.service_name}"
    kw = pool.connection_kwargs
    if kw.get("path"):
        return f"unix://{kw['path']}"
    scheme = "rediss" if pool.connection_class.__name__.startswith("SSL") else "redis"
    return safe_url(f"{scheme}://{kw.get('host', 'localhost')}:{kw.get('port', 6379)}/{kw.get('db', 0)}")


def blocking_twin(client: AnyClient, socket_timeout: float, *, retry: bool = True) -> AnyClient:
    """Return a client like ``client`` whose socket timeout outlasts a blocking wait.

    A Sentinel client's twin asks the same sentinels; a cluster's twin starts from the same nodes.
    ``retry=False``: a cluster twin raises a command's first error (its caller retries; redis-py
    would reconnect, even to a client closed meanwhile).
    """
    if isinstance(client, RedisCluster):
        kwargs = dict(client.nodes_manager.connection_kwargs)
        kwargs["socket_timeout"] = socket_timeout
        for name in ("host", "port", *NOT_FOR_CLUSTER):
            kwargs.pop(name, None)
        if not retry:
            kwargs["retry"] = Retry(NoBackoff(), 0)
        nodes = [ClusterNode(n.host, n.port) for n in client.nodes_manager.startup_nodes.values()]  # type: ignore[no-untyped-call]
        return RedisCluster(startup_nodes=nodes, **kwargs)
    kwargs = dict(client.connection_pool.connection_kwargs)
    kwargs["socket_timeout"] = socket_timeout
    kwargs.pop("health_check_interval", None)
    # A Sentinel pool's connections carry its proxy (connection_pool): the twin's find the primary too.
    pool = redis.ConnectionPool(connection_class=client.connection_pool.connection_class, **kwargs)
    return BlockingTwin(connection_pool=pool)


class BlockingTwin(redis.Redis):
    """The blocking twin of a one-server or Sentinel client: it owns its pool, and :meth:`close` closes it.

    redis-py's ``close()`` leaves open a pool its client was given: the engine's ``close()`` left
    every connection of its blocking waits (idle waits for work, QueueEvents, ``JobResult.wait()``)
    connected until the garbage collector finalized the engine, a reference cycle, at any later
    moment, and a socket finalized before its connection warns ("ResourceWarning: unclosed
    <socket.socket ...>"). A wait in progress is not broken by close(): its connection closes when
    the wait ends, as does any connection a command opens after close() (redis-py's retry).
    """

    _closed = False

    def execute_command(self, *args: Any, **options: Any) -> Any:
        try:
            return super().execute_command(*args, **options)  # type: ignore[no-untyped-call]
        finally:
            if self._closed:
                self.connection_pool.disconnect(inuse_connections=False)

    def close(self) -> None:
        self._closed = True
        super().close()
        self.connection_pool.disconnect(inuse_connections=False)  # those of waits in progress: when they end


def servers(client: AnyClient) -> list[redis.Redis]:
    """The primaries to ask about the server (INFO, CONFIG): every cluster primary, else the client itself."""
    if isinstance(client, RedisCluster):
        return [client.get_redis_connection(node) for node in client.get_primaries()]  # type: ignore[no-untyped-call]
    return [client]
