"""The sample app's code under test: it enqueues jobs."""

from __future__ import annotations

import datetime

from django.contrib.auth import get_user_model
from django.db import transaction

from django_jobs.tasks import JobResult
from tests.sampleapp.jobs import export_report, remind_to_verify, send_welcome

DAY = 24 * 3600


def sign_up(username: str, *, fail_after_enqueue: bool = False) -> tuple[object, JobResult]:
    """Create a user; the welcome mail goes out once the user is committed."""
    with transaction.atomic():
        user = get_user_model().objects.create_user(username=username)
        welcome = send_welcome.enqueue_on_commit(user.pk)
        if fail_after_enqueue:
            raise ValueError("something later in the signup failed")
    remind_to_verify.using(delay=DAY).enqueue(user.pk)
    return user, welcome


def export_since_yesterday() -> JobResult:
    """A bug: passes a datetime, which is not JSON."""
    yesterday = datetime.datetime.now(datetime.UTC) - datetime.timedelta(days=1)
    return export_report.enqueue(yesterday)
