"""Settings: one ``DJANGO_JOBS`` dict, read through :func:`get_settings`.

Every key and its default is documented in ``docs/configuration.md``.
Settings are never read at import time; the result is cached and cleared on
Django's ``setting_changed`` signal.

Each value goes through one parser (:func:`parse_value`, :func:`parse_queues`), used both by
:func:`get_settings` (which raises :class:`SettingError` on the first bad value) and by the
system checks in :mod:`django_jobs.checks` (which report every bad value), so the two can
never disagree about what is valid.
"""

from __future__ import annotations

import difflib
import functools
import math
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings as django_settings
from django.core.signals import setting_changed
from django.dispatch import receiver

from django_jobs.backoff import validate_backoff
from django_jobs.exceptions import ConfigurationError, InvalidJob
from django_jobs.topology import parse_cluster, parse_enqueue_wait, parse_sentinel, topology_error

#: Default values of every DJANGO_JOBS key.
DEFAULTS: dict[str, Any] = {
    "REDIS_URL": None,
    "CACHE_ALIAS": None,
    "REDIS_OPTIONS": {},
    "SENTINEL": None,
    "CLUSTER": None,
    "ENQUEUE_WAIT": None,
    "PREFIX": "djj",
    "EMBEDDED_DIR": None,
    "EMBEDDED_BINARY": None,
    "QUEUES": {},
    "DEFAULT_ATTEMPTS": 1,
    "DEFAULT_BACKOFF": "exponential",
    "DEFAULT_TIMEOUT": None,
    "LEASE_SECONDS": 10.0,
    "MAX_RECOVERIES": 3,
    "RECOVERY_INTERVAL": 2.0,
    "KEEP_COMPLETED": {"AGE": 24 * 3600, "COUNT": 10_000},
    "KEEP_FAILED": {"AGE": 7 * 24 * 3600, "COUNT": 100_000},
    "EVENTS_MAXLEN": 100_000,
    "IMPORT_MODULES": [],
    "AUTODISCOVER": ["jobs", "tasks"],
    "MAX_PAYLOAD_BYTES": 512 * 1024,
    "MIDDLEWARE": ["django_jobs.middleware.CorrelationMiddleware", "django_jobs.middleware.LoggingMiddleware"],
    "REQUEST_ID_HEADER": "X-Request-ID",
    "CRON": [],
    "LEADER_LEASE_SECONDS": 10.0,
    "MAX_JOBS_PER_CHILD": None,
    "MAX_MEMORY_PER_CHILD": None,
    "REDACT_ARGUMENTS": ["password", "passwd", "secret", "token", "api_key", "apikey", "authorization"],
    "MIRROR": {"ENABLED": True, "RETENTION": 7 * 24 * 3600, "BATCH": 500, "PRUNE_INTERVAL": 3600, "CLAIM_AFTER": 30, "NICE": 10},
}

#: Keys a schedule in DJANGO_JOBS["CRON"] accepts (docs/cron.md).
CRON_KEYS = frozenset({"NAME", "JOB", "SCHEDULE", "EVERY", "ARGS", "KWARGS", "QUEUE", "TIMEZONE", "MISSED"})
#: What DJANGO_JOBS["CRON"][i]["MISSED"] may be besides a whole number (catch up at most that many).
MISSED_POLICIES = ("skip", "latest")

#: Options a queue accepts in DJANGO_JOBS["QUEUES"][name].
QUEUE_OPTION_KEYS = frozenset(
    {"PRIORITY", "KEEP_COMPLETED", "KEEP_FAILED", "DEFAULT_ATTEMPTS", "DEFAULT_TIMEOUT"}
    # Flow control (docs/flow-control.md).
    | {"RATE_LIMIT", "CONCURRENCY"}
)

#: Keys of a KEEP_COMPLETED / KEEP_FAILED dict.
KEEP_KEYS = ("AGE", "COUNT")

#: What a queue name may contain: it becomes a Redis hash tag ``{name}``, so braces (and
#: colons, which separate key parts) would break the key layout.
QUEUE_NAME_RE = re.compile(r"[A-Za-z0-9_.\-]+")


