"""Jobs the test suite runs. Runs are recorded in a ledger file outside Redis."""

from __future__ import annotations

import asyncio
import os
import time

from django_jobs import Cancel, Retry, job
from django_jobs.compat import task

calls_in_process: list[tuple[str, object]] = []


def ledger(event: str, *parts: object) -> None:
    """Append one line to the ledger file ($DJJ_LEDGER), atomically (O_APPEND, one write)."""
    calls_in_process.append((event, parts))
    path = os.environ.get("DJJ_LEDGER")
    if path:
        line = "\t".join([event, str(os.getpid()), *map(str, parts)]) + "\n"
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, line.encode())
        finally:
            os.close(fd)


@job
def add(a: int, b: int) -> int:
    return a + b


@job(queue="high")
def echo(value: object) -> object:
    return value


@job
def record(tag: str) -> str:
    ledger("run", tag)
    return tag


@job
async def async_add(a: int, b: int) -> int:
    await asyncio.sleep(0.001)
    return a + b


@job(attempts=3, backoff="none")
def flaky(tag: str, fail_times: int) -> str:
    """Fail the first ``fail_times`` runs of ``tag`` (counted in the ledger file)."""
    path = os.environ["DJJ_LEDGER"]
    runs = 0
    if os.path.exists(path):
        with open(path) as f:
            runs = sum(1 for line in f if line.startswith("flaky\t") and line.rstrip("\n").endswith("\t" + tag))
    ledger("flaky", tag)
    if runs < fail_times:
        raise RuntimeError(f"flaky failure {runs + 1}")
    return f"ok after {runs + 1}"


@job(attempts=2, backoff=0)
def always_fails() -> None:
    raise ValueError("this job always fails")


@job
def sleeper(tag: str, seconds: float) -> str:
    ledger("start", tag)
    time.sleep(seconds)
    ledger("end", tag)
    return tag


@job(takes_context=True)
def stoppable(context, tag: str, seconds: float) -> str:
    """Sleep up to ``seconds``, stopping (cancelled) as soon as a cancel is requested."""
    ledger("start", tag)
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if context.cancel_requested:
            raise Cancel("stopped on request")
        time.sleep(0.05)
    ledger("end", tag)
    return tag


@job(timeout=0.5)
def too_slow(seconds: float) -> str:
    time.sleep(seconds)
    return "finished"


@job(attempts=3)
def retry_later(tag: str) -> str:
    ledger("retry_later", tag)
    with open(os.environ["DJJ_LEDGER"]) as f:
        if sum(1 for line in f if line.startswith("retry_later\t")) < 2:
            raise Retry(delay=0.2)
    return "done"


@job
def returns_object() -> object:
    return object()


@task(priority=5)
def plain_task(x: int) -> int:
    """A plain django.tasks task, run by django_jobs through the TASKS backend."""
    return x * 2


@task(takes_context=True)
def context_task(context, x: int) -> dict:
    return {"attempt": context.attempt, "id": context.task_result.id, "x": x}


@job
def enqueue_child(tag: str) -> str:
    child = record.enqueue(tag + "-child")
    return child.id
