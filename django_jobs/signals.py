"""Django signals sent where a job's life happens (see docs/observability.md).

Every signal's ``sender`` is the job (the :class:`~django_jobs.tasks.JobTask`), so a
receiver can listen to one job only (``job_failed.connect(alert, sender=send_invoice)``).
Every one carries ``task_result``, the job's :class:`~django_jobs.tasks.JobResult` as that
process sees it. They are sent in the process where the event happens: ``job_enqueued`` in
the enqueuing process (web, shell, worker), the others in the worker that runs the job.
Receivers run inline: keep them fast. With no receiver connected nothing is built or sent.

=====================  ==========================================================
``job_enqueued``       ``task_result``
``job_started``        ``task_result`` (state ``active``)
``job_succeeded``      ``task_result``, ``return_value``, ``duration`` (seconds)
``job_failed``         ``task_result``, ``exception``, ``duration`` (final failure or cancellation:
                       ``task_result.state`` is ``failed`` or ``cancelled``)
``job_retrying``       ``task_result``, ``exception``, ``duration``, ``delay`` (seconds until the retry)
=====================  ==========================================================

Django's own ``django.tasks.signals`` (``task_enqueued``, ``task_started``,
``task_finished``) are sent too.
"""

from __future__ import annotations

import logging
from typing import Any

from django.dispatch import Signal

from django_jobs.compat import task_enqueued
from django_jobs.tasks import JobResult

__all__ = ["job_enqueued", "job_failed", "job_retrying", "job_started", "job_succeeded"]

job_enqueued = Signal()
job_started = Signal()
job_succeeded = Signal()
job_failed = Signal()
job_retrying = Signal()

logger = logging.getLogger("django_jobs.enqueue")


def _on_task_enqueued(sender: Any, task_result: Any, **kwargs: Any) -> None:
    """Forward django.tasks' ``task_enqueued`` for our jobs: the debug log line and ``job_enqueued``."""
    if not isinstance(task_result, JobResult):
        return
    if logger.isEnabledFor(logging.DEBUG):
        logger.debug(
            "Job %s %s enqueued on %r", task_result.task.module_path, task_result.id, task_result.queue,
            extra={"action": "job_enqueued", "job_id": task_result.id, "job_name": task_result.task.module_path,
                   "queue": task_result.queue, "parent_id": task_result.parent_id},
        )
    if job_enqueued.receivers:
        job_enqueued.send(task_result.task, task_result=task_result)


#: The receivers of ``task_enqueued`` that do nothing unless DEBUG logging is on: Django's log
#: line (``django.tasks``; the backport's ``django_tasks``) and :func:`_on_task_enqueued`.
_QUIET_RECEIVERS = frozenset({
    ("django.tasks.signals", "log_task_enqueued"), ("django_tasks.signals", "log_task_enqueued"),
    (__name__, "_on_task_enqueued"),
})
_QUIET_LOGGERS = (logger, logging.getLogger("django.tasks"), logging.getLogger("django_tasks"))


# Per (sender, task_enqueued's receivers as connected): whether one of them would act.
_needed: dict[tuple[Any, ...], bool] = {}


def enqueued_signal_needed(sender: Any) -> bool:
    """Return whether sending ``task_enqueued`` from ``sender`` would do anything (asked once per enqueue call).

    False only when every receiver connected is one of :data:`_QUIET_RECEIVERS`, none of
    their loggers logs DEBUG and ``job_enqueued`` has no receiver: then the backend skips the
    send (and its per-job dispatch) for the jobs of that call. Any other receiver, or a Django
    whose signal does not list its receivers as 5.0+ does, sends as always.
    """
    if job_enqueued.receivers:
        return True
    for log in _QUIET_LOGGERS:  # (a loop, not any() of a generator: asked on every enqueue)
        if log.isEnabledFor(logging.DEBUG):
            return True
    # Connecting or disconnecting a receiver changes this key (a receiver that died only makes a send).
    key = (sender, *[entry[0] for entry in task_enqueued.receivers])
    found = _needed.get(key)
    if found is None:
        try:
            sync, async_ = task_enqueued._live_receivers(sender)
        except (AttributeError, TypeError, ValueError):
            found = True
        else:
            found = any(
                (getattr(r, "__module__", None), getattr(r, "__name__", None)) not in _QUIET_RECEIVERS for r in (*sync, *async_)
            )
        if len(_needed) > 64:
            _needed.clear()
        _needed[key] = found
    return found


def connect() -> None:
    """Connect the forwarder of ``task_enqueued`` (idempotent; done when this module is imported)."""
    task_enqueued.connect(_on_task_enqueued, dispatch_uid="django_jobs.signals.enqueued")


connect()
