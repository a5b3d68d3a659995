"""The operator's three first questions, in headless Chromium at 1024 and 1440 px wide.

1. What failed in the last hour, and why?  2. Is a queue stuck?  3. Which workers are alive
and what are they running? Each answered on one screen, with nothing pushed off to the side.
Screenshots: tests/artifacts/console-*.png.
"""

from __future__ import annotations

import os
import signal
import socket

import pytest

from django_jobs.flows import Flow
from tests.browser.conftest import ARTIFACTS, box_of, logged_in, screenshot, set_live
from tests.redis_server import wait_until
from tests.testapp import jobs_flows as jf
from tests.testapp.jobs import add, always_fails, stoppable

pytestmark = [pytest.mark.browser, pytest.mark.timeout(240)]

WIDTHS = {1024: 768, 1440: 900}


@pytest.fixture(params=sorted(WIDTHS), ids=lambda w: f"{w}px")
def width(request) -> int:
    return request.param


@pytest.fixture
def page(browser, site, width):
    """A logged-in admin page in a window ``width`` px wide."""
    context, page = logged_in(browser, site, width, WIDTHS[width])
    yield page
    context.close()


def fits(page, width: int) -> None:
    """Nothing is pushed off the right edge: no horizontal scrolling."""
    scroll = page.evaluate("document.documentElement.scrollWidth")
    assert scroll <= width, f"the page is {scroll} px wide in a {width} px window"


def on_screen(page, locator, width: int, right: float | None = None) -> None:
    """``locator`` is wholly inside the window (and left of ``right``, e.g. a sidebar's edge)."""
    box = box_of(locator)
    edge = min(width, right if right is not None else width)
    assert box["x"] >= 0 and box["x"] + box["width"] <= edge + 1, (box, edge)


def test_what_failed_in_the_last_hour_and_why(site, page, engine, width):
    always_fails.using(attempts=1).enqueue_many([() for _ in range(3)])
    add.enqueue_many([(i, i) for i in range(5)])
    flow = Flow(jf.gather.s("report"), children=[jf.value.s(1), jf.broken.s("kid")]).enqueue()
    broken = flow.children[1]
    wait_until(lambda: engine.counts("default")["failed"] == 5 and engine.counts("default")["completed"] == 6,
               timeout=40, message="the workers ran the jobs")
    site.mirror()

    page.goto("/admin/django_jobs/jobrecord/")
    page.get_by_role("link", name="last hour").click()
    page.get_by_role("link", name="Failed", exact=True).click()
    page.wait_for_url(lambda u: "finished_within=1h" in u and "state__exact=failed" in u)
    set_live(page, False)  # the list reloads itself: not while it is measured (and for the rest of the test)
    rows = page.locator("#result_list tbody tr")
    assert rows.count() == 5
    errors = page.locator("#result_list td.field-error_column").all_inner_texts()
    assert sum("ValueError: this job always fails" in e for e in errors) == 3
    assert sum("ChildFailed: child" in e for e in errors) == 1 and sum("RuntimeError: broken kid" in e for e in errors) == 1
    first = rows.first
    results = box_of(page.locator("#changelist .results"))  # the list scrolls inside this box
    for column in ("state_badge", "job_name", "queue", "error_column", "age"):
        on_screen(page, first.locator(f".field-{column}"), width, right=results["x"] + results["width"])
    fits(page, width)
    screenshot(page, f"console-q1-failed-last-hour-{width}")

    page.fill("#searchbar", "always_fails")  # the short name, without its module
    page.press("#searchbar", "Enter")
    page.wait_for_url(lambda u: "q=always_fails" in u)
    assert page.locator("#result_list tbody tr").count() == 3

    page.goto(f"/admin/django_jobs/jobrecord/{flow.id}/change/")
    headline = page.locator("#djj-summary")
    box = box_of(headline)
    assert box["y"] + box["height"] < WIDTHS[width]  # state and last error on the first screen
    assert "failed" in page.locator("#djj-summary .djj-state").first.inner_text()
    child = page.locator("#djj-failed-child")
    assert "RuntimeError: broken kid" in child.inner_text()
    attempts = page.locator("#djj-attempts tr.djj-attempt")
    assert attempts.count() == 1 and ":" in attempts.first.locator("td").nth(1).inner_text()  # when the child failed it
    fits(page, width)
    screenshot(page, f"console-q1-flow-parent-{width}")
    page.screenshot(path=str(ARTIFACTS / f"console-q1-flow-parent-top-{width}.png"))  # the first screen only
    child.get_by_role("link").first.click()
    page.wait_for_url(f"**/{broken.id}/change/")
    assert "RuntimeError: broken kid" in page.locator("#djj-last-error").inner_text()
    assert page.locator("#djj-attempts tr.djj-attempt").count() == 2  # jf.broken has 2 attempts, each timed
    assert all(t.strip().endswith(" s") for t in page.locator("#djj-attempts tr.djj-attempt td:nth-child(3)").all_inner_texts())


