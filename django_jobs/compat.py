"""The one place that imports Django's task framework: ``django.tasks`` or its backport.

Django 6.0 ships ``django.tasks``. Django 5.2 LTS does not; the ``django-tasks`` package
(import name ``django_tasks``) backports it, and ``pip install "django-jobs-redis[django52]"``
installs it. Every other module of django_jobs imports these names from here, never from
``django.tasks`` or ``django_tasks`` directly, so one code base runs on Django 5.2, 6.0 and 6.1.

What the backport (and Django 6.0) differ in, and how this module evens it out:

- Two exception names: the backport's ``InvalidTaskError`` and ``InvalidTaskBackendError`` are
  exported here as Django's ``InvalidTask`` and ``InvalidTaskBackend``.
- Django 6.0's ``@task`` takes no keyword arguments beyond its own four; 6.1 and the backport
  pass the others (``attempts=3``...) to the backend's task class. On Django 6.0 :func:`task`
  here is 6.1's behaviour; Django's own ``django.tasks.task`` still refuses them.
- Dotted paths of the built-in backends start with ``django_tasks.`` instead of
  ``django.tasks.``: use :data:`IMMEDIATE_BACKEND` and :data:`DUMMY_BACKEND`.
- The backport registers its system check (every ``TASKS`` backend's ``check()``) and its
  signal receivers (the ``Task ... state=...`` log lines, the reset of the backends when
  ``TASKS`` changes in tests) when its app ``django_tasks`` is installed. Django 6 does both when
  ``django.tasks`` is imported. This module imports the backport's ``checks`` and ``signals``
  modules, so ``"django_tasks"`` does not need to be in ``INSTALLED_APPS`` (it may be).

Your own code can import from here too, to run on both Django versions::

    from django_jobs.compat import TaskResultStatus, task
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import django

#: ``True`` when Django itself provides ``django.tasks`` (Django >= 6.0).
DJANGO_HAS_TASKS = django.VERSION >= (6, 0)

#: The name of the package that provides the task framework: ``django.tasks`` or ``django_tasks``.
TASKS_MODULE = "django.tasks" if DJANGO_HAS_TASKS else "django_tasks"

#: Dotted paths of the task framework's built-in backends, for ``TASKS`` settings.
IMMEDIATE_BACKEND = f"{TASKS_MODULE}.backends.immediate.ImmediateBackend"
DUMMY_BACKEND = f"{TASKS_MODULE}.backends.dummy.DummyBackend"

BACKPORT_MISSING = (
    f"django_jobs on Django {django.get_version()} needs the django-tasks backport of django.tasks "
    "(Django 6.0 and later include it). Install it with: "
    "pip install \"django-jobs-redis[django52]\" (or pip install django-tasks), or upgrade to Django 6."
)

if TYPE_CHECKING or DJANGO_HAS_TASKS:
    from django.tasks import (
        DEFAULT_TASK_BACKEND_ALIAS,
        DEFAULT_TASK_QUEUE_NAME,
        Task,
        TaskContext,
        TaskResult,
        TaskResultStatus,
        default_task_backend,
        signals,
        task,
        task_backends,
    )
    from django.tasks.backends.base import BaseTaskBackend
    from django.tasks.base import TASK_REFRESH_ATTRS, TaskError
    from django.tasks.exceptions import (
        InvalidTask,
        InvalidTaskBackend,
        TaskResultDoesNotExist,
        TaskResultMismatch,
    )
    from django.tasks.signals import task_enqueued, task_finished, task_started
    from django.utils.json import normalize_json
else:  # Django 5.2: the django-tasks backport
    try:
        import django_tasks  # noqa: F401
    except ImportError as exc:  # pragma: no cover - exercised by the packaging test on Django 5.2
        raise ImportError(BACKPORT_MISSING) from exc
    from django_tasks import (
        DEFAULT_TASK_BACKEND_ALIAS,
        DEFAULT_TASK_QUEUE_NAME,
        TaskContext,
        TaskResult,
        TaskResultStatus,
        default_task_backend,
        signals,
        task,
        task_backends,
    )
    from django_tasks import (
        checks as _backport_checks,  # noqa: F401 - registers the TASKS backends' system check
    )
    from django_tasks.backends.base import BaseTaskBackend
    from django_tasks.base import TASK_REFRESH_ATTRS, Task, TaskError
    from django_tasks.exceptions import (
        InvalidTaskBackendError as InvalidTaskBackend,
    )
    from django_tasks.exceptions import (
        InvalidTaskError as InvalidTask,
    )
    from django_tasks.exceptions import (
        TaskResultDoesNotExist,
        TaskResultMismatch,
    )
    from django_tasks.signals import task_enqueued, task_finished, task_started
    from django_tasks.utils import normalize_json

if not TYPE_CHECKING and DJANGO_HAS_TASKS and django.VERSION < (6, 1):
    from django.tasks.base import DEFAULT_TASK_PRIORITY

    _django_task = task

    def task(function=None, **kwargs):  # Django 6.1's signature; mypy checks the 6.1 one
        """Django 6.1's ``@task`` on Django 6.0: extra keyword arguments go to the backend's task class.

        Django 6.0's ``@task`` accepts only ``priority``, ``queue_name``, ``backend`` and
        ``takes_context``; 6.1 and the backport pass any other keyword (``attempts=3``...) to
        the backend's ``task_class``, which is how ``@task`` takes django_jobs' options.
        """
        own = {name: kwargs.pop(name) for name in ("priority", "queue_name", "backend", "takes_context") if name in kwargs}
        if not kwargs:
            return _django_task(function, **own)
        if "run_after" in kwargs:
            raise TypeError(
                "run_after cannot be defined statically with the @task decorator. "
                "Use .using(run_after=...) to set it dynamically."
            )
        backend = own.get("backend", DEFAULT_TASK_BACKEND_ALIAS)

        def wrapper(func):
            return task_backends[backend].task_class(
                func=func,
                priority=own.get("priority", DEFAULT_TASK_PRIORITY),
                queue_name=own.get("queue_name", DEFAULT_TASK_QUEUE_NAME),
                backend=backend,
                takes_context=own.get("takes_context", False),
                run_after=None,
                **kwargs,
            )

        return wrapper(function) if function else wrapper

__all__ = [
    "BACKPORT_MISSING",
    "DEFAULT_TASK_BACKEND_ALIAS",
    "DEFAULT_TASK_QUEUE_NAME",
    "DJANGO_HAS_TASKS",
    "DUMMY_BACKEND",
    "IMMEDIATE_BACKEND",
    "TASKS_MODULE",
    "TASK_REFRESH_ATTRS",
    "BaseTaskBackend",
    "InvalidTask",
    "InvalidTaskBackend",
    "Task",
    "TaskContext",
    "TaskError",
    "TaskResult",
    "TaskResultDoesNotExist",
    "TaskResultMismatch",
    "TaskResultStatus",
    "default_task_backend",
    "normalize_json",
    "signals",
    "task",
    "task_backends",
    "task_enqueued",
    "task_finished",
    "task_started",
]
