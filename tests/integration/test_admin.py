"""The admin as the control plane: job list and detail, actions through the engine, the pages.

Every test runs the admin through Django's test client against the real test Redis; JobRecord
rows come from Redis through the database mirror (django_jobs.mirror.mirror_once).
"""

from __future__ import annotations

import os
import re
import signal
from datetime import timedelta

import pytest
from django.contrib.auth.models import Permission
from django.db import connection
from django.test import Client, override_settings
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from django_jobs import admin as jobs_admin
from django_jobs.conf import SettingError, build_settings
from django_jobs.mirror import aggregates, mirror_once
from django_jobs.models import JobRecord
from django_jobs.testing import work_until_empty
from tests.redis_server import wait_until
from tests.testapp.jobs import add, always_fails, enqueue_child, flaky, record, sleeper

pytestmark = [
    pytest.mark.db, pytest.mark.django_db,
    # Every test also runs against a real Redis Cluster (tests/conftest.py).
    pytest.mark.parametrize("topology", ["server", "cluster"], indirect=True),
]

CHANGELIST = "admin:django_jobs_jobrecord_changelist"


def url(name: str, *args: object) -> str:
    return reverse(f"admin:{name}", args=args)


def change_url(job_id: str) -> str:
    return url("django_jobs_jobrecord_change", job_id)


def staff(django_user_model, *perms: str, username: str = "operator") -> Client:
    """Return a client logged in as a staff user with only ``perms`` (codenames of django_jobs)."""
    user = django_user_model.objects.create_user(username, password="pw", is_staff=True)
    user.user_permissions.set(Permission.objects.filter(content_type__app_label="django_jobs", codename__in=perms))
    client = Client()
    client.force_login(user)
    return client


def act(client: Client, action: str, ids: list[str] | None = None, *, confirm: bool = True, query: str = "", **extra: str):
    """Post a bulk action; with ``confirm`` (default) also what its confirmation page posts."""
    data = {"action": action, "index": "0", "_selected_action": ids or [], **extra}
    if confirm:
        data["djj_confirmed"] = "yes"
    return client.post(reverse(CHANGELIST) + query, data, follow=True)


def messages_of(response) -> list[str]:
    return [str(m) for m in response.context["messages"]]


def failed_jobs(count: int) -> list[str]:
    ids = [r.id for r in always_fails.using(attempts=1).enqueue_many([() for _ in range(count)])]
    work_until_empty()
    return ids


def evalsha_calls(r) -> int:
    """Script calls that ran: an EVALSHA refused with NOSCRIPT (the script not cached yet) is sent again as EVAL."""
    stats = r.info("commandstats")
    return sum(stats.get(k, {}).get("calls", 0) - stats.get(k, {}).get("failed_calls", 0)
               for k in ("cmdstat_evalsha", "cmdstat_eval"))


# -- permissions --------------------------------------------------------------------------------


def test_anonymous_users_are_sent_to_the_login_page(client):
    for page in (reverse(CHANGELIST), url("django_jobs_queues"), url("django_jobs_workers"), url("django_jobs_dashboard"), url("django_jobs_schedules")):
        response = client.get(page)
        assert response.status_code == 302 and "/admin/login/" in response["Location"], page


def test_staff_without_the_view_permission_see_no_page(django_user_model):
    client = staff(django_user_model)
    assert client.get(reverse(CHANGELIST)).status_code == 403
    for page in ("django_jobs_queues", "django_jobs_workers", "django_jobs_dashboard", "django_jobs_schedules"):
        assert client.get(url(page)).status_code == 403, page
    assert "Queues" not in client.get(reverse("admin:index")).content.decode()


def test_viewers_see_the_pages_but_no_action_buttons_and_cannot_post_them(django_user_model, engine):
    always_fails.using(attempts=1).enqueue()
    work_until_empty()
    mirror_once()
    client = staff(django_user_model, "view_jobrecord")
    page = client.get(reverse(CHANGELIST)).content.decode()
    assert "retry_jobs" not in page and "delete_selected" not in page
    queues = client.get(url("django_jobs_queues")).content.decode()
    assert "Pause" not in queues and "Purge" not in queues
    assert client.post(url("django_jobs_queues"), {"queue": "default", "op": "pause"}).status_code == 403
    assert not engine.is_paused("default")
    job = JobRecord.objects.get()
    detail = client.get(change_url(job.job_id)).content.decode()
    assert "Retry</button>" not in detail
    assert client.post(url("django_jobs_jobrecord_act", job.job_id), {"action": "retry"}).status_code == 403
    assert engine.get_job("default", job.job_id)["s"] == "failed"
    index = client.get(reverse("admin:index")).content.decode()
    assert "Queues" in index and "Dashboard" in index and "Workers" in index and "Schedules" in index


