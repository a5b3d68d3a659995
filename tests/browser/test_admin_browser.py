"""The admin in headless Chromium: log in, filter failed jobs, retry one and watch it succeed,
pause and resume a queue, see the dashboard's charts drawn. Screenshots: tests/artifacts/."""

from __future__ import annotations

import re

import pytest

from tests.browser.conftest import box_of, screenshot, set_live
from tests.redis_server import wait_until
from tests.testapp.jobs import add, always_fails, flaky

pytestmark = [pytest.mark.browser, pytest.mark.timeout(180)]


def test_filter_failed_jobs_then_retry_one_and_watch_it_succeed(site, page, engine):
    retried = flaky.using(attempts=1).enqueue("browser", 1).id  # fails once, then succeeds
    other = always_fails.using(attempts=1).enqueue().id
    ok = add.enqueue(1, 2).id
    wait_until(lambda: engine.counts("default")["failed"] == 2 and engine.counts("default")["completed"] == 1,
               timeout=20, message="the workers ran the jobs")
    site.mirror()

    page.goto("/admin/django_jobs/jobrecord/")
    page.get_by_role("link", name="Failed", exact=True).click()
    page.wait_for_url(re.compile(r"state__exact=failed"))
    rows = page.locator("#result_list tbody tr")
    assert rows.count() == 2
    assert page.locator(f'#result_list a[href*="{ok}"]').count() == 0
    screenshot(page, "jobs-failed")

    page.get_by_role("link", name=retried).click()
    assert "RuntimeError" in page.locator(".djj-tb").first.inner_text()
    page.get_by_role("button", name="Retry").click()
    assert page.locator(".messagelist").inner_text().strip() == "Retried 1 job."

    def succeeded() -> bool:
        page.reload()
        return "completed" in page.locator("#djj-live-state").inner_text()

    wait_until(succeeded, timeout=30, interval=0.5, message="the retried job succeeds")
    assert "ok after 2" in page.content()
    screenshot(page, "job-retried")
    assert engine.get_job("default", other)["s"] == "failed"


def test_pause_and_resume_a_queue(site, page, engine):
    page.goto("/admin/django_jobs/jobrecord/queues/")
    row = page.locator('tr[data-queue="default"]')
    row.get_by_role("button", name="Pause").click()
    assert "is paused" in page.locator(".messagelist").inner_text()
    assert row.locator(".djj-status").inner_text() == "paused"
    assert engine.is_paused("default")

    job = add.enqueue(2, 2)  # enqueue works; the worker leaves it waiting
    page.reload()
    assert row.locator(".djj-count-waiting").inner_text() == "1"
    screenshot(page, "queue-paused")
    assert engine.get_job("default", job.id)["s"] == "waiting"

    row.get_by_role("button", name="Resume").click()
    assert row.locator(".djj-status").inner_text() == "running"
    wait_until(lambda: engine.get_job("default", job.id)["s"] == "completed", timeout=20, message="the job runs after the resume")
    page.reload()
    assert row.locator(".djj-count-completed").inner_text() == "1"


def test_the_dashboard_draws_its_charts(site, page, engine):
    add.enqueue_many([(i, i) for i in range(20)])
    always_fails.using(attempts=1).enqueue_many([() for _ in range(5)])
    wait_until(lambda: engine.counts("default")["completed"] == 20 and engine.counts("default")["failed"] == 5,
               timeout=30, message="the workers ran the jobs")
    site.mirror()

    page.goto("/admin/django_jobs/jobrecord/dashboard/")
    set_live(page, False)  # measured below
    assert page.locator("#djj-completed").inner_text() == "20"
    assert page.locator("#djj-failure-rate").inner_text() == "20 %"
    line = page.locator("#djj-throughput polyline.djj-line-completed")
    box = box_of(line)
    assert box["width"] > 300 and box["height"] > 10  # a drawn line with a peak
    bars = page.locator("#djj-runtime rect")
    assert bars.count() == 4  # p50 and p95 of two job names
    screenshot(page, "dashboard")
