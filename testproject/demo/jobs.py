"""The demo's jobs: one of each kind the demo page can enqueue.

Workers import this module at start-up (every installed app's ``jobs.py`` is autodiscovered).
"""

from __future__ import annotations

import asyncio
import logging
import time

from django.tasks import task

from django_jobs import JobContext, job

logger = logging.getLogger(__name__)


@job
def fast(n: int) -> int:
    """Square ``n``: done in well under a millisecond."""
    return n * n


@job(queue="low", timeout=60)
def slow(seconds: float = 5.0) -> str:
    """Sleep ``seconds`` (a stand-in for a report, an export, a slow API)."""
    time.sleep(seconds)
    return f"slept {seconds:g} s"


@job(attempts=3, backoff={"type": "exponential", "delay": 1, "factor": 2, "jitter": False}, takes_context=True)
def flaky(context: JobContext, reason: str = "demo") -> None:
    """Fail every attempt: retried after 1 s and 2 s, then failed for good (3 attempts)."""
    logger.info("flaky job %s, attempt %d: about to fail", context.job_id, context.attempt)
    raise RuntimeError(f"{reason}: failing on purpose (attempt {context.attempt} of 3)")


@job(queue="high")
async def fetch_async(name: str, seconds: float = 0.5) -> dict[str, object]:
    """An ``async def`` job: runs on the worker's event loop, next to other async jobs."""
    await asyncio.sleep(seconds)
    return {"name": name, "waited": seconds}


@task(queue_name="high", priority=10)
def shout(message: str) -> str:
    """A plain ``@django.tasks.task``: our backend runs it like any ``@job``."""
    return message.upper() + "!"


@job
def place_order(order_id: int) -> str:
    """Log, then enqueue a child job: both carry the request's correlation id in their logs."""
    logger.info("placing order %s", order_id)
    return send_receipt.enqueue(order_id).id


@job
def send_receipt(order_id: int) -> None:
    logger.info("sending the receipt of order %s", order_id)
