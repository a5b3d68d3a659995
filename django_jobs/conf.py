"""Settings: one ``DJANGO_JOBS`` dict, read through :func:`get_settings`.

Every key and its default is documented in ``docs/configuration.md``.
Settings are never read at import time; the result is cached and cleared on
Django's ``setting_changed`` signal.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings as django_settings
from django.core.signals import setting_changed
from django.dispatch import receiver

#: Default values of every DJANGO_JOBS key.
DEFAULTS: dict[str, Any] = {
    "REDIS_URL": None,
    "CACHE_ALIAS": None,
    "REDIS_OPTIONS": {},
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
}

#: Options a queue accepts in DJANGO_JOBS["QUEUES"][name].
QUEUE_OPTION_KEYS = frozenset(
    {"PRIORITY", "KEEP_COMPLETED", "KEEP_FAILED", "DEFAULT_ATTEMPTS", "DEFAULT_TIMEOUT"}
)


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
    raw: dict[str, Any] = field(default_factory=dict)

    @property
    def queue_names(self) -> list[str]:
        """Configured queue names, ``default`` first."""
        return list(self.queues)

    @property
    def embedded(self) -> bool:
        """True when neither REDIS_URL nor CACHE_ALIAS is set."""
        return not self.redis_url and not self.cache_alias

    def keep(self, queue: str, which: str) -> tuple[int, int]:
        """Return (age_seconds, count) retention for ``which`` in ('COMPLETED', 'FAILED')."""
        base = self.keep_completed if which == "COMPLETED" else self.keep_failed
        merged = {**base, **self.queues.get(queue, {}).get(f"KEEP_{which}", {})}
        return int(merged.get("AGE", 0)), int(merged.get("COUNT", 0))


def user_settings() -> dict[str, Any]:
    """Return the raw DJANGO_JOBS dict from Django settings (may be empty)."""
    value = getattr(django_settings, "DJANGO_JOBS", None) or {}
    return dict(value)


@functools.cache
def get_settings() -> JobsSettings:
    """Return the resolved settings (cached; cleared when settings change)."""
    raw = user_settings()
    merged = {**DEFAULTS, **{k: v for k, v in raw.items() if k in DEFAULTS}}
    queues = {"default": {}}
    for name, options in (merged["QUEUES"] or {}).items():
        queues[name] = dict(options or {})
    return JobsSettings(
        redis_url=merged["REDIS_URL"],
        cache_alias=merged["CACHE_ALIAS"],
        redis_options=dict(merged["REDIS_OPTIONS"] or {}),
        prefix=str(merged["PREFIX"]),
        embedded_dir=merged["EMBEDDED_DIR"],
        queues=queues,
        default_attempts=int(merged["DEFAULT_ATTEMPTS"]),
        default_backoff=merged["DEFAULT_BACKOFF"],
        default_timeout=merged["DEFAULT_TIMEOUT"],
        lease_seconds=float(merged["LEASE_SECONDS"]),
        max_recoveries=int(merged["MAX_RECOVERIES"]),
        recovery_interval=float(merged["RECOVERY_INTERVAL"]),
        keep_completed={**DEFAULTS["KEEP_COMPLETED"], **(merged["KEEP_COMPLETED"] or {})},
        keep_failed={**DEFAULTS["KEEP_FAILED"], **(merged["KEEP_FAILED"] or {})},
        events_maxlen=int(merged["EVENTS_MAXLEN"]),
        import_modules=list(merged["IMPORT_MODULES"] or []),
        autodiscover=list(merged["AUTODISCOVER"] or []),
        max_payload_bytes=int(merged["MAX_PAYLOAD_BYTES"]),
        raw=raw,
    )


@receiver(setting_changed)
def _clear_cache(*, setting: str, **kwargs: Any) -> None:
    if setting in ("DJANGO_JOBS", "TASKS", "CACHES"):
        get_settings.cache_clear()
        from django_jobs.engine import reset_engine

        reset_engine()
