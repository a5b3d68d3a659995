"""The admin as an operator's console: what failed and why, is a queue stuck, who runs what.

Through Django's test client against the real test Redis; rows come from the mirror.
The same three questions in Chromium: tests/browser/test_admin_console.py.
"""

from __future__ import annotations

import os
import re
import signal
from datetime import timedelta

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from django_jobs.admin.charts import nice_top
from django_jobs.admin.listing import age_text, error_line
from django_jobs.flows import Flow
from django_jobs.mirror import aggregates, mirror_once
from django_jobs.models import JobRecord
from django_jobs.testing import work_until_empty
from tests.integration.test_admin import CHANGELIST, change_url, messages_of, staff, url
from tests.redis_server import wait_until
from tests.testapp import jobs_flows as jf
from tests.testapp.jobs import add, always_fails, record, sleeper

pytestmark = [pytest.mark.db, pytest.mark.django_db]


def listed(client: Client, **params: str) -> set[str]:
    response = client.get(reverse(CHANGELIST), params)
    assert response.status_code == 200
    return {row.job_id for row in response.context["cl"].result_list}


# -- question 1: what failed in the last hour, and why? -------------------------------------------


def test_the_error_line_is_the_short_class_and_the_first_line_of_the_message():
    assert error_line("shop.jobs.PaymentDeclined: card declined") == "PaymentDeclined: card declined"
    assert error_line("ValueError: bad\nsecond line") == "ValueError: bad"
    assert error_line("Child job 01a2f00dcafe1234 ended cancelled and its failure policy fails the parent.") == "ChildFailed: child \u2026cafe1234 ended cancelled"
    assert error_line("") == ""
    now = timezone.now()
    assert [age_text(now - timedelta(seconds=s), now) for s in (5, 600, 10_800, 400_000)] == ["5.0 s", "10.0 min", "3.0 h", "4.6 d"]


def test_the_list_shows_the_error_and_finds_errors_arguments_and_short_names(admin_client):
    failed = always_fails.using(attempts=1).enqueue().id
    ok = add.enqueue(1234567, 2).id
    other = record.enqueue("tag-xyz").id
    work_until_empty()
    mirror_once()

    page = admin_client.get(reverse(CHANGELIST)).content.decode()
    cells = re.findall(r'<td class="field-error_column">(.*?)</td>', page, re.DOTALL)
    assert sum("ValueError: this job always fails" in cell for cell in cells) == 1 and cells.count("-") == 2
    assert listed(admin_client, q="this job ALWAYS") == {failed}  # error text, any case
    assert listed(admin_client, q="ValueError") == {failed}
    assert listed(admin_client, q="1234567") == {ok}  # an argument value
    assert listed(admin_client, q="tag-xyz") == {other}
    assert listed(admin_client, q="always_fails") == {failed}  # the short job name
    assert listed(admin_client, q="always_f") == {failed}
    assert listed(admin_client, q=add.module_path) == {ok}  # the full name still matches exactly
    assert listed(admin_client, q="no-such-thing") == set()


def test_the_finished_within_filter_keeps_the_last_15_minutes_or_hour(admin_client):
    now = timezone.now()
    JobRecord.objects.bulk_create([
        JobRecord(job_id=f"j{minutes}", queue="default", name="app.x", state="failed", error="ValueError: x",
                  enqueued_at=now - timedelta(minutes=minutes + 1), finished_at=now - timedelta(minutes=minutes))
        for minutes in (5, 30, 90)
    ])
    assert listed(admin_client, finished_within="15m") == {"j5"}
    assert listed(admin_client, finished_within="1h", state__exact="failed") == {"j5", "j30"}
    assert listed(admin_client, finished_within="24h") == {"j5", "j30", "j90"}
    page = admin_client.get(reverse(CHANGELIST)).content.decode()
    assert "last 15 minutes" in page and "last hour" in page


