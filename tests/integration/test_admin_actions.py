"""Issue 18, questions 4 and 5: bulk actions confirm their true scope first; who did what.

Every test drives the admin through Django's test client (or ``manage.py jobs`` through
``call_command``) against the real test Redis; rows come through the mirror (``mirror_once``).
"""

from __future__ import annotations

import getpass

import pytest
from django.contrib.admin.models import LogEntry
from django.test import Client
from django.urls import reverse

from django_jobs import operations
from django_jobs.admin import jobs as jobs_admin
from django_jobs.mirror import mirror_once
from django_jobs.models import JobRecord
from django_jobs.operations import SkipReason
from django_jobs.testing import work_until_empty
from tests.integration.test_admin import (
    CHANGELIST,
    act,
    change_url,
    failed_jobs,
    messages_of,
    staff,
    url,
)
from tests.integration.test_flow_operations import failed_flow
from tests.integration.test_jobs_command import jobs
from tests.testapp.jobs import add

pytestmark = [
    pytest.mark.db, pytest.mark.django_db,
    # Every test also runs against a real Redis Cluster (tests/conftest.py), as test_admin.py does.
    pytest.mark.parametrize("topology", ["server", "cluster"], indirect=True),
]


def entries(job_id: str) -> list[str]:
    return [e.get_change_message() for e in LogEntry.objects.filter(object_id=job_id).order_by("id")]


# -- question 4: the confirmation states the true scope ----------------------------------------


def test_a_bulk_action_first_shows_its_exact_scope_and_changes_nothing(admin_client, engine):
    ids = failed_jobs(3)
    done = add.enqueue(1, 1).id
    work_until_empty()
    mirror_once()
    response = act(admin_client, "retry_jobs", [*ids, done], confirm=False)
    page = response.content.decode()
    assert response.templates[0].name == "admin/django_jobs/jobrecord/confirm_action.html"
    assert response.context["total"] == 4 and response.context["preview"].would == 3
    assert response.context["skips"] == [(SkipReason.NOT_RETRYABLE.value, 1)]
    assert "Yes, retry 4 jobs" in page and "Would skip <strong>1</strong>: not failed or cancelled" in page
    assert all(engine.get_job("default", i)["s"] == "failed" for i in ids)  # nothing ran
    assert not LogEntry.objects.exists()
    # The page posts back the action, the selection and the confirmation.
    assert 'name="djj_confirmed" value="yes"' in page and page.count('name="_selected_action"') == 4
    response = act(admin_client, "retry_jobs", [*ids, done])
    assert messages_of(response) == ["Retried 3 jobs. Skipped 1: 1 not failed or cancelled."]


def test_select_all_across_pages_counts_what_the_action_then_handles(admin_client, engine, monkeypatch):
    monkeypatch.setattr(jobs_admin, "COUNT_CAP", 40)  # the list's own count stops at 40
    ids = failed_jobs(120)
    add.enqueue_many([(i, i) for i in range(30)])
    work_until_empty()
    mirror_once()
    query = "?state__exact=failed"
    page = admin_client.get(reverse(CHANGELIST) + query).content.decode()
    # The list's count stops at the cap: its "select all" link says so instead of a wrong number.
    assert "Select all jobs of this list (more than 40; the exact count is confirmed" in page and "Select all 41" not in page
    response = act(admin_client, "retry_jobs", ids[:1], confirm=False, select_across="1", query=query)
    assert response.context["total"] == 120 == JobRecord.objects.filter(state="failed").count()
    assert response.context["preview"].would == 120 and response.context["selected"] == []
    assert all(engine.get_job("default", i)["s"] == "failed" for i in ids)
    response = act(admin_client, "retry_jobs", ids[:1], select_across="1", query=query)
    assert messages_of(response) == ["Retried 120 jobs."]
    assert engine.counts("default")["waiting"] == 120
    assert LogEntry.objects.filter(change_message="Retried (admin)").count() == 120


def test_the_retry_preview_lists_a_flow_parent_that_would_be_skipped_and_why(admin_client, engine):
    handle, failing, _sibling = failed_flow("preview")
    mirror_once()
    response = act(admin_client, "retry_jobs", [handle.id], confirm=False)
    assert response.context["preview"].would == 0
    assert response.context["skips"] == [(SkipReason.CHILD_FAILED.value, 1)]
    assert "flow parents that failed through a child" in response.content.decode()
    assert engine.get_job("default", handle.id)["s"] == "failed"
    # With its failed child in the selection, the parent would be retried (the rule of retry.lua).
    response = act(admin_client, "retry_jobs", [handle.id, failing.id], confirm=False)
    assert response.context["preview"].would == 2 and response.context["skips"] == []
    real = operations.retry([("default", handle.id)])
    assert real.skip_counts() == {SkipReason.CHILD_FAILED: 1}  # the preview said what the action does


