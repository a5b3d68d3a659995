"""Parsers of DJANGO_JOBS values: one per key, shared by :func:`~django_jobs.conf.get_settings` and the checks.

Each takes the key and the value and returns the value to use, or raises :class:`SettingError`.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from django_jobs.backoff import validate_backoff
from django_jobs.conf.cron import parse_cron
from django_jobs.conf.defaults import (
    DEFAULTS,
    HEADER_RE,
    KEEP_KEYS,
    MAX_SHARDS,
    MIRROR_KEYS,
    QUEUE_NAME_RE,
    QUEUE_OPTION_KEYS,
    SettingError,
    did_you_mean,
    label,
)
from django_jobs.conf.defaults import number as _number
from django_jobs.conf.topology import parse_cluster, parse_enqueue_wait, parse_sentinel
from django_jobs.exceptions import InvalidJob

# -- value parsers ---------------------------------------------------------------------------
# Each takes the DJANGO_JOBS key and the value and returns the value to use, or raises
# SettingError. ``where`` overrides how messages name the value (for queue options).


@dataclass(frozen=True, slots=True)
class _At:
    """Where a value lives: the top-level key it belongs to and how messages name it."""

    setting: str
    name: str

    @classmethod
    def of(cls, key: str, where: _At | None) -> _At:
        return where if where is not None else cls(key, label(key))

    def error(self, problem: str, hint: str = "") -> SettingError:
        return SettingError(self.setting, problem, hint)


def _default_hint(key: str) -> str:
    default = DEFAULTS.get(key)
    return f"Use e.g. {default!r} (the default)." if default is not None else ""


def parse_whole(key: str, value: Any, *, minimum: int, unit: str = "", where: _At | None = None) -> int:
    """Return ``value`` as an int >= ``minimum``."""
    at = _At.of(key, where)
    number = _number(value)
    if number is None or number != int(number) or number < minimum:
        what = f"a whole number{' of ' + unit if unit else ''} >= {minimum}"
        raise at.error(f"{at.name} is {value!r}; it must be {what}.", _default_hint(key))
    return int(number)


def parse_seconds(key: str, value: Any, *, optional: bool = False, where: _At | None = None) -> float | None:
    """Return ``value`` as a number of seconds > 0 (or None when ``optional``)."""
    if value is None and optional:
        return None
    at = _At.of(key, where)
    number = _number(value)
    if number is None or number <= 0:
        raise at.error(
            f"{at.name} is {value!r}; it must be a number of seconds > 0{' or None' if optional else ''}.",
            _default_hint(key) or "Use e.g. 60, or None for no limit.",
        )
    return number


def parse_optional_string(key: str, value: Any) -> str | None:
    """Return a non-empty string, or None for None and ``""``."""
    if value is None or value == "":
        return None
    if isinstance(value, os.PathLike):
        value = os.fspath(value)
    if not isinstance(value, str):
        raise SettingError(key, f"{label(key)} is {value!r}; it must be a string or None.", _STRING_HINTS.get(key, ""))
    return value


_STRING_HINTS = {
    "REDIS_URL": "E.g. 'redis://localhost:6379/0'.",
    "CACHE_ALIAS": "E.g. 'default': the alias of a django-redis cache in CACHES.",
    "EMBEDDED_DIR": "E.g. BASE_DIR / '.django_jobs' (the default).",
    "EMBEDDED_BINARY": "E.g. '/usr/bin/redis-server', or None to search PATH.",
}


def parse_prefix(key: str, value: Any) -> str:
    """Return the key prefix: a non-empty string without braces."""
    if not isinstance(value, str) or not value or "{" in value or "}" in value:
        raise SettingError(
            key,
            f"{label(key)} is {value!r}; it must be a non-empty string without '{{' or '}}'.",
            "Braces would clash with the queues' Redis Cluster hash tags. Use e.g. 'djj' (the default).",
        )
    return value


def parse_options(key: str, value: Any) -> dict[str, Any]:
    """Return the REDIS_OPTIONS dict (keyword arguments of the redis-py client)."""
    if value is None:
        return {}
    if not isinstance(value, Mapping) or not all(isinstance(k, str) for k in value):
        raise SettingError(
            key,
            f"{label(key)} is {value!r}; it must be a dict of redis-py client keyword arguments.",
            "E.g. {'ssl_ca_certs': '/etc/ssl/redis-ca.pem', 'socket_timeout': 5}.",
        )
    return dict(value)


def parse_backoff(key: str, value: Any) -> Any:
    """Return the default backoff spec (see :mod:`django_jobs.backoff`)."""
    try:
        validate_backoff(value)
    except InvalidJob as exc:
        raise SettingError(key, f"{label(key)} is invalid: {exc}", _default_hint(key)) from None
    except (TypeError, ValueError):  # e.g. a dict whose keys cannot be sorted for the message
        raise SettingError(key, f"{label(key)} is {value!r}, which is not a valid backoff.", _default_hint(key)) from None
    if isinstance(value, float) and not math.isfinite(value):
        raise SettingError(key, f"{label(key)} is {value!r}; it must be a finite number of seconds.", _default_hint(key))
    return value


def parse_keep(key: str, value: Any, *, partial: bool = False, where: _At | None = None) -> dict[str, int]:
    """Return a retention dict ``{"AGE": seconds, "COUNT": jobs}`` of non-negative whole numbers.

    ``partial`` (per-queue retention) returns only the keys given; they override the global ones.
    """
    at = _At.of(key, where)
    result: dict[str, int] = {} if partial else dict(DEFAULTS[key])
    if value is None:
        return result
    if not isinstance(value, Mapping):
        raise at.error(
            f"{at.name} is {value!r}; it must be a dict with 'AGE' (seconds) and/or 'COUNT' (jobs).",
            f"E.g. {DEFAULTS[key]!r}.",
        )
    for sub, number in value.items():
        if sub not in KEEP_KEYS:
            raise at.error(
                f"{at.name} has an unknown key {sub!r}.",
                did_you_mean(sub, KEEP_KEYS) or "Allowed keys: 'AGE' (seconds) and 'COUNT' (jobs).",
            )
        parsed = _number(number)
        if parsed is None or parsed != int(parsed) or parsed < 0:
            raise at.error(
                f"{at.name}[{sub!r}] is {number!r}; it must be a whole number >= 0.",
                "AGE is in seconds, COUNT in jobs.",
            )
        result[sub] = int(parsed)
    return result


def parse_module_list(key: str, value: Any) -> list[str]:
    """Return a list of dotted module names."""
    if value is None:
        return []
    if isinstance(value, str):
        raise SettingError(key, f"{label(key)} is the string {value!r}; it must be a list of strings.", f"Use [{value!r}].")
    if not isinstance(value, (list, tuple)) or not all(isinstance(m, str) and m for m in value):
        raise SettingError(key, f"{label(key)} is {value!r}; it must be a list of non-empty strings.", "E.g. ['myapp.jobs'].")
    return list(value)


def parse_dotted_list(key: str, value: Any) -> list[str]:
    """Return a list of dotted paths (``module.Class``); importing them is checked later."""
    if value is None:
        return []
    if isinstance(value, str):
        raise SettingError(key, f"{label(key)} is the string {value!r}; it must be a list of dotted paths.", f"Use [{value!r}].")
    if not isinstance(value, (list, tuple)) or not all(isinstance(p, str) and "." in p.strip(".") for p in value):
        raise SettingError(
            key,
            f"{label(key)} is {value!r}; it must be a list of dotted paths of classes.",
            f"E.g. {DEFAULTS[key]!r} (the default).",
        )
    return list(value)




def parse_header(key: str, value: Any) -> str:
    """Return an HTTP header name such as ``"X-Request-ID"``."""
    if not isinstance(value, str) or not HEADER_RE.fullmatch(value) or value.upper().startswith("HTTP_"):
        raise SettingError(
            key, f"{label(key)} is {value!r}; it must be an HTTP header name.", "E.g. 'X-Request-ID' (the default) or 'X-Correlation-ID'."
        )
    return value


def parse_optional_whole(key: str, value: Any, *, unit: str) -> int | None:
    """Return ``value`` as an int >= 1, or None (no limit)."""
    if value is None:
        return None
    at = _At.of(key, None)
    number = _number(value)
    if number is None or number != int(number) or number < 1:
        raise at.error(
            f"{at.name} is {value!r}; it must be a whole number of {unit} >= 1, or None (no limit).",
            f"E.g. {1000 if unit == 'jobs' else 512} (see docs/workers.md#recycling-worker-processes).",
        )
    return int(number)


_PARSERS: dict[str, Callable[[str, Any], Any]] = {
    "REDIS_URL": parse_optional_string,
    "CACHE_ALIAS": parse_optional_string,
    "REDIS_OPTIONS": parse_options,
    "SENTINEL": parse_sentinel,
    "CLUSTER": parse_cluster,
    "ENQUEUE_WAIT": parse_enqueue_wait,
    "LEAN_JOB_HASH": lambda k, v: parse_lean_job_hash(k, v),
    "PREFIX": parse_prefix,
    "EMBEDDED_DIR": parse_optional_string,
    "EMBEDDED_BINARY": parse_optional_string,
    "EMBEDDED": lambda k, v: parse_embedded(k, v),
    "DEFAULT_ATTEMPTS": lambda k, v: parse_whole(k, v, minimum=1),
    "DEFAULT_BACKOFF": parse_backoff,
    "DEFAULT_TIMEOUT": lambda k, v: parse_seconds(k, v, optional=True),
    "LEASE_SECONDS": parse_seconds,
    "MAX_RECOVERIES": lambda k, v: parse_whole(k, v, minimum=0),
    "RECOVERY_INTERVAL": parse_seconds,
    "KEEP_COMPLETED": parse_keep,
    "KEEP_FAILED": parse_keep,
    "EVENTS_MAXLEN": lambda k, v: parse_whole(k, v, minimum=1),
    "IMPORT_MODULES": parse_module_list,
    "AUTODISCOVER": parse_module_list,
    "MAX_PAYLOAD_BYTES": lambda k, v: parse_whole(k, v, minimum=1, unit="bytes"),
    "CRON": lambda k, v: parse_cron(v),
    "LEADER_LEASE_SECONDS": parse_seconds,
    "MIDDLEWARE": parse_dotted_list,
    "REQUEST_ID_HEADER": parse_header,
    "MAX_JOBS_PER_CHILD": lambda k, v: parse_optional_whole(k, v, unit="jobs"),
    "MAX_MEMORY_PER_CHILD": lambda k, v: parse_optional_whole(k, v, unit="MB"),
    "REDACT_ARGUMENTS": lambda k, v: parse_redact(k, v),
    "MIRROR": lambda k, v: parse_mirror(v),
}


def parse_lean_job_hash(key: str, value: Any) -> bool:
    """Return whether a new waiting job's hash leaves out ``p`` at 0 and ``ws`` (docs/configuration.md)."""
    if isinstance(value, bool):
        return value
    raise SettingError(
        key, f"{label(key)} is {value!r}; it must be True or False.",
        "False (the default): every job hash as release 0.1.0 writes it; True: 16 bytes less per waiting job, "
        "once no worker of release 0.1.0 runs against this Redis (docs/configuration.md#lean_job_hash).",
    )


