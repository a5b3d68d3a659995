"""The mirror process of ``runworkers`` (and of ``manage.py jobs mirror``)."""

from __future__ import annotations

import logging
import os
import signal
from collections.abc import Iterable

from django.db import connections, router

from django_jobs.conf import get_settings
from django_jobs.mirror.consumer import Mirror
from django_jobs.mirror.rows import _model

logger = logging.getLogger("django_jobs.mirror")

#: Signals that stop the mirror process (the supervisor sends SIGTERM, then SIGUSR1).
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGUSR1, signal.SIGUSR2)


class _StopFlag:
    """Set by a signal handler; a plain attribute, so the handler never takes a lock."""

    def __init__(self) -> None:
        self.stop = False

    def __call__(self) -> bool:
        return self.stop

    def handler(self, signum: int, frame: object) -> None:
        self.stop = True


def run_mirror(queues: Iterable[str] | None = None, *, parent_pid: int | None = None) -> int:
    """Run the mirror in this process until SIGTERM/SIGINT (or the parent dies); returns 0.

    The ``runworkers`` supervisor forks one such process next to its workers (signals
    blocked across the fork; unblocked here once handled); ``manage.py jobs mirror`` runs it
    in the foreground.
    """
    flag = _StopFlag()
    for sig in STOP_SIGNALS:
        signal.signal(sig, flag.handler)
    if parent_pid is not None:
        from django_jobs.worker.process import die_with_parent

        die_with_parent(signal.SIGTERM)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)
    if parent_pid is not None and os.getppid() != parent_pid:
        return 0
    mirror = Mirror(queues)
    logger.info("Mirror %s ready: queues %s", mirror.consumer, ",".join(mirror.queues), extra={"action": "mirror_ready"})

    def should_stop() -> bool:
        return flag.stop or (parent_pid is not None and os.getppid() != parent_pid)

    mirror.run(should_stop)
    return 0


def run_mirror_process(*, parent_pid: int) -> int:
    """Entry point of the mirror process forked by the ``runworkers`` supervisor."""
    # Niced (MIRROR["NICE"], 10): when jobs saturate the CPU the workers come first and the
    # mirror catches up after the burst; below saturation it keeps up (bench --mirror:
    # cost to a saturated drain 6-7 %, not niced 21 %; lag p99 0.4-0.5 s at 1,000 jobs/s).
    os.nice(get_settings().mirror["NICE"])
    return run_mirror(parent_pid=parent_pid)


def mirror_available(using: str | None = None) -> bool:
    """Return True when the mirror's table exists (``manage.py migrate`` ran)."""
    model = _model()
    using = using or router.db_for_write(model)
    try:
        return model._meta.db_table in connections[using].introspection.table_names()
    except Exception:  # noqa: BLE001 - a database that cannot be reached now may be later
        return True