class SettingError(ConfigurationError):
    """One DJANGO_JOBS value is invalid.

    ``setting`` names the key (``"LEASE_SECONDS"``, ``"QUEUES"``...), ``problem`` says what is
    wrong and ``hint`` how to fix it; the message is both. System checks show ``problem`` as
    the error and ``hint`` as its hint.
    """

    def __init__(self, setting: str, problem: str, hint: str = "") -> None:
        super().__init__(f"{problem} {hint}".strip())
        self.setting = setting
        self.problem = problem
        self.hint = hint


def label(key: str) -> str:
    """Return how messages name a setting: ``DJANGO_JOBS['KEY']``."""
    return f"DJANGO_JOBS[{key!r}]"


def did_you_mean(word: str, choices: Any) -> str:
    """Return "Did you mean 'X'?" for the choice closest to ``word`` ('' if none is close)."""
    close = difflib.get_close_matches(str(word), [str(c) for c in choices], n=1)
    return f"Did you mean {close[0]!r}?" if close else ""


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


def _number(value: Any) -> float | None:
    """Return ``value`` as a finite number (numeric strings accepted), or None."""
    if isinstance(value, bool):
        return None
    try:
        if isinstance(value, (int, float)):
            number = float(value)
        elif isinstance(value, str):
            number = float(value.strip())
        else:
            return None
    except (ValueError, OverflowError):  # "ten", 10**400
        return None
    return number if math.isfinite(number) else None


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


#: What a request id header name may be (an HTTP token).
HEADER_RE = re.compile(r"[A-Za-z0-9!#$%&'*+.^_`|~-]+")


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
    "PREFIX": parse_prefix,
    "EMBEDDED_DIR": parse_optional_string,
    "EMBEDDED_BINARY": parse_optional_string,
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
        else:
            result[key] = parse_keep(key, value, partial=True, where=at)
    return result


def parse_queue_limit(key: str, value: Any, at: _At) -> Any:
    """Return a queue's RATE_LIMIT (a :class:`~django_jobs.limits.Rate`) or CONCURRENCY (int); None: no limit."""
    from django_jobs.limits import parse_concurrency, parse_rate

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


# -- cron ------------------------------------------------------------------------------------

CRON_HINT = (
    "E.g. {'NAME': 'nightly-report', 'JOB': 'reports.jobs.nightly', 'SCHEDULE': '0 3 * * *'}; "
    "see docs/cron.md."
)


def parse_cron(value: Any) -> list[dict[str, Any]]:
    """Return the schedules of DJANGO_JOBS['CRON'], each checked and completed with its defaults.

    Whether ``JOB`` names a registered job and ``QUEUE`` a configured queue is checked by the
    system checks (E021) and when a tick fires, since it needs the jobs imported.
    """
    if value is None:
        return []
    if isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple)):
        raise SettingError("CRON", f"{label('CRON')} is {value!r}; it must be a list of schedule dicts.", CRON_HINT)
    schedules: list[dict[str, Any]] = []
    names: set[str] = set()
    for index, entry in enumerate(value):
        schedule = parse_schedule(index, entry)
        if schedule["NAME"] in names:
            raise SettingError(
                "CRON", f"{label('CRON')} has two schedules named {schedule['NAME']!r}.",
                "Give each schedule its own NAME: it identifies its ticks in Redis.",
            )
        names.add(schedule["NAME"])
        schedules.append(schedule)
    return schedules