def parse_embedded(key: str, value: Any) -> bool | None:
    """Return whether the embedded Redis may be used: None (only with DEBUG), True (always) or False (never)."""
    if value is None or isinstance(value, bool):
        return value
    raise SettingError(
        key, f"{label(key)} is {value!r}; it must be True, False or None.",
        "None (the default): the embedded Redis only with DEBUG = True; True: also without DEBUG (one machine); "
        "False: never, REDIS_URL or CACHE_ALIAS must be set.",
    )


def parse_redact(key: str, value: Any) -> list[str]:
    """Return the argument names the admin hides (lower case; matched as parts of names)."""
    if value is None:
        return []
    if isinstance(value, str) or not isinstance(value, (list, tuple)) or not all(isinstance(n, str) and n.strip() for n in value):
        raise SettingError(
            key, f"{label(key)} is {value!r}; it must be a list of argument names.", "E.g. ['password', 'token'], or [] to show every argument."
        )
    return [n.strip().lower() for n in value]


def parse_value(key: str, value: Any) -> Any:
    """Return DJANGO_JOBS[key] checked and coerced (``QUEUES``: see :func:`parse_queues`).

    Raises:
        SettingError: the value is invalid; the message says how to fix it.
    """
    if key == "QUEUES":
        return parse_queues(value)
    return _PARSERS[key](key, value)


