"""The ``SENTINEL`` and ``CLUSTER`` settings: how django_jobs reaches a Redis that is more than one server.

Parsing only (no network I/O, no engine): :mod:`django_jobs.engine.connection` checks each
cluster node URL and builds the clients (:mod:`django_jobs.engine.topology`).
See docs/scaling.md.

``DJANGO_JOBS["SENTINEL"]``::

    {
        "SENTINELS": ["10.0.0.1:26379", "10.0.0.2:26379", "10.0.0.3:26379"],  # or (host, port) pairs
        "SERVICE_NAME": "mymaster",
        "DB": 0,                                      # optional
        "USERNAME": None, "PASSWORD": None,           # Redis' own credentials, optional
        "SENTINEL_USERNAME": None, "SENTINEL_PASSWORD": None,  # the sentinels', optional
    }

``DJANGO_JOBS["CLUSTER"]``: ``True`` (``REDIS_URL`` or the ``CACHE_ALIAS`` cache names one node
of a Redis Cluster), or a list of startup node URLs (``redis://host:port``, ``rediss://``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from django_jobs.conf.defaults import SettingError, did_you_mean, label

#: Keys DJANGO_JOBS["SENTINEL"] accepts.
SENTINEL_KEYS = ("SENTINELS", "SERVICE_NAME", "DB", "USERNAME", "PASSWORD", "SENTINEL_USERNAME", "SENTINEL_PASSWORD")
SENTINEL_EXAMPLE = (
    "E.g. {'SENTINELS': ['10.0.0.1:26379', '10.0.0.2:26379', '10.0.0.3:26379'], 'SERVICE_NAME': 'mymaster'} "
    "(see docs/scaling.md)."
)
CLUSTER_EXAMPLE = (
    "E.g. True (REDIS_URL names one node of the cluster), or ['redis://10.0.0.1:7000', 'redis://10.0.0.2:7000'] "
    "(see docs/scaling.md)."
)


def _error(key: str, problem: str, hint: str) -> SettingError:
    return SettingError(key, problem, hint)


def _label(key: str) -> str:
    return label(key)


def parse_address(key: str, value: Any) -> tuple[str, int]:
    """Return ``(host, port)`` of a sentinel given as ``"host:port"`` or a ``(host, port)`` pair."""
    where = f"{_label(key)}['SENTINELS']"
    host: Any
    port: Any
    if isinstance(value, str):
        host, sep, port = value.rpartition(":")
        if not sep:
            host, port = value, 26379
    elif isinstance(value, (list, tuple)) and len(value) == 2:
        host, port = value
    else:
        raise _error(key, f"{where} holds {value!r}; each sentinel must be 'host:port' or (host, port).", SENTINEL_EXAMPLE)
    try:
        number = int(port)
    except (TypeError, ValueError):
        number = 0
    if not isinstance(host, str) or not host or not 0 < number < 65536:
        raise _error(key, f"{where} holds {value!r}, which is not a valid host and port.", SENTINEL_EXAMPLE)
    return host.strip("[]"), number


def parse_sentinel(key: str, value: Any) -> dict[str, Any] | None:
    """Return the SENTINEL setting normalised (lower-case keys, sentinels as (host, port)), or None."""
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise _error(key, f"{_label(key)} is {value!r}; it must be a dict.", SENTINEL_EXAMPLE)
    for name in value:
        if name not in SENTINEL_KEYS:
            raise _error(
                key, f"{_label(key)} has the unknown key {name!r}.",
                did_you_mean(str(name), SENTINEL_KEYS) or f"It accepts {', '.join(SENTINEL_KEYS)}.",
            )
    sentinels = value.get("SENTINELS")
    if isinstance(sentinels, (str, tuple)) and not (isinstance(sentinels, tuple) and sentinels and isinstance(sentinels[0], (list, tuple, str))):
        sentinels = [sentinels]
    if not isinstance(sentinels, (list, tuple)) or not sentinels:
        raise _error(key, f"{_label(key)}['SENTINELS'] is {sentinels!r}; it must list the sentinels' addresses.", SENTINEL_EXAMPLE)
    service = value.get("SERVICE_NAME")
    if not isinstance(service, str) or not service:
        raise _error(
            key, f"{_label(key)}['SERVICE_NAME'] is {service!r}; it must name the monitored primary "
            "(the name after 'sentinel monitor' in sentinel.conf).", SENTINEL_EXAMPLE,
        )
    db = value.get("DB", 0)
    if isinstance(db, bool) or not isinstance(db, int) or db < 0:
        raise _error(key, f"{_label(key)}['DB'] is {db!r}; it must be a database number >= 0.", "E.g. 0.")
    parsed: dict[str, Any] = {
        "sentinels": [parse_address(key, s) for s in sentinels], "service_name": service, "db": db,
    }
    for name in ("USERNAME", "PASSWORD", "SENTINEL_USERNAME", "SENTINEL_PASSWORD"):
        secret = value.get(name)
        if secret is not None and not isinstance(secret, str):
            raise _error(key, f"{_label(key)}[{name!r}] must be a string or None.", "")
        parsed[name.lower()] = secret or None
    return parsed


def parse_cluster(key: str, value: Any) -> bool | list[str]:
    """Return the CLUSTER setting: False (no cluster), True (REDIS_URL is a node), or the startup node URLs."""
    if value is None or value is False:
        return False
    if value is True:
        return True
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, (list, tuple)) or not value or not all(isinstance(v, str) and v for v in value):
        raise _error(key, f"{_label(key)} is {value!r}; it must be True or a list of node URLs.", CLUSTER_EXAMPLE)
    # Each URL is checked where the clients are built (engine/connection.py: cluster_nodes), as REDIS_URL is.
    return list(value)


ENQUEUE_WAIT_EXAMPLE = "E.g. {'REPLICAS': 1, 'TIMEOUT': 0.5}: wait up to 0.5 s for one replica (see docs/scaling.md)."


def parse_enqueue_wait(key: str, value: Any) -> tuple[int, int] | None:
    """Return ENQUEUE_WAIT as ``(replicas, timeout ms)``, or None (enqueues do not wait for replicas)."""
    if value is None:
        return None
    if not isinstance(value, Mapping) or set(value) - {"REPLICAS", "TIMEOUT"}:
        raise _error(key, f"{_label(key)} is {value!r}; it must be a dict with REPLICAS and TIMEOUT.", ENQUEUE_WAIT_EXAMPLE)
    replicas = value.get("REPLICAS", 1)
    timeout = value.get("TIMEOUT", 1.0)
    if isinstance(replicas, bool) or not isinstance(replicas, int) or replicas < 1:
        raise _error(key, f"{_label(key)}['REPLICAS'] is {replicas!r}; it must be a whole number >= 1.", ENQUEUE_WAIT_EXAMPLE)
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not 0 < timeout <= 60:
        raise _error(
            key, f"{_label(key)}['TIMEOUT'] is {timeout!r}; it must be seconds, more than 0 and at most 60.",
            ENQUEUE_WAIT_EXAMPLE,
        )
    return replicas, max(1, round(timeout * 1000))


def topology_error(
    *, redis_url: Any, cache_alias: Any, sentinel: Any, cluster: Any
) -> SettingError | None:
    """Return the error for SENTINEL / CLUSTER combined with a setting they exclude (None when consistent)."""
    if sentinel and cluster:
        return _error(
            "CLUSTER", f"{_label('SENTINEL')} and {_label('CLUSTER')} are both set; a Redis is one or the other.",
            "Keep the one that describes your Redis.",
        )
    if sentinel and (redis_url or cache_alias):
        other = "REDIS_URL" if redis_url else "CACHE_ALIAS"
        return _error(
            "SENTINEL", f"{_label('SENTINEL')} and {_label(other)} are both set, so it is unclear which Redis to use.",
            "Set only SENTINEL: django_jobs asks the sentinels for the primary.",
        )
    if isinstance(cluster, list) and (redis_url or cache_alias):
        other = "REDIS_URL" if redis_url else "CACHE_ALIAS"
        return _error(
            "CLUSTER", f"{_label('CLUSTER')} lists startup nodes and {_label(other)} is set too.",
            f"Either CLUSTER = True with {other} naming one node, or the node list without {other}.",
        )
    if cluster is True and not (redis_url or cache_alias):
        return _error(
            "CLUSTER", f"{_label('CLUSTER')} is True, but neither REDIS_URL nor CACHE_ALIAS names a node of the cluster.",
            "Set REDIS_URL to one node (redis://host:7000/0), or list the startup nodes in CLUSTER.",
        )
    return None
