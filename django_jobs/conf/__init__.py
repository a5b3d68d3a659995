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

import functools
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings as django_settings
from django.core.signals import setting_changed
from django.dispatch import receiver

from django_jobs.conf.cron import CRON_HINT, parse_cron, parse_cron_expression, parse_schedule
from django_jobs.conf.defaults import (
    CRON_KEYS,
    DEFAULTS,
    HEADER_RE,
    KEEP_KEYS,
    MIRROR_KEYS,
    MISSED_POLICIES,
    QUEUE_NAME_RE,
    QUEUE_OPTION_KEYS,
    SettingError,
    did_you_mean,
    label,
)
from django_jobs.conf.topology import topology_error
from django_jobs.conf.values import (
    parse_backoff,
    parse_dotted_list,
    parse_header,
    parse_keep,
    parse_mirror,
    parse_module_list,
    parse_optional_string,
    parse_optional_whole,
    parse_options,
    parse_prefix,
    parse_queue_limit,
    parse_queue_name,
    parse_queue_options,
    parse_queues,
    parse_redact,
    parse_seconds,
    parse_value,
    parse_whole,
)

__all__ = [
    "CRON_HINT", "CRON_KEYS", "DEFAULTS", "HEADER_RE", "KEEP_KEYS", "MIRROR_KEYS", "MISSED_POLICIES", "QUEUE_NAME_RE",
    "QUEUE_OPTION_KEYS", "JobsSettings", "SettingError", "ambiguity_error", "build_settings", "did_you_mean", "embedded_refusal",
    "get_settings", "label", "parse_backoff", "parse_cron", "parse_cron_expression", "parse_dotted_list", "parse_header",
    "parse_keep", "parse_mirror", "parse_module_list", "parse_optional_string", "parse_optional_whole", "parse_options",
    "parse_prefix", "parse_queue_limit", "parse_queue_name", "parse_queue_options", "parse_queues", "parse_redact",
    "parse_schedule", "parse_seconds", "parse_value", "parse_whole", "user_settings",
]


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
    #: DJANGO_JOBS['EMBEDDED']: None (embedded Redis only with DEBUG), True (always), False (never).
    embedded_choice: bool | None = None
    middleware: list[str] = field(default_factory=lambda: list(DEFAULTS["MIDDLEWARE"]))
    request_id_header: str = "X-Request-ID"
    cron: list[dict[str, Any]] = field(default_factory=list)
    leader_lease_seconds: float = 10.0
    max_jobs_per_child: int | None = None
    max_memory_per_child: int | None = None
    redact_arguments: list[str] = field(default_factory=lambda: list(DEFAULTS["REDACT_ARGUMENTS"]))
    mirror: dict[str, Any] = field(default_factory=lambda: dict(DEFAULTS["MIRROR"]))
    #: DJANGO_JOBS["SENTINEL"] parsed (django_jobs/conf/topology.py), or None.
    sentinel: dict[str, Any] | None = None
    #: DJANGO_JOBS["CLUSTER"]: False, True (REDIS_URL / CACHE_ALIAS names a node) or startup node URLs.
    cluster: bool | list[str] = False
    #: DJANGO_JOBS["ENQUEUE_WAIT"]: (replicas, timeout ms) an enqueue waits for (WAIT), or None.
    enqueue_wait: tuple[int, int] | None = None
    #: DJANGO_JOBS["LEAN_JOB_HASH"]: a new waiting job's hash without 'p' at 0 and 'ws' (docs/configuration.md).
    lean_job_hash: bool = False
    raw: dict[str, Any] = field(default_factory=dict)

    @property
    def queue_names(self) -> list[str]:
        """Configured queue names, ``default`` first."""
        return list(self.queues)

    @property
    def embedded(self) -> bool:
        """True when none of REDIS_URL, CACHE_ALIAS, SENTINEL and CLUSTER says where Redis is."""
        return not self.redis_url and not self.cache_alias and not self.sentinel and not self.cluster

    def active_events(self, queue: str) -> bool:
        """Return whether fetches of ``queue`` write its jobs' "active" events (``ACTIVE_EVENTS``, default True)."""
        # A shard (``hot#2``, engine/keys.py) does as its queue does.
        options = self.queues.get(queue) or self.queues.get(queue.partition("#")[0], {})
        return bool(options.get("ACTIVE_EVENTS", True))

    def keep(self, queue: str, which: str) -> tuple[float, int]:
        """Return (age_seconds, count) retention for ``which`` in ('COMPLETED', 'FAILED')."""
        base = self.keep_completed if which == "COMPLETED" else self.keep_failed
        # A shard (``hot#2``, engine/keys.py) keeps as its queue does.
        options = self.queues.get(queue) or self.queues.get(queue.partition("#")[0], {})
        merged = {**base, **options.get(f"KEEP_{which}", {})}
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


def embedded_refusal(settings: JobsSettings) -> SettingError | None:
    """Return why the embedded Redis must not be used (None when it may, or when Redis is configured).

    It is for development: with ``DEBUG = False`` each container or host would start its own
    Redis and jobs would never reach the workers. ``DJANGO_JOBS['EMBEDDED'] = True`` allows it anyway.
    """
    if not settings.embedded or settings.embedded_choice is True:
        return None
    if settings.embedded_choice is False:
        return SettingError(
            "EMBEDDED", f"{label('EMBEDDED')} is False, but neither REDIS_URL nor CACHE_ALIAS is set.",
            "Set DJANGO_JOBS['REDIS_URL'] (e.g. 'redis://localhost:6379/0') or CACHE_ALIAS.",
        )
    if getattr(django_settings, "DEBUG", False):
        return None
    return SettingError(
        "EMBEDDED",
        "DJANGO_JOBS sets neither REDIS_URL nor CACHE_ALIAS and DEBUG is False: the embedded Redis is for "
        "development (each web and worker process would start its own, and jobs would never reach the workers).",
        "Set DJANGO_JOBS['REDIS_URL'] to a Redis every web and worker host can reach, or DJANGO_JOBS['EMBEDDED'] = True "
        "to use the embedded server anyway (one machine).",
    )


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
    values = {key: parse_value(key, raw.get(key, default)) for key, default in DEFAULTS.items()}
    error = ambiguity_error(values["REDIS_URL"], values["CACHE_ALIAS"])
    if error is not None:
        raise error
    error = topology_error(
        redis_url=values["REDIS_URL"], cache_alias=values["CACHE_ALIAS"], sentinel=values["SENTINEL"],
        cluster=values["CLUSTER"],
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
        embedded_choice=values["EMBEDDED"],
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
        lean_job_hash=values["LEAN_JOB_HASH"],
        raw=raw,
    )


@receiver(setting_changed)
def _clear_cache(*, setting: str, **kwargs: Any) -> None:
    # The engine drops itself on the same signal (django_jobs.engine): conf imports no engine.
    if setting in ("DJANGO_JOBS", "TASKS", "CACHES"):
        get_settings.cache_clear()