def test_preview_agrees_with_cancel_and_delete(engine):
    waiting = add.enqueue(1, 1).id
    finished = add.enqueue(2, 2).id
    work_until_empty()
    waiting = add.enqueue(3, 3).id
    running = add.enqueue(4, 4).id
    engine.claim("default", running, lease_ms=60_000, worker_id="w")
    refs = [("default", j) for j in (waiting, finished, running, "0" * 32)]
    cancel = operations.preview("cancel", refs)
    assert (cancel.selected, cancel.would, cancel.requested) == (4, 2, 1)
    assert cancel.skip_counts() == {SkipReason.ALREADY_FINISHED: 1, SkipReason.NOT_FOUND: 1}
    delete = operations.preview(operations.Action.DELETE, refs)
    assert delete.would == 2 and delete.skip_counts() == {SkipReason.NOT_DELETABLE: 1, SkipReason.NOT_FOUND: 1}
    assert engine.get_job("default", waiting)["s"] == "waiting"  # a preview changes nothing
    real = operations.delete(refs)
    assert real.done_count == delete.would and real.skip_counts() == delete.skip_counts()
    with pytest.raises(operations.InvalidJob, match="only cancel, retry and delete"):
        operations.preview("pause", refs)


def test_after_an_action_the_list_shows_the_new_states_before_the_mirror_catches_up(admin_client, engine):
    ids = failed_jobs(2)
    mirror_once()
    response = act(admin_client, "retry_jobs", ids)
    assert JobRecord.objects.filter(state="failed").count() == 2  # the mirror has not run
    page = response.content.decode()
    assert page.count("djj-live-state") == 2 and "the database mirror still says failed" in page
    response = act(admin_client, "delete_jobs", ids)
    assert response.content.decode().count('djj-state djj-deleted djj-live-state') == 2
    mirror_once()
    assert not JobRecord.objects.exists()


def test_pause_all_asks_for_confirmation_first(admin_client, engine):
    from django_jobs.conf import get_settings

    names = get_settings().queue_names
    response = admin_client.post(url("django_jobs_queues"), {"op": "pause-all"})
    page = response.content.decode()
    assert response.status_code == 200 and "Yes, pause all queues" in page and ", ".join(names) in page
    assert not any(engine.is_paused(q) for q in names)
    response = admin_client.post(url("django_jobs_queues"), {"op": "pause-all", "confirm": "yes"}, follow=True)
    assert all(engine.is_paused(q) for q in names)
    [entry] = LogEntry.objects.all()
    assert entry.object_repr == f"queues {', '.join(names)}" and entry.user.username == "admin"
    assert entry.get_change_message() == f"Queue pause-all (admin): Paused every queue: {', '.join(names)}."


# -- question 5: who did this ---------------------------------------------------------------------


def test_admin_actions_are_recorded_per_job_and_shown_on_its_page(admin_client, engine):
    [job_id] = failed_jobs(1)
    mirror_once()
    act(admin_client, "retry_jobs", [job_id])
    act(admin_client, "retry_jobs", [job_id])  # now waiting: skipped, and recorded as such
    admin_client.post(url("django_jobs_jobrecord_act", job_id), {"action": "cancel"})
    assert entries(job_id) == [
        "Retried (admin)", "Not retried: not failed or cancelled (admin)", "Cancelled (admin)",
    ]
    assert {e.user.username for e in LogEntry.objects.all()} == {"admin"}
    page = admin_client.get(change_url(job_id)).content.decode()
    history = page[page.index('id="djj-history"'):]
    assert history.count("djj-history-entry") == 3 and "Not retried: not failed or cancelled (admin)" in history
    assert history.index("Cancelled (admin)") < history.index("Retried (admin)")  # newest first


def test_queue_limits_purge_and_schedule_actions_are_recorded(admin_client, engine):
    add.enqueue(1, 1)
    work_until_empty()
    admin_client.post(url("django_jobs_queues"), {"queue": "default", "op": "limits", "rate": "10/m", "concurrency": ""})
    admin_client.post(url("django_jobs_queues"), {"queue": "default", "op": "purge-completed"})
    admin_client.post(url("django_jobs_schedules"), {"schedule": "nope", "op": "pause"})
    texts = [e.get_change_message() for e in LogEntry.objects.order_by("id")]
    assert texts[0].startswith("Queue limits (admin): Queue 'default' now has at most 10/m starts")
    assert texts[1] == "Queue purge-completed (admin): Purged 1 completed jobs of queue 'default'."
    assert texts[2].startswith("Schedule pause (admin): ")  # an unknown schedule: its error is the outcome
    assert [e.object_repr for e in LogEntry.objects.order_by("id")] == ["queues default", "queues default", "schedule nope"]


