"""The jobs that the examples in docs/*.md declare and run.

The documentation calls this module ``myapp/jobs.py``: tests/integration/test_docs.py makes
``import myapp.jobs`` return this module, and checks that every ```` ```python jobs ````
block of the docs is code from this file, line for line. Edit a job here and in its doc
block together.

Workers of the test suite import this module (``IMPORT_MODULES`` in tests/settings.py), so
every queue named here must be configured there (``default``, ``high``, ``low``).
"""

from __future__ import annotations

import asyncio
import time

from django_jobs import Cancel, JobContext, RateLimited, Retry, job
from django_jobs.compat import task

# -- quickstart.md ---------------------------------------------------------------------------


# myapp/jobs.py
@job(queue="high", attempts=5, backoff="exponential", timeout=60)
def send_welcome(user_id: int) -> str:
    # ... look the user up, render and send the e-mail ...
    return f"welcome mail sent to user {user_id}"


# -- jobs.md ---------------------------------------------------------------------------------


@job
def add(a: int, b: int) -> int:
    return a + b


@job(attempts=5, backoff="exponential")  # waits 0.5-1 s, 1-2 s, 2-4 s, 4-8 s
def sync_account(account_id: int) -> None: ...


@job(attempts=3, backoff=30)  # 30 s between attempts
def post_invoice(invoice_id: int) -> None: ...


@job(attempts=4, backoff={"type": "exponential", "delay": 5, "factor": 3, "max": 600, "jitter": False})
def push_to_crm(contact_id: int) -> None: ...  # 5 s, 15 s, 45 s


@job(attempts=3, backoff=lambda attempt: 10 * attempt)  # 10 s, 20 s
def reindex(document_id: int) -> None: ...


@job(queue="low", priority=-10, timeout=300, keep_result=7 * 24 * 3600)
def export_orders(day: str) -> dict:
    return {"day": day, "rows": 0}


@job(attempts=2, backoff=0)
def import_file(path: str) -> int:
    with open(path) as f:  # fails: the examples pass a path that does not exist
        return sum(1 for _ in f)


@job(takes_context=True, attempts=3)
def fetch_rates(context: JobContext, currency: str) -> dict:
    if context.attempt == 1:
        # e.g. the rates API answered 503: try again shortly (counts as an attempt)
        raise Retry(delay=0.1)
    return {"currency": currency, "attempt": context.attempt, "job_id": context.job_id}


@job(takes_context=True, queue="low")
def build_report(context: JobContext, report_id: int, steps: int = 600) -> int:
    for step in range(steps):
        if context.cancel_requested:
            raise Cancel(f"Report {report_id} cancelled at step {step}.")
        time.sleep(0.05)  # ... one slice of the work ...
    return steps


@job(timeout=0.5)
async def wait_for_partner(seconds: float) -> str:
    await asyncio.sleep(seconds)  # stands in for a slow HTTP call
    return "answered"


@job
def place_order(order_id: int) -> str:
    receipt = send_receipt.enqueue(order_id)  # a child job: parent_id is this job's id
    return receipt.id


@job
def send_receipt(order_id: int) -> str:
    return f"receipt for order {order_id}"


# -- django-tasks.md -------------------------------------------------------------------------


@task(priority=10, queue_name="high")
def resize_image(image_id: int, width: int) -> str:
    return f"image {image_id} resized to {width}px"


@task(takes_context=True, attempts=3, backoff=0)
def sync_contact(context, contact_id: int) -> dict:
    return {"contact_id": contact_id, "attempt": context.attempt, "job_id": context.task_result.id}


@task
async def notify_webhook(event: str) -> str:
    await asyncio.sleep(0)  # ... await an async HTTP client ...
    return f"sent {event}"


# -- workers.md ------------------------------------------------------------------------------


@job(isolated=True, timeout=30, attempts=2)
def render_invoice(invoice_id: int) -> str:
    import os

    return f"invoice {invoice_id} rendered by process {os.getpid()}"


@task(isolated=True, timeout=60)
def crunch(numbers: list[int]) -> int:
    return sum(n * n for n in numbers)


# -- flow-control.md -------------------------------------------------------------------------


@job(unique=True)
def refresh_account(account_id: int) -> int:
    return account_id


@job(unique_key="doc:{doc_id}", unique_mode="replace")
def reindex_document(doc_id: int, version: int) -> str:
    return f"document {doc_id} indexed at version {version}"


@job(unique_key="digest:{user_id}", unique_for=3600)
def send_digest(user_id: int) -> str:
    return f"digest sent to user {user_id}"


@job(limit_key="customer:{customer_id}", limit_concurrency=2, limit_rate="10/s")
def charge_customer(customer_id: int, cents: int) -> int:
    return cents


@job(takes_context=True)
def import_rows(context: JobContext, rows: int) -> int:
    for done in range(1, rows + 1):
        # ... import one row ...
        if done % 100 == 0 or done == rows:
            context.set_progress({"done": done, "total": rows})
    return rows


#: Stands in for a partner API in the examples: how many more calls it answers with HTTP 429.
PARTNER_REFUSALS = {"left": 0}


@job
def fetch_exchange_rates(currency: str) -> str:
    if PARTNER_REFUSALS["left"] > 0:  # the partner said "429 Too Many Requests, retry in 1 s"
        PARTNER_REFUSALS["left"] -= 1
        raise RateLimited(retry_after=1, backoff="queue")
    return f"rates for {currency} fetched"
