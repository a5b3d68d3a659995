"""Helpers for testing code that uses django_jobs (see docs/testing.md)."""

from __future__ import annotations

from collections.abc import Iterable

from django_jobs.conf import get_settings


def work_until_empty(queues: Iterable[str] | None = None, *, threads: int = 4, grace: float = 10.0) -> int:
    """Run jobs in this process until ``queues`` have nothing waiting, running or due.

    Returns the number of jobs settled. Jobs scheduled for later keep the call waiting
    until they are due. Uses the real Redis and the real worker code.

    >>> send_welcome.enqueue(user_id=42)  # doctest: +SKIP
    >>> work_until_empty()  # doctest: +SKIP
    1
    """
    from django_jobs.worker.process import WorkerProcess

    worker = WorkerProcess(queues=list(queues or get_settings().queue_names), threads=threads, grace=grace, burst=True)
    worker.run()
    return worker.processed
