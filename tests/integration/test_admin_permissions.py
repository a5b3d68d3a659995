"""Issue 18's permission matrix: every admin page and every POST the admin accepts.

View-only staff (``view_jobrecord``) see every page without a control that changes anything and
get 403 on every POST (nothing changes, nothing is recorded); a user with every permission but no
CSRF token gets 403 on every POST; each POST needs its own permission, not a neighbour's.
"""

from __future__ import annotations

import re

import pytest
from django.contrib.admin.models import LogEntry
from django.test import Client
from django.urls import reverse

from django_jobs.mirror import mirror_once
from django_jobs.testing import work_until_empty
from tests.integration.test_admin import CHANGELIST, change_url, failed_jobs, staff, url
from tests.testapp.jobs import add

pytestmark = [pytest.mark.db, pytest.mark.django_db]

#: The permission each POST needs besides view_jobrecord.
RETRY, CANCEL, DELETE, QUEUES, SCHEDULES = "retry_jobrecord", "cancel_jobrecord", "delete_jobrecord", "manage_queues", "manage_schedules"


def posts(job_id: str) -> list[tuple[str, str, dict[str, object]]]:
    """Every POST of the admin: (permission it needs, url, form data)."""
    bulk = reverse(CHANGELIST)
    one = url("django_jobs_jobrecord_act", job_id)
    queues, workers, schedules = url("django_jobs_queues"), url("django_jobs_workers"), url("django_jobs_schedules")
    found: list[tuple[str, str, dict[str, object]]] = []
    for action, perm in (("retry_jobs", RETRY), ("cancel_jobs", CANCEL), ("delete_jobs", DELETE)):
        for confirmed in ({}, {"djj_confirmed": "yes"}):  # the confirmation page, then the action
            found.append((perm, bulk, {"action": action, "index": "0", "_selected_action": [job_id], **confirmed}))
        found.append((perm, bulk, {"action": action, "index": "0", "select_across": "1", "_selected_action": [job_id], "djj_confirmed": "yes"}))
    for action, perm in (("retry", RETRY), ("cancel", CANCEL), ("delete", DELETE)):
        found.append((perm, one, {"action": action}))
    for op in ("pause", "resume", "purge-completed", "purge-failed", "purge-cancelled", "reset-limits"):
        found.append((QUEUES, queues, {"queue": "default", "op": op}))
    found.append((QUEUES, queues, {"queue": "default", "op": "limits", "rate": "1/s", "concurrency": "1"}))
    for confirmed in ({}, {"confirm": "yes"}):
        found.append((QUEUES, queues, {"op": "pause-all", **confirmed}))
    found.append((QUEUES, queues, {"op": "resume-all"}))
    found.append((CANCEL, workers, {"op": "cancel", "queue": "default", "job": job_id}))
    for op in ("pause", "resume", "trigger"):
        found.append((SCHEDULES, schedules, {"schedule": "nightly", "op": op}))
    return found


def unchanged(engine, job_id: str) -> None:
    assert engine.get_job("default", job_id)["s"] == "failed"
    assert not any(engine.is_paused(q) for q in ("default", "high", "low"))
    assert engine.counts("default")["completed"] == 1
    assert not LogEntry.objects.exists()


@pytest.fixture
def job_id(engine) -> str:
    [job_id] = failed_jobs(1)
    add.enqueue(1, 1)
    work_until_empty()
    mirror_once()
    return job_id


#: A form that changes something: a POST form other than Django's log-out form and the changelist's
#: form (always a POST form; with no action allowed it has no action select, checked below).
POST_FORM = re.compile(r'<form(?![^>]*id="(?:logout|changelist)-form")[^>]*method="post"', re.IGNORECASE)


def test_view_only_staff_see_every_page_without_a_control_that_changes_anything(django_user_model, engine, job_id):
    viewer = staff(django_user_model, "view_jobrecord")
    pages = [reverse(CHANGELIST), change_url(job_id), *(url(name) for name in (
        "django_jobs_queues", "django_jobs_workers", "django_jobs_schedules", "django_jobs_dashboard"))]
    for page in pages:
        response = viewer.get(page)
        assert response.status_code == 200, page
        html = response.content.decode()
        assert not POST_FORM.search(html), (page, POST_FORM.search(html))
        assert 'name="action"' not in html and 'name="op"' not in html, page


def test_view_only_staff_get_403_on_every_post_and_nothing_changes(django_user_model, engine, job_id):
    viewer = staff(django_user_model, "view_jobrecord")
    for _perm, where, data in posts(job_id):
        assert viewer.post(where, data).status_code == 403, (where, data)
    unchanged(engine, job_id)


def test_each_post_needs_its_own_permission_not_another(django_user_model, engine, job_id):
    everything = (RETRY, CANCEL, DELETE, QUEUES, SCHEDULES)
    lacking = {perm: staff(django_user_model, "view_jobrecord", *(set(everything) - {perm}), username=f"lacks-{perm}") for perm in everything}
    for perm, where, data in posts(job_id):
        assert lacking[perm].post(where, data).status_code == 403, (perm, where, data)
    unchanged(engine, job_id)


def test_every_post_needs_a_csrf_token(django_user_model, engine, job_id):
    root = django_user_model.objects.create_superuser("root", password="pw")
    client = Client(enforce_csrf_checks=True)
    client.force_login(root)
    for _perm, where, data in posts(job_id):
        assert client.post(where, data).status_code == 403, (where, data)
    unchanged(engine, job_id)