def test_a_viewer_posting_an_action_they_lack_changes_nothing(django_user_model, engine):
    [job_id] = failed_jobs(1)
    mirror_once()
    client = staff(django_user_model, "view_jobrecord", "cancel_jobrecord")
    act(client, "retry_jobs", [job_id])
    assert engine.get_job("default", job_id)["s"] == "failed"


def test_actions_need_a_post_with_a_csrf_token(django_user_model, engine):
    [job_id] = failed_jobs(1)
    mirror_once()
    user = django_user_model.objects.create_superuser("root", password="pw")
    client = Client(enforce_csrf_checks=True)
    client.force_login(user)
    assert client.get(url("django_jobs_jobrecord_act", job_id)).status_code == 405
    assert client.post(url("django_jobs_jobrecord_act", job_id), {"action": "retry"}).status_code == 403
    assert client.post(url("django_jobs_queues"), {"queue": "default", "op": "pause"}).status_code == 403
    assert engine.get_job("default", job_id)["s"] == "failed" and not engine.is_paused("default")


# -- the job list ---------------------------------------------------------------------------------


def test_the_job_list_filters_by_queue_state_name_and_time_and_searches_ids_and_names(admin_client):
    from django_jobs.correlation import correlation_id

    with correlation_id("req-42"):
        tagged = add.enqueue(1, 2).id
    echo_id = add.using(queue_name="high").enqueue(5, 5).id
    failed = always_fails.using(attempts=1).enqueue().id
    work_until_empty()
    waiting = record.enqueue("later").id
    mirror_once()

    def listed(**params: str) -> set[str]:
        response = admin_client.get(reverse(CHANGELIST), params)
        assert response.status_code == 200
        return {row.job_id for row in response.context["cl"].result_list}

    assert listed() == {tagged, echo_id, failed, waiting}
    assert listed(state="failed") == {failed}
    assert listed(queue="high") == {echo_id}
    assert listed(name=record.module_path) == {waiting}
    assert listed(q=failed) == {failed}
    assert listed(q="req-42") == {tagged}
    assert listed(q="tests.testapp.jobs.alw") == {failed}
    assert listed(q="nothing-matches") == set()
    hour_ago = (timezone.now() - timedelta(hours=1)).isoformat()
    assert listed(enqueued_at__gte=hour_ago) == {tagged, echo_id, failed, waiting}
    assert listed(enqueued_at__gte=(timezone.now() + timedelta(days=1)).isoformat()) == set()
    assert listed(correlation_id="req-42") == {tagged}


def test_the_job_list_never_counts_the_whole_table(admin_client, monkeypatch):
    monkeypatch.setattr(jobs_admin.jobs, "COUNT_CAP", 5)
    add.enqueue_many([(i, i) for i in range(8)])
    mirror_once()
    with CaptureQueriesContext(connection) as queries:
        response = admin_client.get(reverse(CHANGELIST))
    counts = [q["sql"] for q in queries.captured_queries if "COUNT(" in q["sql"].upper()]
    assert counts and all("LIMIT" in sql.upper() for sql in counts), counts
    assert "More than 5 jobs match" in response.content.decode()
    assert "Show counts" not in response.content.decode()  # no facet counts either
    with CaptureQueriesContext(connection) as queries:
        admin_client.get(reverse(CHANGELIST), {"_facets": "True"})
    assert all("LIMIT" in q["sql"].upper() for q in queries.captured_queries if "COUNT(" in q["sql"].upper())


# -- the detail page -----------------------------------------------------------------------------


def test_the_detail_page_shows_arguments_result_traceback_timeline_and_live_state(admin_client):
    done = add.enqueue(2, 3).id
    failed = always_fails.enqueue().id  # 2 attempts, both fail
    work_until_empty()
    mirror_once()

    page = admin_client.get(change_url(done)).content.decode()
    assert "<pre>[\n  2,\n  3\n]</pre>" in page and "<pre>5</pre>" in page
    assert re.search(r'id="djj-live-state"><span class="djj-state djj-completed">completed', page)

    page = admin_client.get(change_url(failed)).content.decode()
    assert page.count("ValueError") >= 2 and "this job always fails" in page
    assert "<td>1</td>" in page and "<td>2</td>" in page  # one timeline row per attempt


