"""Jobs the cron tests fire: each run is written to the ledger with its job id (= its tick)."""

from __future__ import annotations

from django_jobs import JobContext, job
from tests.testapp.jobs import ledger


@job(takes_context=True)
def tick(context: JobContext, name: str) -> str:
    """Record one run of a tick of schedule ``name``: ``tick <pid> <name> <job id>``."""
    ledger("tick", name, context.job_id)
    return context.job_id


@job
def leader_here(tag: str) -> bool:
    """Record ``leader <pid> <tag> <parent pid> <is_leader()>`` from a worker process."""
    import os

    from django_jobs import is_leader

    ledger("leader", tag, os.getppid(), is_leader())
    return is_leader()