def test_manage_py_jobs_records_who_changed_what(engine, django_user_model):
    django_user_model.objects.create_user("oncall")
    [job_id] = failed_jobs(1)
    out, err = jobs("retry", job_id, "--user", "oncall")
    assert "waiting again" in out and err == ""
    [entry] = LogEntry.objects.filter(object_id=job_id)
    assert entry.user.username == "oncall"
    assert entry.get_change_message().startswith(f'jobs retry {{"job_id": "{job_id}"}} (manage.py jobs, OS user {getpass.getuser()}): ')
    assert '"retried": 1' in entry.get_change_message()
    jobs("pause", "default", "--user", "oncall")
    assert LogEntry.objects.latest("id").object_repr == "queues default"
    jobs("stats", "--user", "oncall")  # reads only: nothing recorded
    jobs("limits", "--user", "oncall")
    assert LogEntry.objects.count() == 2
    # --user naming no Django user: the change runs, the command says it is not recorded.
    out, err = jobs("resume", "default", "--user", "nobody-here")
    assert not engine.is_paused("default") and err == "Not recorded in the admin history: no Django user 'nobody-here'.\n"
    assert LogEntry.objects.count() == 2
    # The OS user by default: with a Django account of that name, under it; without, only logged.
    out, err = jobs("pause", "low")
    assert err == ""
    assert LogEntry.objects.count() == (3 if django_user_model.objects.filter(username=getpass.getuser()).exists() else 2)
    django_user_model.objects.create_user(getpass.getuser())
    jobs("resume", "low")
    assert LogEntry.objects.latest("id").user.username == getpass.getuser()


def test_manage_py_jobs_bulk_retry_and_cancel_record_one_entry_per_job(engine, django_user_model):
    django_user_model.objects.create_user("oncall")
    failed = failed_jobs(3)
    out, err = jobs("retry", "--failed", "default", "--yes", "--user", "oncall")
    assert "Retried 3 failed job(s)" in out and "Not recorded" not in err
    assert all(entries(job_id) == ["Retried (manage.py jobs)"] for job_id in failed)
    waiting = [add.enqueue(i, i).id for i in range(2)]
    jobs("cancel", "--queue", "default", "--yes", "--user", "oncall")  # the retried 3 wait too
    assert all(entries(job_id) == ["Cancelled (manage.py jobs)"] for job_id in waiting)
    assert all(entries(job_id) == ["Retried (manage.py jobs)", "Cancelled (manage.py jobs)"] for job_id in failed)
    # Besides one summary entry per command, on the queue.
    assert [e.object_repr for e in LogEntry.objects.filter(object_id=None)] == ["queues default", "queues default"]
    assert {e.user.username for e in LogEntry.objects.all()} == {"oncall"}


def test_manage_py_jobs_logs_every_change_with_the_os_user(engine, caplog):
    with caplog.at_level("INFO", logger="django_jobs.audit"):
        jobs("pause", "default")
    [line] = [r.getMessage() for r in caplog.records if r.name == "django_jobs.audit"]
    assert line.startswith(f"Operator action by {getpass.getuser()}: jobs pause ") and '"paused": true' in line


# -- permissions ----------------------------------------------------------------------------------


def test_view_only_staff_get_no_confirmation_page_and_no_change(django_user_model, engine):
    [job_id] = failed_jobs(1)
    mirror_once()
    viewer = staff(django_user_model, "view_jobrecord")
    for confirm in (False, True):
        assert act(viewer, "retry_jobs", [job_id], confirm=confirm).status_code == 403
    assert act(staff(django_user_model, "view_jobrecord", "retry_jobrecord", username="b"), "cancel_jobs", [job_id]).status_code == 403
    assert viewer.post(url("django_jobs_queues"), {"op": "pause-all", "confirm": "yes"}).status_code == 403
    assert viewer.post(url("django_jobs_queues"), {"op": "pause-all"}).status_code == 403
    assert viewer.post(url("django_jobs_schedules"), {"schedule": "x", "op": "pause"}).status_code == 403
    assert engine.get_job("default", job_id)["s"] == "failed" and not engine.is_paused("default")
    assert not LogEntry.objects.exists()


def test_every_new_post_needs_a_csrf_token(django_user_model, engine):
    [job_id] = failed_jobs(1)
    mirror_once()
    user = django_user_model.objects.create_superuser("root", password="pw")
    client = Client(enforce_csrf_checks=True)
    client.force_login(user)
    data = {"action": "retry_jobs", "index": "0", "_selected_action": [job_id], "djj_confirmed": "yes"}
    assert client.post(reverse(CHANGELIST), data).status_code == 403
    assert client.post(url("django_jobs_queues"), {"op": "pause-all", "confirm": "yes"}).status_code == 403
    assert engine.get_job("default", job_id)["s"] == "failed" and not engine.is_paused("default")
    # The confirmation page's own form carries the token.
    page = client.get(reverse(CHANGELIST)).content.decode()
    assert "csrfmiddlewaretoken" in page