def test_the_detail_page_shows_the_live_state_when_the_mirror_lags(admin_client, engine):
    job_id = flaky.using(attempts=1).enqueue("lag", 1).id
    work_until_empty()
    mirror_once()
    admin_client.post(url("django_jobs_jobrecord_act", job_id), {"action": "retry"})
    work_until_empty()  # the row still says failed: nothing mirrored since
    page = admin_client.get(change_url(job_id)).content.decode()
    assert JobRecord.objects.get(pk=job_id).state == "failed"
    assert 'djj-live-state"><span class="djj-state djj-completed">completed' in page
    assert "the mirror has not caught up yet" in page


def test_the_detail_page_links_parent_children_and_correlation_siblings(admin_client):
    from django_jobs.correlation import correlation_id

    with correlation_id("flow-7"):
        parent = enqueue_child.enqueue("p").id
        sibling = add.enqueue(0, 0).id
    work_until_empty()
    mirror_once()
    child = JobRecord.objects.get(parent_id=parent)
    assert child.correlation_id == "flow-7"

    page = admin_client.get(change_url(parent)).content.decode()
    assert change_url(child.job_id) in page and change_url(sibling) in page
    assert "?correlation_id=flow-7" in page
    page = admin_client.get(change_url(child.job_id)).content.decode()
    assert change_url(parent) in page


def test_secret_arguments_are_redacted_by_name(admin_client):
    job_id = add.enqueue(1, {"password": "hunter2", "nested": {"api_key": "k-123", "ok": 1}}).id
    mirror_once()
    page = admin_client.get(change_url(job_id)).content.decode()
    assert "hunter2" not in page and "k-123" not in page and "[redacted]" in page and "&quot;ok&quot;: 1" in page


def test_redaction_covers_positional_arguments_by_parameter_name(jobs_settings):
    from django_jobs import job  # noqa: F401 - the registry holds the test jobs

    args, kwargs = jobs_admin.redact_arguments(sleeper.module_path, ["tag-1", 3], {"token": "t"})
    assert args == ["tag-1", 3] and kwargs == {"token": "[redacted]"}
    with override_settings(DJANGO_JOBS={**jobs_settings, "REDACT_ARGUMENTS": ["Tag"]}):
        assert jobs_admin.redact_arguments(sleeper.module_path, ["tag-1", 3], {"token": "t"}) == (["[redacted]", 3], {"token": "t"})
    with override_settings(DJANGO_JOBS={**jobs_settings, "REDACT_ARGUMENTS": []}):
        assert jobs_admin.redact_arguments(sleeper.module_path, ["tag-1"], {"password": "p"}) == (["tag-1"], {"password": "p"})


def test_a_bad_redact_setting_says_how_to_fix_it():
    for bad in ("password", [""], [1]):
        with pytest.raises(SettingError, match=r"REDACT_ARGUMENTS.*list of argument names"):
            build_settings({"REDACT_ARGUMENTS": bad})


# -- actions --------------------------------------------------------------------------------------


def test_retry_runs_failed_jobs_again_and_reports_what_it_skipped(admin_client, engine):
    failed = flaky.using(attempts=1).enqueue("r1", 1).id
    done = add.enqueue(1, 1).id
    work_until_empty()
    mirror_once()
    response = act(admin_client, "retry_jobs", [failed, done])
    assert messages_of(response) == ["Retried 1 job. Skipped 1: 1 not failed or cancelled."]
    assert engine.get_job("default", failed)["s"] == "waiting"
    work_until_empty()
    assert engine.get_job("default", failed)["s"] == "completed"
    assert JobRecord.objects.get(pk=failed).state == "failed"  # rows change only through the mirror
    mirror_once()
    assert JobRecord.objects.get(pk=failed).state == "completed"


def test_cancel_cancels_waiting_and_scheduled_jobs_and_asks_running_ones_to_stop(admin_client, engine):
    waiting = add.enqueue(1, 1).id
    scheduled = add.using(delay=3600).enqueue(2, 2).id
    finished = add.enqueue(3, 3).id
    engine.claim("default", finished, lease_ms=10_000, worker_id="w")
    running = add.enqueue(4, 4).id
    engine.claim("default", running, lease_ms=60_000, worker_id="w")
    engine.client.hset(engine.keys("default").job(finished), "s", "completed")  # as if it had finished
    mirror_once()
    response = act(admin_client, "cancel_jobs", [waiting, scheduled, finished, running])
    [message] = messages_of(response)
    assert message.startswith("Cancelled (or asked 1 running to stop) 2 jobs.")
    assert "1 already finished" in message and "1 running (cancellation requested)" in message
    assert engine.get_job("default", waiting)["s"] == engine.get_job("default", scheduled)["s"] == "cancelled"
    assert engine.get_job("default", running)["cx"] == "1"