# -- queues ----------------------------------------------------------------------------------


def parse_queue_name(name: Any) -> str:
    """Return ``name`` if it is a valid queue name."""
    if not isinstance(name, str) or not QUEUE_NAME_RE.fullmatch(name):
        raise SettingError(
            "QUEUES",
            f"Queue name {name!r} in {label('QUEUES')} is not valid.",
            "Use a non-empty string of letters, digits, '_', '.' and '-' (it becomes part of Redis "
            "key names; braces and colons would break them).",
        )
    return name


def parse_queue_options(name: str, options: Any) -> dict[str, Any]:
    """Return the options of queue ``name`` checked and coerced."""
    queue = f"{label('QUEUES')}[{name!r}]"
    if options is None:
        return {}
    if not isinstance(options, Mapping):
        raise SettingError(
            "QUEUES",
            f"{queue} is {options!r}; it must be a dict of queue options.",
            "Use {} for the defaults, e.g. {'default': {}, 'emails': {'DEFAULT_ATTEMPTS': 5}}.",
        )
    result: dict[str, Any] = {}
    for key, value in options.items():
        if key not in QUEUE_OPTION_KEYS:
            raise SettingError(
                "QUEUES",
                f"{queue} has an unknown option {key!r}.",
                did_you_mean(key, QUEUE_OPTION_KEYS) or f"Queue options: {', '.join(sorted(QUEUE_OPTION_KEYS))}.",
            )
        at = _At("QUEUES", f"{queue}[{key!r}]")
        if key == "PRIORITY":
            number = _number(value)
            if number is None or number != int(number):
                raise at.error(f"{at.name} is {value!r}; it must be a whole number.", "Higher runs first, e.g. 10.")
            result[key] = int(number)
        elif key == "DEFAULT_ATTEMPTS":
            result[key] = parse_whole(key, value, minimum=1, where=at)
        elif key == "DEFAULT_TIMEOUT":
            result[key] = parse_seconds(key, value, optional=True, where=at)
        elif key in ("RATE_LIMIT", "CONCURRENCY"):
            result[key] = parse_queue_limit(key, value, at)
        elif key == "SHARDS":
            result[key] = parse_shards(value, at)
        elif key == "ACTIVE_EVENTS":
            if not isinstance(value, bool):
                raise at.error(f"{at.name} is {value!r}; it must be True or False.",
                               "False: its fetches write no 'active' event (unless a database mirror holds the queue).")
            result[key] = value
        else:
            result[key] = parse_keep(key, value, partial=True, where=at)
    if result.get("SHARDS", 1) > 1:
        _refuse_sharded(name, result)
    return result


