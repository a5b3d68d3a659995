"""The sample app's jobs."""

from __future__ import annotations

import asyncio

from django.contrib.auth import get_user_model

from django_jobs import JobContext, job

#: Mails "sent" by send_welcome in this process.
outbox: list[str] = []


@job(queue="high", attempts=3)
def send_welcome(user_id: int) -> str:
    user = get_user_model().objects.get(pk=user_id)
    message = f"Welcome, {user.username}!"
    outbox.append(message)
    return message


@job(queue="low")
def remind_to_verify(user_id: int) -> str:
    return f"reminder for user {user_id}"


@job(attempts=3, backoff=60, takes_context=True)
def sync_to_crm(context: JobContext, user_id: int) -> dict:
    if context.attempt < 3:
        raise ConnectionError("the CRM did not answer")
    return {"user_id": user_id, "attempt": context.attempt}


@job
def import_contacts(user_ids: list[int]) -> int:
    for user_id in user_ids:
        sync_to_crm.enqueue(user_id)
    return len(user_ids)


@job
def export_report(since: str) -> str:
    return f"report since {since}"


@job
def summarize(numbers: list[int]) -> object:
    return set(numbers)  # a bug: a set is not JSON, so the job fails (in production too)


@job
async def count_words(text: str) -> int:
    await asyncio.sleep(0)
    return len(text.split())
