"""Jobs for the flow-control tests (tests/integration/test_flow_control*.py, tests/chaos/test_limits*.py)."""

from __future__ import annotations

import time

from django_jobs import Cancel, RateLimited, job
from tests.testapp.jobs import ledger


@job(takes_context=True)
def progress_until_cancelled(context, steps: int) -> None:
    """Report ``steps`` progress values, then wait (at most 30 s) until asked to stop."""
    for i in range(steps):
        context.set_progress({"done": i + 1, "total": steps})
    ledger("start", context.job_id)
    deadline = time.monotonic() + 30
    while not context.cancel_requested:
        if time.monotonic() > deadline:
            raise RuntimeError("never cancelled")
        time.sleep(0.01)
    raise Cancel("stopped on request")


@job(takes_context=True)
def report(context, value: object) -> str:
    """Report ``value`` as progress and return."""
    context.set_progress(value)
    return "done"


@job(attempts=1)
def limited_once(tag: str, retry_after: float, backoff: str = "job") -> str:
    """Raise RateLimited on the first run of ``tag`` (counted in the ledger), then succeed."""
    ledger("run", tag)
    from tests.testapp.jobs import calls_in_process

    if sum(1 for event, parts in calls_in_process if event == "run" and parts == (tag,)) == 1:
        raise RateLimited(retry_after=retry_after, backoff=backoff)
    return tag


@job
def noop(tag: str) -> str:
    return tag


@job(unique=True)
def sync_account(account_id: int, full: bool = False) -> int:
    """Unique by all its arguments (job name + arguments)."""
    ledger("sync", account_id)
    return account_id


@job(unique_key="customer:{customer_id}", unique_until="finish", attempts=1)
def charge(customer_id: int, amount: int) -> int:
    """Unique per customer while waiting, scheduled or running; fails when amount < 0."""
    if amount < 0:
        raise ValueError("negative amount")
    return amount


@job(unique_key=lambda doc_id, version: f"doc:{doc_id}", unique_mode="replace")
def reindex(doc_id: int, version: int) -> int:
    """Debounced: the last enqueue's arguments win while the job waits."""
    ledger("reindex", doc_id, version)
    return version


@job(unique_key="report:{name}", unique_for=60)
def throttled_report(name: str) -> str:
    """At most one per name per minute."""
    return name


@job(limit_key="customer:{customer_id}", limit_concurrency=2)
def per_customer(customer_id: int, tag: str, seconds: float) -> str:
    """At most 2 at once per customer, across all workers."""
    ledger("start", tag)
    time.sleep(seconds)
    ledger("end", tag)
    return tag


@job(limit_key=lambda endpoint: f"api:{endpoint}", limit_rate="2/s")
def call_api(endpoint: str) -> str:
    """At most 2 starts per second per endpoint."""
    return endpoint


@job(unique_key="slow:{tag}", unique_until="finish")
def unique_slow(tag: str, seconds: float) -> str:
    """Unique while waiting or running; records its start and end in the ledger."""
    ledger("start", tag)
    time.sleep(seconds)
    ledger("end", tag)
    return tag
