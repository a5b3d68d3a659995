"""The Redis engine: the only package that talks to Redis.

:func:`get_engine` returns the process-wide :class:`~django_jobs.engine.queue.Engine`,
rebuilt after a fork and when settings change.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

from django.core.signals import setting_changed
from django.dispatch import receiver

from django_jobs import runtime

if TYPE_CHECKING:
    from django_jobs.engine.queue import Engine

_lock = threading.Lock()
_engine: Engine | None = None
_pid: int | None = None


def get_engine() -> Engine:
    """Return the engine of this process, creating it on first use."""
    global _engine, _pid
    engine = _engine
    if engine is not None and _pid == runtime.pid():
        return engine
    with _lock:
        if _engine is None or _pid != runtime.pid():
            from django_jobs.conf import get_settings
            from django_jobs.engine.queue import Engine

            _engine = Engine(get_settings())
            _pid = runtime.pid()
        return _engine


def reset_engine() -> None:
    """Drop the cached engine (settings changed, or tests switched servers)."""
    global _engine
    with _lock:
        if _engine is not None and _pid == runtime.pid():
            _engine.close()
        _engine = None


@receiver(setting_changed)
def _settings_changed(*, setting: str, **kwargs: Any) -> None:
    """Rebuild the engine from the new settings on next use (tests' ``override_settings``)."""
    if setting in ("DJANGO_JOBS", "TASKS", "CACHES"):
        reset_engine()
