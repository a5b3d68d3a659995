"""The DJANGO_JOBS schema: every key's default, the keys of nested dicts, and :class:`SettingError`.

Imports nothing of django_jobs but :mod:`django_jobs.exceptions` (no engine, no Redis).
"""

from __future__ import annotations

import difflib
import math
import re
from typing import Any

from django_jobs.exceptions import ConfigurationError

#: Default values of every DJANGO_JOBS key.
DEFAULTS: dict[str, Any] = {
    "REDIS_URL": None,
    "CACHE_ALIAS": None,
    "REDIS_OPTIONS": {},
    "SENTINEL": None,
    "CLUSTER": None,
    "ENQUEUE_WAIT": None,
    "LEAN_JOB_HASH": False,
    "PREFIX": "djj",
    "EMBEDDED_DIR": None,
    "EMBEDDED_BINARY": None,
    "EMBEDDED": None,
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
    "MIDDLEWARE": ["django_jobs.middleware.JobCorrelationMiddleware", "django_jobs.middleware.JobLoggingMiddleware"],
    "REQUEST_ID_HEADER": "X-Request-ID",
    "CRON": [],
    "LEADER_LEASE_SECONDS": 10.0,
    "MAX_JOBS_PER_CHILD": None,
    "MAX_MEMORY_PER_CHILD": None,
    "REDACT_ARGUMENTS": ["password", "passwd", "secret", "token", "api_key", "apikey", "authorization"],
    "MIRROR": {"ENABLED": True, "RETENTION": 7 * 24 * 3600, "BATCH": 500, "PRUNE_INTERVAL": 3600, "CLAIM_AFTER": 30, "NICE": 10,
               "MAX_LAG": 1_000_000, "HOLD": 600, "LINGER": 0.1},
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
    # One hot queue spread over several hash tags (docs/scaling.md#sharded-queues).
    | {"SHARDS"}
    # False: its fetches write no "active" event unless a mirror holds the queue (docs/architecture.md#the-events-stream).
    | {"ACTIVE_EVENTS"}
)
#: Most shards one queue may have (each is a full key set; workers fetch from each in turn).
MAX_SHARDS = 1024

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


def number(value: Any) -> float | None:
    """Return ``value`` as a finite number (numeric strings accepted), or None."""
    if isinstance(value, bool):
        return None
    try:
        if isinstance(value, (int, float)):
            result = float(value)
        elif isinstance(value, str):
            result = float(value.strip())
        else:
            return None
    except (ValueError, OverflowError):  # "ten", 10**400
        return None
    return result if math.isfinite(result) else None


#: Keys DJANGO_JOBS["MIRROR"] accepts.
MIRROR_KEYS = ("ENABLED", "RETENTION", "BATCH", "PRUNE_INTERVAL", "CLAIM_AFTER", "NICE", "MAX_LAG", "HOLD", "LINGER")

#: What a request id header name may be (an HTTP token).
HEADER_RE = re.compile(r"[A-Za-z0-9!#$%&'*+.^_`|~-]+")