def test_delete_removes_jobs_from_redis_but_not_running_ones(admin_client, engine):
    done = add.enqueue(1, 1).id
    work_until_empty()
    running = add.enqueue(2, 2).id
    engine.claim("default", running, lease_ms=60_000, worker_id="w")
    mirror_once()
    response = act(admin_client, "delete_jobs", [done, running])
    assert messages_of(response) == ["Deleted 1 job. Skipped 1: 1 running or waited for by a flow parent (cancel them first)."]
    assert engine.get_job("default", done) is None and engine.get_job("default", running)["s"] == "active"
    assert engine.counts("default")["completed"] == 0
    mirror_once()
    assert set(JobRecord.objects.values_list("job_id", flat=True)) == {running}


@pytest.mark.single_server("counts the script calls of one server (INFO commandstats)")
def test_a_bulk_retry_of_thousands_of_jobs_takes_a_few_script_calls(admin_client, engine, r):
    ids = failed_jobs(2500)
    mirror_once()
    before = evalsha_calls(r)
    response = act(admin_client, "retry_jobs", ids[:1], select_across="1")
    assert messages_of(response) == ["Retried 2500 jobs."]
    assert evalsha_calls(r) - before == 3  # 1,000 ids per script call, pipelined: one round trip
    assert engine.counts("default")["waiting"] == 2500


def test_actions_on_one_job_from_its_detail_page(admin_client, engine):
    job_id = add.using(delay=3600).enqueue(1, 1).id
    mirror_once()
    response = admin_client.post(url("django_jobs_jobrecord_act", job_id), {"action": "cancel"}, follow=True)
    assert messages_of(response) == ["Cancelled 1 job."]
    response = admin_client.post(url("django_jobs_jobrecord_act", job_id), {"action": "retry"}, follow=True)
    assert messages_of(response) == ["Retried 1 job."]
    assert engine.get_job("default", job_id)["s"] == "waiting"
    response = admin_client.post(url("django_jobs_jobrecord_act", job_id), {"action": "explode"}, follow=True)
    assert messages_of(response) == ["Unknown action 'explode': use retry, cancel or delete."]


# -- queues, workers ------------------------------------------------------------------------------


def test_the_queues_page_shows_live_counts_and_pauses_and_resumes_a_queue(admin_client, engine):
    add.enqueue(1, 1)
    add.enqueue(2, 2)
    always_fails.using(attempts=1).enqueue()
    work_until_empty()
    add.enqueue(3, 3)
    response = admin_client.get(url("django_jobs_queues"))
    row = next(q for q in response.context["rows"] if q["name"] == "default")
    assert row["counts"] == {"waiting": 1, "scheduled": 0, "waiting_children": 0, "active": 0, "completed": 2, "failed": 1, "cancelled": 0}
    assert not row["paused"] and "LIMITS" not in response.content.decode()

    response = admin_client.post(url("django_jobs_queues"), {"queue": "default", "op": "pause"}, follow=True)
    assert engine.is_paused("default") and "is paused" in messages_of(response)[0]
    add.enqueue(4, 4)  # enqueue still works
    assert work_until_empty(["default"]) == 0  # workers take nothing from a paused queue
    assert engine.counts("default")["waiting"] == 2
    assert "Resume</button>" in admin_client.get(url("django_jobs_queues")).content.decode()

    admin_client.post(url("django_jobs_queues"), {"queue": "default", "op": "resume"})
    assert not engine.is_paused("default")
    assert work_until_empty(["default"]) == 2


def test_pause_all_and_resume_all_act_on_every_queue(admin_client, engine):
    from django_jobs.conf import get_settings

    names = get_settings().queue_names
    response = admin_client.post(url("django_jobs_queues"), {"op": "pause-all", "confirm": "yes"}, follow=True)
    assert messages_of(response) == [f"Paused every queue: {', '.join(names)}."]
    assert all(engine.is_paused(q) for q in names)
    add.enqueue(1, 1)  # enqueue still works
    assert work_until_empty() == 0
    admin_client.post(url("django_jobs_queues"), {"op": "resume-all"})
    assert not any(engine.is_paused(q) for q in names)
    assert work_until_empty() == 1