def parse_shards(value: Any, at: _At) -> int:
    """Return a queue's SHARDS: a whole number from 1 to :data:`MAX_SHARDS` (1: not sharded)."""
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_SHARDS:
        raise at.error(
            f"{at.name} is {value!r}; it must be a whole number from 1 to {MAX_SHARDS}.",
            "E.g. 4: the queue is spread over 4 hash tags (docs/scaling.md#sharded-queues).",
        )
    return value


def _refuse_sharded(name: str, options: dict[str, Any]) -> None:
    """Refuse the queue options that cannot hold across the shards of a sharded queue (E040)."""
    for key, what in (("RATE_LIMIT", "a rate limit"), ("CONCURRENCY", "a concurrency limit")):
        if options.get(key) is not None:
            raise SettingError(
                "SHARDS",
                f"{label('QUEUES')}[{name!r}] has SHARDS={options['SHARDS']} and {key}: {what} of a sharded "
                "queue would hold per shard only, not for the queue.",
                f"Remove {key} from {name!r}, or SHARDS (one shard enforces it for the whole queue); a per-key "
                "limit (@job(limit_key=...)) holds on a sharded queue, since its key decides the shard.",
            )


def parse_queue_limit(key: str, value: Any, at: _At) -> Any:
    """Return a queue's RATE_LIMIT (a :class:`~django_jobs.rates.Rate`) or CONCURRENCY (int); None: no limit."""
    from django_jobs.rates import parse_concurrency, parse_rate

    if value is None:
        return None
    try:
        return parse_rate(value) if key == "RATE_LIMIT" else parse_concurrency(value)
    except ValueError as exc:
        example = "'100/m'" if key == "RATE_LIMIT" else "5"
        raise at.error(f"{at.name}: {exc}", f"E.g. {example}, or None for no limit.") from None


def parse_queues(value: Any) -> dict[str, dict[str, Any]]:
    """Return the queues, ``default`` first (it always exists)."""
    if value is None:
        value = {}
    if not isinstance(value, Mapping):
        raise SettingError(
            "QUEUES",
            f"{label('QUEUES')} is {value!r}; it must be a dict of queue name to options.",
            "E.g. {'default': {}, 'emails': {'DEFAULT_ATTEMPTS': 5}}.",
        )
    queues: dict[str, dict[str, Any]] = {"default": {}}
    for name, options in value.items():
        queues[parse_queue_name(name)] = parse_queue_options(name, options)
    return queues


