"""The registry of jobs this process can run, by name.

Every ``@job`` / backend task registers itself when its module is imported. Workers
look payload names up here and never import anything named in data.
"""

from __future__ import annotations

import threading
from importlib import import_module
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from django_jobs.tasks import JobTask

_registry: dict[str, JobTask] = {}
_lock = threading.Lock()
_discovered = False


def register(task: JobTask) -> None:
    """Register ``task`` under its module path (the first definition wins, except on reload)."""
    name = task.module_path
    existing = _registry.get(name)
    if existing is None or existing.func is not task.func:
        _registry[name] = task


def is_registered(task: JobTask) -> bool:
    """Return True when ``task``'s function is the registered one (``task`` is a copy made by ``using()``)."""
    existing = _registry.get(task.module_path)
    return existing is not None and existing.func is task.func


def get(name: str) -> JobTask | None:
    """Return the registered job ``name``, importing the apps' job modules once if needed."""
    task = _registry.get(name)
    if task is None and not _discovered:
        autodiscover()
        task = _registry.get(name)
    return task


def all_jobs() -> dict[str, JobTask]:
    """Return a copy of the registry."""
    return dict(_registry)


def autodiscover() -> None:
    """Import each installed app's ``jobs``/``tasks`` modules and DJANGO_JOBS['IMPORT_MODULES']."""
    global _discovered
    with _lock:
        if _discovered:
            return
        from django.utils.module_loading import autodiscover_modules

        from django_jobs.conf import get_settings

        settings = get_settings()
        for module in settings.autodiscover:
            autodiscover_modules(module)
        for path in settings.import_modules:
            import_module(path)
        _discovered = True