def parse_schedule(index: int, entry: Any) -> dict[str, Any]:
    """Return one schedule of DJANGO_JOBS['CRON'] checked and completed with its defaults."""
    where = f"{label('CRON')}[{index}]"

    def error(problem: str, hint: str = "") -> SettingError:
        return SettingError("CRON", problem, hint)

    if not isinstance(entry, Mapping):
        raise error(f"{where} is {entry!r}; it must be a dict.", CRON_HINT)
    for key in entry:
        if key not in CRON_KEYS:
            raise error(
                f"{where} has an unknown key {key!r}.",
                did_you_mean(key, CRON_KEYS) or f"Schedule keys: {', '.join(sorted(CRON_KEYS))}.",
            )
    name = entry.get("NAME")
    if not isinstance(name, str) or not QUEUE_NAME_RE.fullmatch(name):
        raise error(
            f"{where}['NAME'] is {name!r}; it must be a non-empty string of letters, digits, '_', '.' and '-'.",
            "E.g. 'nightly-report'. It becomes part of the ids of the jobs the schedule enqueues.",
        )
    where = f"{label('CRON')}[{name!r}]"
    job = entry.get("JOB")
    if not isinstance(job, str) or not job or "." not in job:
        raise error(f"{where}['JOB'] is {job!r}; it must be the dotted path of a @job.", "E.g. 'myapp.jobs.cleanup'.")
    expression, every = entry.get("SCHEDULE"), entry.get("EVERY")
    if (expression is None) == (every is None):
        raise error(
            f"{where} must have exactly one of 'SCHEDULE' (a cron expression) and 'EVERY' (seconds).",
            "E.g. 'SCHEDULE': '*/5 * * * *' (every 5 minutes) or 'EVERY': 30.",
        )
    result: dict[str, Any] = {"NAME": name, "JOB": job, "SCHEDULE": None, "EVERY": None}
    if expression is not None:
        result["SCHEDULE"] = parse_cron_expression(where, expression)
    else:
        seconds = _number(every)
        if seconds is None or seconds <= 0 or seconds * 1000 != int(seconds * 1000) or seconds > 366 * 86400:
            raise error(
                f"{where}['EVERY'] is {every!r}; it must be a number of seconds > 0 (whole milliseconds, at most a year).",
                "E.g. 'EVERY': 30. Ticks are aligned to multiples of EVERY since the Unix epoch.",
            )
        result["EVERY"] = seconds
    args, kwargs = entry.get("ARGS", []), entry.get("KWARGS", {})
    if isinstance(args, tuple):
        args = list(args)
    if not isinstance(args, list):
        raise error(f"{where}['ARGS'] is {args!r}; it must be a list.", "E.g. 'ARGS': [7, 'daily'].")
    if not isinstance(kwargs, Mapping) or not all(isinstance(k, str) for k in kwargs):
        raise error(f"{where}['KWARGS'] is {kwargs!r}; it must be a dict with string keys.", "E.g. 'KWARGS': {'days': 7}.")
    import json

    try:
        json.dumps([args, dict(kwargs)], allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise error(
            f"{where}: ARGS or KWARGS cannot be sent as JSON ({exc}).",
            "Use only str, int, float, bool, None, lists and dicts with string keys.",
        ) from None
    result["ARGS"], result["KWARGS"] = args, dict(kwargs)
    queue = entry.get("QUEUE")
    if queue is not None and (not isinstance(queue, str) or not QUEUE_NAME_RE.fullmatch(queue)):
        raise error(f"{where}['QUEUE'] is {queue!r}; it must be a queue name.", "Leave it out to use the job's queue.")
    result["QUEUE"] = queue
    tz = entry.get("TIMEZONE", "UTC")
    try:
        import zoneinfo

        zoneinfo.ZoneInfo(tz)
    except (TypeError, ValueError, zoneinfo.ZoneInfoNotFoundError):
        raise error(
            f"{where}['TIMEZONE'] is {tz!r}, which is not an IANA time zone.",
            "E.g. 'Europe/Paris' or 'UTC' (the default).",
        ) from None
    result["TIMEZONE"] = tz
    missed = entry.get("MISSED", "latest")
    if not (missed in MISSED_POLICIES or (isinstance(missed, int) and not isinstance(missed, bool) and 1 <= missed <= 10_000)):
        raise error(
            f"{where}['MISSED'] is {missed!r}; it must be 'skip', 'latest' or a whole number 1..10000.",
            "'skip' drops ticks missed while no scheduler ran, 'latest' (the default) runs the latest "
            "one once, N runs up to the N latest.",
        )
    result["MISSED"] = missed
    return result


def parse_cron_expression(where: str, expression: Any) -> str:
    """Return a cron expression (5 fields, or 6 with seconds first) if croniter accepts it."""
    from croniter import croniter

    fields = expression.split() if isinstance(expression, str) else []
    valid = False
    if len(fields) in (5, 6):
        try:
            valid = croniter.is_valid(" ".join(fields), second_at_beginning=True)
        except Exception:  # noqa: BLE001 - croniter raises assorted errors on odd input
            valid = False
    if not valid:
        raise SettingError(
            "CRON",
            f"{where}['SCHEDULE'] is {expression!r}, which is not a valid cron expression.",
            "Use 5 fields 'minute hour day month weekday' (e.g. '30 3 * * 1-5'), or 6 with seconds "
            "first (e.g. '*/10 * * * * *').",
        )
    return " ".join(fields)


# -- resolved settings -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class JobsSettings:
    """The resolved DJANGO_JOBS settings."""

    redis_url: str | None
    cache_alias: str | None
    redis_options: dict[str, Any]
    prefix: str
    embedded_dir: str | None
    queues: dict[str, dict[str, Any]]
    default_attempts: int
    default_backoff: Any
    default_timeout: float | None
    lease_seconds: float
    max_recoveries: int
    recovery_interval: float
    keep_completed: dict[str, int]
    keep_failed: dict[str, int]
    events_maxlen: int
    import_modules: list[str]
    autodiscover: list[str]
    max_payload_bytes: int
    embedded_binary: str | None = None
    middleware: list[str] = field(default_factory=lambda: list(DEFAULTS["MIDDLEWARE"]))
    request_id_header: str = "X-Request-ID"
    cron: list[dict[str, Any]] = field(default_factory=list)
    leader_lease_seconds: float = 10.0
    max_jobs_per_child: int | None = None
    max_memory_per_child: int | None = None
    redact_arguments: list[str] = field(default_factory=lambda: list(DEFAULTS["REDACT_ARGUMENTS"]))
    mirror: dict[str, Any] = field(default_factory=lambda: dict(DEFAULTS["MIRROR"]))
    #: DJANGO_JOBS["SENTINEL"] parsed (django_jobs/topology.py), or None.
    sentinel: dict[str, Any] | None = None
    #: DJANGO_JOBS["CLUSTER"]: False, True (REDIS_URL / CACHE_ALIAS names a node) or startup node URLs.
    cluster: bool | list[str] = False
    #: DJANGO_JOBS["ENQUEUE_WAIT"]: (replicas, timeout ms) an enqueue waits for (WAIT), or None.
    enqueue_wait: tuple[int, int] | None = None
    raw: dict[str, Any] = field(default_factory=dict)

    @property
    def queue_names(self) -> list[str]:
        """Configured queue names, ``default`` first."""
        return list(self.queues)

    @property
    def embedded(self) -> bool:
        """True when none of REDIS_URL, CACHE_ALIAS, SENTINEL and CLUSTER says where Redis is."""
        return not self.redis_url and not self.cache_alias and not self.sentinel and not self.cluster

    def keep(self, queue: str, which: str) -> tuple[float, int]:
        """Return (age_seconds, count) retention for ``which`` in ('COMPLETED', 'FAILED')."""
        base = self.keep_completed if which == "COMPLETED" else self.keep_failed
        merged = {**base, **self.queues.get(queue, {}).get(f"KEEP_{which}", {})}
        return float(merged.get("AGE", 0)), int(merged.get("COUNT", 0))


def user_settings() -> dict[str, Any]:
    """Return the raw DJANGO_JOBS dict from Django settings (may be empty).

    Raises:
        SettingError: DJANGO_JOBS is set but is not a dict.
    """
    value = getattr(django_settings, "DJANGO_JOBS", None)
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise SettingError(
            "DJANGO_JOBS",
            f"DJANGO_JOBS is {type(value).__name__} {value!r}; it must be a dict.",
            "E.g. DJANGO_JOBS = {'REDIS_URL': 'redis://localhost:6379/0', 'QUEUES': {'default': {}}}.",
        )
    return dict(value)


def ambiguity_error(redis_url: Any, cache_alias: Any) -> SettingError | None:
    """Return the error for setting both REDIS_URL and CACHE_ALIAS (None when only one is set)."""
    if redis_url and cache_alias:
        return SettingError(
            "CACHE_ALIAS",
            f"{label('REDIS_URL')} and {label('CACHE_ALIAS')} ({cache_alias!r}) are both set, "
            "so it is unclear which Redis django_jobs should use.",
            "Set only one of them.",
        )
    return None


@functools.cache
def get_settings() -> JobsSettings:
    """Return the resolved settings (cached; cleared when settings change).

    Raises:
        SettingError: a value is invalid (``manage.py check`` lists every invalid value).
    """
    return build_settings(user_settings())


def build_settings(raw: Mapping[str, Any]) -> JobsSettings:
    """Return the settings a raw DJANGO_JOBS dict describes (missing keys take their default).

    Unknown keys are ignored here (the system check E001 reports them).

    Raises:
        SettingError: the first invalid value.
    """
    raw = dict(raw)
    values = {key: parse_value(key, raw[key] if key in raw else default) for key, default in DEFAULTS.items()}
    error = ambiguity_error(values["REDIS_URL"], values["CACHE_ALIAS"])
    if error is not None:
        raise error
    error = topology_error(
        redis_url=values["REDIS_URL"], cache_alias=values["CACHE_ALIAS"], sentinel=values["SENTINEL"],
        cluster=values["CLUSTER"], enqueue_wait=values["ENQUEUE_WAIT"],
    )
    if error is not None:
        raise error
    return JobsSettings(
        redis_url=values["REDIS_URL"],
        cache_alias=values["CACHE_ALIAS"],
        redis_options=values["REDIS_OPTIONS"],
        prefix=values["PREFIX"],
        embedded_dir=values["EMBEDDED_DIR"],
        embedded_binary=values["EMBEDDED_BINARY"],
        queues=values["QUEUES"],
        default_attempts=values["DEFAULT_ATTEMPTS"],
        default_backoff=values["DEFAULT_BACKOFF"],
        default_timeout=values["DEFAULT_TIMEOUT"],
        lease_seconds=values["LEASE_SECONDS"],
        max_recoveries=values["MAX_RECOVERIES"],
        recovery_interval=values["RECOVERY_INTERVAL"],
        keep_completed=values["KEEP_COMPLETED"],
        keep_failed=values["KEEP_FAILED"],
        events_maxlen=values["EVENTS_MAXLEN"],
        import_modules=values["IMPORT_MODULES"],
        autodiscover=values["AUTODISCOVER"],
        max_payload_bytes=values["MAX_PAYLOAD_BYTES"],
        middleware=values["MIDDLEWARE"],
        request_id_header=values["REQUEST_ID_HEADER"],
        cron=values["CRON"],
        leader_lease_seconds=values["LEADER_LEASE_SECONDS"],
        max_jobs_per_child=values["MAX_JOBS_PER_CHILD"],
        max_memory_per_child=values["MAX_MEMORY_PER_CHILD"],
        redact_arguments=values["REDACT_ARGUMENTS"],
        mirror=values["MIRROR"],
        sentinel=values["SENTINEL"],
        cluster=values["CLUSTER"],
        enqueue_wait=values["ENQUEUE_WAIT"],
        raw=raw,
    )


@receiver(setting_changed)
def _clear_cache(*, setting: str, **kwargs: Any) -> None:
    if setting in ("DJANGO_JOBS", "TASKS", "CACHES"):
        get_settings.cache_clear()
        from django_jobs.engine import reset_engine

        reset_engine()


# -- the database mirror (docs/mirror.md) -----------------------------------------------------

#: Keys DJANGO_JOBS["MIRROR"] accepts.
MIRROR_KEYS = ("ENABLED", "RETENTION", "BATCH", "PRUNE_INTERVAL", "CLAIM_AFTER", "NICE")


def parse_mirror(value: Any) -> dict[str, Any]:
    """Return DJANGO_JOBS["MIRROR"] with defaults filled in.

    ``ENABLED`` (bool): ``runworkers`` runs the mirror; ``RETENTION`` (seconds, or None to keep
    rows forever): finished rows older than this are pruned; ``BATCH``: events per read and
    rows per write (1..10,000); ``PRUNE_INTERVAL`` (seconds): how often the mirror prunes;
    ``CLAIM_AFTER`` (seconds): take over events another mirror read but left unacknowledged
    that long (it died); ``NICE`` (0..19): how much ``runworkers`` lowers the mirror process'
    CPU priority.
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
             "CLAIM_AFTER": "Use e.g. 30 (the default)."}
    for name, parse in (
        ("RETENTION", lambda v, at: parse_seconds(key, v, optional=True, where=at)),
        ("BATCH", lambda v, at: parse_whole(key, v, minimum=1, where=at)),
        ("PRUNE_INTERVAL", lambda v, at: parse_seconds(key, v, where=at)),
        ("CLAIM_AFTER", lambda v, at: parse_seconds(key, v, where=at)),
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
    if result["BATCH"] > 10_000:
        raise SettingError(key, f"{label(key)}['BATCH'] is {result['BATCH']!r}; it must be at most 10000.", hints["BATCH"])
    return result