# -- the database mirror (docs/mirror.md) -----------------------------------------------------


def parse_mirror(value: Any) -> dict[str, Any]:
    """Return DJANGO_JOBS["MIRROR"] with defaults filled in.

    ``ENABLED`` (bool): ``runworkers`` runs the mirror; ``RETENTION`` (seconds, or None to keep
    rows forever): finished rows older than this are pruned; ``BATCH``: events per read and
    rows per write (1..10,000); ``PRUNE_INTERVAL`` (seconds): how often the mirror prunes;
    ``CLAIM_AFTER`` (seconds): take over events another mirror read but left unacknowledged
    that long (it died); ``NICE`` (0..19): how much ``runworkers`` lowers the mirror process'
    CPU priority; ``MAX_LAG``: the most events (and finished jobs) per queue Redis keeps for a
    mirror that is behind (past it, trimming and retention go on and the mirror logs the loss);
    ``HOLD`` (seconds): how long Redis keeps holding them after the mirror was last seen;
    ``LINGER`` (seconds, 0 to 1): how long the mirror waits for more events after reads that
    found it caught up (0: it reads again at once).
    """
    key = "MIRROR"
    if value is None:
        value = {}
    if not isinstance(value, Mapping):
        raise SettingError(
            key, f"{label(key)} is {value!r}; it must be a dict.",
            "E.g. {'ENABLED': True, 'RETENTION': 7 * 24 * 3600, 'BATCH': 500}.",
        )
    unknown = [k for k in value if k not in MIRROR_KEYS]
    if unknown:
        raise SettingError(
            key, f"Unknown key {unknown[0]!r} in {label(key)}.",
            did_you_mean(unknown[0], MIRROR_KEYS) or f"Valid keys: {', '.join(MIRROR_KEYS)}.",
        )
    result = {**DEFAULTS[key], **value}
    if not isinstance(result["ENABLED"], bool):
        raise SettingError(key, f"{label(key)}['ENABLED'] is {result['ENABLED']!r}; it must be True or False.")
    hints = {"RETENTION": "Use e.g. 604800 (7 days, the default), or None to keep rows forever.",
             "BATCH": "Use e.g. 500 (the default).", "PRUNE_INTERVAL": "Use e.g. 3600 (the default).",
             "CLAIM_AFTER": "Use e.g. 30 (the default).", "MAX_LAG": "Use e.g. 1000000 (the default).",
             "HOLD": "Use e.g. 600 (the default)."}
    for name, parse in (
        ("RETENTION", lambda v, at: parse_seconds(key, v, optional=True, where=at)),
        ("BATCH", lambda v, at: parse_whole(key, v, minimum=1, where=at)),
        ("PRUNE_INTERVAL", lambda v, at: parse_seconds(key, v, where=at)),
        ("CLAIM_AFTER", lambda v, at: parse_seconds(key, v, where=at)),
        ("MAX_LAG", lambda v, at: parse_whole(key, v, minimum=1, where=at)),
        ("HOLD", lambda v, at: parse_seconds(key, v, where=at)),
    ):
        try:
            result[name] = parse(result[name], _At(key, f"{label(key)}[{name!r}]"))
        except SettingError as exc:
            raise SettingError(key, exc.problem, hints[name]) from None
    nice = result["NICE"]
    if isinstance(nice, bool) or not isinstance(nice, int) or not 0 <= nice <= 19:
        raise SettingError(
            key, f"{label(key)}['NICE'] is {nice!r}; it must be a whole number from 0 to 19.",
            "Use e.g. 10 (the default: the workers come first when the CPU is busy), or 0 not to lower it.",
        )
    linger = _number(result["LINGER"])
    if linger is None or not 0 <= linger <= 1:
        raise SettingError(
            key, f"{label(key)}['LINGER'] is {result['LINGER']!r}; it must be a number of seconds from 0 to 1.",
            "Use e.g. 0.1 (the default: a job's events coalesce into one row write), or 0 not to wait.",
        )
    result["LINGER"] = linger
    if result["BATCH"] > 10_000:
        raise SettingError(key, f"{label(key)}['BATCH'] is {result['BATCH']!r}; it must be at most 10000.", hints["BATCH"])
    return result