def test_purge_deletes_finished_jobs_of_one_state(admin_client, engine):
    add.enqueue_many([(i, i) for i in range(3)])
    always_fails.using(attempts=1).enqueue()
    work_until_empty()
    response = admin_client.post(url("django_jobs_queues"), {"queue": "default", "op": "purge-completed"}, follow=True)
    assert messages_of(response) == ["Purged 3 completed jobs of queue 'default'."]
    assert engine.counts("default")["completed"] == 0 and engine.counts("default")["failed"] == 1
    response = admin_client.post(url("django_jobs_queues"), {"queue": "nope", "op": "pause"}, follow=True)
    assert messages_of(response) == ["Unknown queue 'nope'."]
    response = admin_client.post(url("django_jobs_queues"), {"queue": "default", "op": "purge-waiting"}, follow=True)
    assert messages_of(response) == ["Unknown queue operation 'purge-waiting'."]


def test_the_workers_page_lists_live_worker_processes(admin_client, workers):
    proc = workers.start("--processes", "1", "--threads", "3", "--queues", "default,high")
    [child] = workers.wait_children(proc, 1)

    def listed():
        rows = admin_client.get(url("django_jobs_workers")).context["rows"]
        return rows if any(row["pid"] == child for row in rows) else None

    try:
        [row] = wait_until(listed, timeout=20, message="the worker's heartbeat")
        assert row["queues"] == "default, high" and row["threads"] == 3 and row["beat_age"] < 10
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        output, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0, output
    assert admin_client.get(url("django_jobs_workers")).context["rows"] == []  # a stopping worker removes its record


# -- the dashboard --------------------------------------------------------------------------------


def test_the_dashboard_charts_throughput_failure_rate_and_run_time_percentiles(admin_client, monkeypatch):
    now = timezone.now()
    rows = [
        JobRecord(job_id=f"d{i}", queue="default", name="app.fast", state="completed",
                  finished_at=now - timedelta(minutes=i % 30), duration=(i + 1) / 100)
        for i in range(100)
    ] + [
        JobRecord(job_id=f"f{i}", queue="default", name="app.slow", state="failed", finished_at=now - timedelta(minutes=5), duration=2.0)
        for i in range(25)
    ] + [JobRecord(job_id="old", queue="default", name="app.fast", state="completed", finished_at=now - timedelta(hours=3), duration=9)]
    JobRecord.objects.bulk_create(rows)
    aggregates.rebuild()  # rows written around the mirror: recount the dashboard's tallies

    data = jobs_admin.dashboard_data("hour", now=now)
    assert (data["completed"], data["failed"]) == (100, 25)
    assert data["failure_rate"] == 0.2
    fast = next(n for n in data["names"] if n["name"] == "app.fast")
    assert fast["count"] == 100 and fast["p50"] == pytest.approx(0.5, abs=0.011) and fast["p95"] == pytest.approx(0.95, abs=0.011)
    assert sum(b["completed"] for b in data["buckets"]) == 100 and len(data["buckets"]) == 60
    assert jobs_admin.dashboard_data("day", now=now)["completed"] == 101
    monkeypatch.setattr(jobs_admin.dashboard, "PERCENTILE_FETCH", 10)  # the other way: the tallies' run-time histogram
    approx = jobs_admin.dashboard_data("hour", now=now)["names"]
    assert [(n["name"], n["count"], n["failed"]) for n in approx] == [(n["name"], n["count"], n["failed"]) for n in data["names"]]
    for exact, near in zip(data["names"], approx, strict=True):  # twenty buckets a decade: within 6 %
        assert near["p50"] == pytest.approx(exact["p50"], rel=0.07) and near["p95"] == pytest.approx(exact["p95"], rel=0.07)

    page = admin_client.get(url("django_jobs_dashboard")).content.decode()
    points = re.search(r'<polyline points="([^"]+)" class="djj-line djj-line-completed"', page).group(1)
    assert len(points.split()) == 60 and "app.slow" in page and 'id="djj-runtime"' in page
    assert admin_client.get(url("django_jobs_dashboard"), {"window": "day"}).status_code == 200


def test_the_dashboard_ships_its_css_with_the_package_and_uses_no_cdn(admin_client):
    from django.contrib.staticfiles import finders

    assert finders.find("django_jobs/admin.css")
    page = admin_client.get(url("django_jobs_dashboard")).content.decode()
    assert "/static/django_jobs/admin.css" in page
    assert not re.search(r'(src|href)="(https?:)?//', page)
