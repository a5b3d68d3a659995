"""The registry of jobs this process can run, by name, and of the schedules declared in code.

Every ``@job`` / backend task registers itself when its module is imported. Workers
look payload names up here and never import anything named in data. This module knows a job
only as a :class:`RegisteredJob` (a name and a function), so it imports nothing of the job
API; :func:`django_jobs.tasks.registered_job` and :func:`django_jobs.tasks.registered_jobs`
hand out the :class:`~django_jobs.tasks.JobTask` objects it holds. ``@job(cron=...)``
declares its schedule here (:func:`declare`); :mod:`django_jobs.scheduler` runs them.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from importlib import import_module
from typing import Any, Protocol


class RegisteredJob(Protocol):
    """What the registry needs of a job: its name and its function (a ``JobTask`` is one)."""

    @property
    def module_path(self) -> str: ...

    @property
    def func(self) -> Callable[..., Any]: ...


_registry: dict[str, RegisteredJob] = {}
_lock = threading.Lock()
_discovered = False


def register(task: RegisteredJob) -> None:
    """Register ``task`` under its module path (the first definition wins, except on reload)."""
    name = task.module_path
    existing = _registry.get(name)
    if existing is None or existing.func is not task.func:
        _registry[name] = task


def is_registered(task: RegisteredJob) -> bool:
    """Return True when ``task``'s function is the registered one (``task`` is a copy made by ``using()``)."""
    existing = _registry.get(task.module_path)
    return existing is not None and existing.func is task.func


def get(name: str) -> RegisteredJob | None:
    """Return the registered job ``name``, importing the apps' job modules once if needed."""
    task = _registry.get(name)
    if task is None and not _discovered:
        autodiscover()
        task = _registry.get(name)
    return task


def all_jobs() -> dict[str, RegisteredJob]:
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


#: Schedules declared in code (:func:`declare`), by name.
_declared: dict[str, dict[str, Any]] = {}
#: Why an ``@job(cron=...)`` was left out, by job (reported by ``manage.py check`` as E020).
_declare_errors: dict[str, Any] = {}


def declare(job: str, cron: str | float | dict[str, Any]) -> None:
    """Declare a schedule for job ``job`` in code: what ``@job(cron=...)`` is meant to call.

    ``cron`` is a cron expression, a number of seconds (``EVERY``) or a dict of the keys of a
    ``DJANGO_JOBS["CRON"]`` entry without ``JOB`` (``NAME`` defaults to the job's name). A
    schedule of the same ``NAME`` in the settings wins.

    An invalid schedule does not raise (a job is declared at import time, often by the URLconf):
    ``manage.py check`` reports it (``django_jobs.E020``), ``runworkers`` refuses to start, and
    the schedule is left out. See :func:`declaration_errors`.
    """
    from django_jobs.conf import SettingError, parse_schedule

    name = job.rsplit(".", 1)[-1].replace("_", "-")
    if isinstance(cron, dict):
        entry = {"NAME": name, **cron, "JOB": job}
    elif isinstance(cron, str):
        entry = {"NAME": name, "JOB": job, "SCHEDULE": cron}
    else:
        entry = {"NAME": name, "JOB": job, "EVERY": cron}
    try:
        parsed = parse_schedule(0, entry)
    except SettingError as exc:
        _declare_errors[job] = SettingError(exc.setting, f"@job(cron=...) of {job!r}: {exc.problem}", exc.hint)
        return
    _declare_errors.pop(job, None)
    _declared[parsed["NAME"]] = parsed


def declaration_errors() -> list[Any]:
    """Return the :class:`~django_jobs.conf.SettingError` of each invalid ``@job(cron=...)``."""
    return list(_declare_errors.values())