def test_the_detail_page_leads_with_the_state_and_last_error_then_the_timed_attempts(admin_client):
    failed = always_fails.enqueue().id  # 2 attempts, both fail
    work_until_empty()
    mirror_once()
    page = admin_client.get(change_url(failed)).content.decode()
    last_error = page.index('id="djj-last-error"')
    assert "ValueError: this job always fails" in page[last_error:last_error + 300]
    assert last_error < page.index('id="djj-attempts"') < page.index("<h2>State</h2>") < page.index("<h2>Arguments</h2>")
    attempts = re.findall(r'<tr class="djj-attempt"><td>(\d)</td><td><span title="([^"]+)">[^<]+</span></td><td>([\d.]+) s</td>', page)
    assert [a[0] for a in attempts] == ["1", "2"]  # each attempt: when it ended and how long it ran
    assert all(re.match(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", a[1]) and float(a[2]) < 5 for a in attempts)


def test_a_completed_job_s_last_attempt_takes_the_finish_time_and_run_time(admin_client):
    done = add.enqueue(1, 1).id
    work_until_empty()
    mirror_once()
    page = admin_client.get(change_url(done)).content.decode()
    assert re.search(r'<tr class="djj-attempt"><td>1</td><td><span title="[^"]+">[\d:]+</span></td><td>[\d.]+ s</td><td>[^<]*</td><td>completed</td>', page)
    assert 'id="djj-last-error"' not in page


def test_a_failed_flow_parent_links_to_the_child_that_failed_it_with_its_error(admin_client, engine):
    handle = Flow(jf.gather.s("p"), children=[jf.value.s(1), jf.broken.s("kid")]).enqueue()
    broken = handle.children[1]
    work_until_empty()
    mirror_once()
    assert engine.get_job("default", handle.id)["s"] == "failed"
    page = admin_client.get(change_url(handle.id)).content.decode()
    section = re.search(r'<p class="djj-failed-child" id="djj-failed-child">(.*?)</p>', page, re.DOTALL).group(1)
    assert change_url(broken.id) in section and "RuntimeError: broken kid" in section
    assert page.index('id="djj-failed-child"') < page.index('id="djj-attempts"')


# -- question 2: is a queue stuck? ---------------------------------------------------------------


def queue_row(client: Client, queue: str) -> dict:
    return next(r for r in client.get(url("django_jobs_queues")).context["rows"] if r["name"] == queue)


def test_the_queues_page_warns_when_jobs_wait_and_no_worker_serves_the_queue(admin_client, engine):
    add.enqueue_many([(i, i) for i in range(3)])
    row = queue_row(admin_client, "default")
    health = row["health"]
    assert health["oldest_age"] is not None and health["oldest_age"] >= 0 and health["workers"] == 0
    assert health["warnings"] == ["No live worker serves this queue: 3 jobs wait. Start one with manage.py runworkers."]
    page = admin_client.get(url("django_jobs_queues")).content.decode()
    assert '<p class="djj-warning" data-queue="default">' in page and "djj-stuck" in page
    assert not queue_row(admin_client, "high")["health"]["warnings"]  # nothing waits there

    work_until_empty()
    always_fails.using(attempts=1).enqueue()
    work_until_empty()
    health = queue_row(admin_client, "default")["health"]
    assert (health["done_per_min"], health["failed_per_min"], health["oldest_age"], health["warnings"]) == (3, 1, None, [])


def test_a_paused_queue_with_a_backlog_is_flagged(admin_client, engine):
    engine.pause("default")
    add.enqueue(1, 1)
    warnings = queue_row(admin_client, "default")["health"]["warnings"]
    # No worker runs in this test either: the missing worker is the first thing to fix.
    assert warnings and "No live worker" in warnings[0]


def test_nothing_finished_for_a_minute_although_jobs_wait_is_flagged(engine):
    from django_jobs.admin.health import queue_health

    class Stalled:  # the engine's answers for a queue whose workers are all busy with long jobs
        def oldest_waiting_age(self, queue: str) -> float:
            return 95.0

        def throughput(self, queue: str, *, seconds: float) -> dict[str, int]:
            return {"completed": 0, "failed": 0, "retrying": 0}

    health = queue_health(Stalled(), "default", {"waiting": 51}, paused=False, workers=2)
    assert health["stuck"] and health["warnings"][0].startswith("Nothing finished in the last 60 s although 51 jobs wait (the oldest for 95 s)")
    assert queue_health(Stalled(), "default", {"waiting": 51}, paused=True, workers=2)["warnings"][0].startswith("Paused with 51 jobs waiting")


# -- question 3: which workers are alive and what are they running? ---------------------------------


def test_the_workers_page_lists_running_jobs_and_cancels_one(admin_client, engine, workers):
    proc = workers.start("--processes", "1", "--threads", "2", "--queues", "default")
    [child] = workers.wait_children(proc, 1)
    try:
        job_id = sleeper.enqueue("long", 4).id

        def running():
            rows = admin_client.get(url("django_jobs_workers")).context["running"]
            return rows if rows and rows[0]["pid"] == child else None

        [row] = wait_until(running, timeout=20, message="the running job on the workers page")
        assert (row["id"], row["queue"], row["short_name"]) == (job_id, "default", "sleeper") and row["elapsed"] >= 0
        page = admin_client.get(url("django_jobs_workers")).content.decode()
        assert change_url(job_id) in page and 'name="op" value="cancel"' in page

        response = admin_client.post(url("django_jobs_workers"), {"op": "cancel", "queue": "default", "job": job_id}, follow=True)
        assert messages_of(response) == ["Cancelled (or asked 1 running to stop) 0 jobs. Skipped 1: 1 running (cancellation requested)."]
        assert engine.get_job("default", job_id)["cx"] == "1"  # asked to stop (a sleeping job stops when it checks)
        from django_jobs import audit

        assert [e.get_change_message() for e in audit.history(job_id)] == ["Asked to stop: cancel of a running job (admin)"]
        row = admin_client.get(url("django_jobs_workers")).context["running"][0]
        assert row["id"] == job_id and row["cancel_requested"]
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.communicate(timeout=30)


def test_restarts_are_recorded_per_host_with_their_reason(admin_client, engine, workers):
    proc = workers.start("--processes", "1", "--threads", "1", "--queues", "default", "--max-jobs-per-child", "1")
    try:
        workers.wait_children(proc, 1)
        add.enqueue(1, 2)  # the child recycles after one job (exit code 3); the supervisor records it
        import socket

        host = socket.gethostname()
        [entry, *_] = wait_until(lambda: engine.restarts(host), timeout=30, message="the recorded restart")
        assert entry["code"] == 3 and entry["why"] == "recycled" and entry["uptime"] >= 0

        def shown():
            page = admin_client.get(url("django_jobs_workers")).content.decode()
            return page if 'class="djj-restart-why">recycled<' in page else None

        wait_until(shown, timeout=20, message="the restart on the workers page")
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.communicate(timeout=30)


def test_the_engine_keeps_the_newest_restarts_of_a_host(engine):
    for i in range(engine.RESTARTS_KEPT + 5):
        engine.record_restart("host-a", {"pid": i, "code": 4, "why": "exited after a job passed its timeout", "uptime": 1.0})
    recent = engine.restarts("host-a", limit=100)
    assert len(recent) == engine.RESTARTS_KEPT and recent[0]["pid"] == engine.RESTARTS_KEPT + 4 and "at" in recent[0]
    assert engine.restarts("host-b") == []


# -- permissions: view-only staff see no mutation; every POST checks CSRF ---------------------------


def test_viewers_see_no_cancel_on_the_workers_page_and_get_403_on_post(django_user_model, engine):
    job_id = add.enqueue(1, 1).id
    client = staff(django_user_model, "view_jobrecord")
    page = client.get(url("django_jobs_workers")).content.decode()
    assert 'value="cancel"' not in page
    assert client.post(url("django_jobs_workers"), {"op": "cancel", "queue": "default", "job": job_id}).status_code == 403
    assert engine.get_job("default", job_id)["s"] == "waiting"
    nobody = staff(django_user_model, "cancel_jobrecord", username="no-view")  # an action permission without view
    assert nobody.post(url("django_jobs_workers"), {"op": "cancel", "queue": "default", "job": job_id}).status_code == 403
    assert engine.get_job("default", job_id)["s"] == "waiting"


def test_every_new_post_needs_a_csrf_token(django_user_model, engine):
    job_id = add.enqueue(1, 1).id
    user = django_user_model.objects.create_superuser("root", password="pw")
    client = Client(enforce_csrf_checks=True)
    client.force_login(user)
    assert client.post(url("django_jobs_workers"), {"op": "cancel", "queue": "default", "job": job_id}).status_code == 403
    assert engine.get_job("default", job_id)["s"] == "waiting"
    page = client.get(url("django_jobs_workers")).content.decode()
    assert page.count("<form") == page.count("csrfmiddlewaretoken")


# -- live, readable: refresh toggle, dashboard scales and links -----------------------------------


def test_live_pages_carry_the_refresh_toggle_and_ship_their_script(admin_client):
    from django.contrib.staticfiles import finders

    assert finders.find("django_jobs/live.js")
    for name in ("django_jobs_queues", "django_jobs_workers", "django_jobs_schedules", "django_jobs_dashboard"):
        page = admin_client.get(url(name)).content.decode()
        assert 'id="djj-live-toggle"' in page and "/static/django_jobs/live.js" in page and "data-djj-part" in page, name
        assert 'id="nav-sidebar"' not in page, name  # the width goes to the data
    page = admin_client.get(reverse(CHANGELIST)).content.decode()
    assert 'id="djj-live-toggle"' in page and "data-reload" in page


def test_the_dashboard_uses_a_log_scale_a_fitted_failure_axis_and_linked_points(admin_client):
    now = timezone.now()
    JobRecord.objects.bulk_create([
        JobRecord(job_id=f"d{i}", queue="default", name="app.fast", state="completed", finished_at=now - timedelta(minutes=3), duration=0.01)
        for i in range(19)
    ] + [JobRecord(job_id="slow", queue="default", name="app.slow", state="failed", finished_at=now - timedelta(minutes=3), duration=100.0)])
    aggregates.rebuild()  # rows written around the mirror: recount the dashboard's tallies
    response = admin_client.get(url("django_jobs_dashboard"))
    chart = response.context["chart"]
    fast = next(b for b in chart["bars"] if b["name"] == "app.fast")
    slow = next(b for b in chart["bars"] if b["name"] == "app.slow")
    assert slow["w95"] == pytest.approx(440) and fast["w95"] > 10  # log scale: the slow job does not flatten the fast one
    assert [d["label"] for d in chart["decades"]] == ["1 ms", "10 ms", "100 ms", "1 s", "10 s", "100 s"]
    assert chart["failure_top"] == 0.05  # 5 % at most in the data: the axis ends at 5 %, not 100 %
    assert nice_top(0.05) == 0.05 and nice_top(0.051) == 0.1 and nice_top(37) == 50
    point = next(p for p in chart["points"] if p["failed"])
    assert {r.job_id for r in admin_client.get(point["failed_url"]).context["cl"].result_list} == {"slow"}
    completed = next(p for p in chart["points"] if p["completed"])["completed_url"]
    assert len(admin_client.get(completed).context["cl"].result_list) == 19
    page = response.content.decode()
    assert page.count('class="djj-point-link"') >= 3 and 'class="djj-bar-link"' in page
