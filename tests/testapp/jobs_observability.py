"""Jobs of the correlation, events and metrics tests (tests/integration/test_correlation.py ...)."""

from __future__ import annotations

import logging

from django_jobs import JobContext, job

logger = logging.getLogger("tests.observability")


@job
def checkout(order_id: int) -> str:
    """Log, then enqueue a child job: both must carry the request's correlation id."""
    logger.info("checking out order %s", order_id)
    return receipt.enqueue(order_id).id


@job
def receipt(order_id: int) -> str:
    logger.info("sending the receipt of order %s", order_id)
    return f"receipt {order_id}"


@job(attempts=2, backoff=0, takes_context=True)
def fails_once(context: JobContext) -> int:
    if context.attempt == 1:
        raise RuntimeError("first attempt fails")
    return context.attempt


@job
def boom() -> None:
    raise ValueError("boom")