def test_is_a_queue_stuck(site, page, engine, width):
    engine.pause("high")
    add.using(queue_name="high").enqueue_many([(i, i) for i in range(4)])
    add.enqueue_many([(i, i) for i in range(6)])
    wait_until(lambda: engine.counts("default")["completed"] == 6, timeout=30, message="the default queue runs")

    page.goto("/admin/django_jobs/jobrecord/queues/")
    set_live(page, False)  # measured below; back on for the live part
    high = page.locator('tr[data-queue="high"]')
    assert "Paused with 4 jobs waiting" in page.locator('.djj-warning[data-queue="high"]').inner_text()
    assert high.locator(".djj-oldest").inner_text().endswith(" s")
    assert high.locator(".djj-count-waiting").inner_text() == "4"
    default = page.locator('tr[data-queue="default"]')
    assert default.locator(".djj-done-rate").inner_text() == "6" and default.locator(".djj-oldest").inner_text() == "-"
    assert page.locator('.djj-warning[data-queue="default"]').count() == 0
    for button in page.locator("#djj-queues button").all():
        on_screen(page, button, width)  # every Pause / Purge / Set limits button stays on screen
    fits(page, width)
    screenshot(page, f"console-q2-queues-{width}")

    # Live: resuming the queue elsewhere clears the warning without a reload.
    set_live(page, True)
    engine.resume("high")
    wait_until(lambda: page.locator('.djj-warning[data-queue="high"]').count() == 0, timeout=30, interval=0.5,
               message="the page refreshes itself")
    assert page.locator('tr[data-queue="high"] .djj-count-waiting').inner_text() == "0"


def test_a_queue_no_live_worker_serves_is_flagged(site, page, engine, width):
    workers = site.procs[0]  # runworkers: stop it (SIGTERM, a clean shutdown takes its heartbeat away)
    os.killpg(workers.pid, signal.SIGTERM)
    workers.wait(timeout=60)
    wait_until(lambda: not engine.workers(), timeout=60, message="no live worker left")
    add.using(queue_name="high").enqueue_many([(i, i) for i in range(3)])
    page.goto("/admin/django_jobs/jobrecord/queues/")
    set_live(page, False)
    warning = page.locator('.djj-warning[data-queue="high"]')
    assert "No live worker serves this queue: 3 jobs wait" in warning.inner_text()
    assert page.locator('tr[data-queue="high"] .djj-oldest').inner_text() != "-"
    on_screen(page, warning, width)
    fits(page, width)
    screenshot(page, f"console-q2-no-worker-{width}")


def test_which_workers_are_alive_and_what_they_run(site, page, engine, width):
    engine.record_restart(socket.gethostname(), {"pid": 4242, "code": 4, "why": "exited after a job passed its timeout", "uptime": 12.5})
    page.goto("/admin/django_jobs/jobrecord/workers/")
    wait_until(lambda: page.locator("#djj-workers tbody tr").count() >= 1 or page.reload(), timeout=30, interval=1,
               message="the worker's heartbeat")
    job_id = stoppable.enqueue("long", 120).id  # runs until cancelled, however slow the page
    row = page.locator(f'#djj-running tr[data-job="{job_id}"]')
    row.wait_for(timeout=20_000)  # appears without a reload: the page refreshes itself
    set_live(page, False)  # then stops, to be measured
    assert "pid" in row.locator(".djj-running-worker").inner_text()
    assert row.get_by_role("link", name="stoppable").get_attribute("href").endswith(f"/{job_id}/change/")
    restart = page.locator("tr.djj-restart").first
    assert "passed its timeout" in restart.inner_text() and "4242" in restart.inner_text()
    on_screen(page, row.get_by_role("button", name="Cancel"), width)
    fits(page, width)
    screenshot(page, f"console-q3-workers-{width}")

    page.once("dialog", lambda dialog: dialog.accept())
    row.get_by_role("button", name="Cancel").click()
    assert "cancellation requested" in page.locator(".messagelist").inner_text()
    assert engine.get_job("default", job_id)["cx"] == "1"


def test_the_dashboard_points_open_the_jobs_behind_them(site, page, engine, width):
    add.enqueue_many([(i, i) for i in range(8)])
    always_fails.using(attempts=1).enqueue_many([() for _ in range(2)])
    wait_until(lambda: engine.counts("default")["completed"] == 8 and engine.counts("default")["failed"] == 2,
               timeout=30, message="the workers ran the jobs")
    site.mirror()
    page.goto("/admin/django_jobs/jobrecord/dashboard/")
    set_live(page, False)
    labels = page.locator("#djj-failure text.djj-label").all_text_contents()
    assert "20 %" in labels and "100%" not in labels and "100 %" not in labels  # the axis fits the data (20 %)
    for tick in page.locator("#djj-throughput text.djj-label").all():
        on_screen(page, tick, width)
    fits(page, width)
    screenshot(page, f"console-dashboard-{width}")
    page.locator("#djj-throughput circle.djj-point-failed").last.click()
    page.wait_for_url(lambda u: "state__exact=failed" in u and "finished_at__gt=" in u)
    assert page.locator("#result_list tbody tr").count() == 2
    assert all("ValueError" in e for e in page.locator("#result_list td.field-error_column").all_inner_texts())


def test_the_live_toggle_is_on_by_default_and_remembered(site, page, width):
    page.goto("/admin/django_jobs/jobrecord/queues/")
    toggle = page.locator("#djj-live-toggle input")
    assert toggle.is_visible() and toggle.is_checked()
    toggle.uncheck()
    assert page.evaluate("window.localStorage.getItem('djj.live')") == "off"
    page.goto("/admin/django_jobs/jobrecord/workers/")
    assert not page.locator("#djj-live-toggle input").is_checked()
