"""Issue 18's five operator questions on a site with realistic data, at 1024 and 1440 px.

One site for the module (tests/browser/seed.py: about 3,000 jobs over three queues, failures,
retries, flows, cron, a paused queue with a backlog), shared by the tests: each width acts on
its own group of jobs (``q4-<width>``), and a test that changes a queue puts it back.
Screenshots: tests/artifacts/operator-*.png; docs/img/refresh.sh makes docs/admin.md's pictures
from the same pages (:data:`DOCS`).
"""

from __future__ import annotations

import os
import shutil
import uuid
from pathlib import Path

import pytest

from tests.browser.conftest import (
    ARTIFACTS,
    box_of,
    django_command,
    logged_in,
    running_site,
    screenshot,
    set_live,
)
from tests.browser.seed import WIDTHS as SEEDED
from tests.redis_server import wait_until
from tests.testapp.jobs import stoppable

pytestmark = [pytest.mark.browser, pytest.mark.timeout(300)]

WIDTHS = {1024: 768, 1440: 900}
assert set(WIDTHS) == set(SEEDED)


@pytest.fixture(scope="module")
def prefix() -> str:
    """One Redis prefix for the module: its tests share the seeded site (and read it with ``engine``)."""
    return "t" + uuid.uuid4().hex[:10]


@pytest.fixture(scope="module")
def busy_site(redis_server, prefix, migrated_db, tmp_path_factory):
    where = tmp_path_factory.mktemp("busy-site")
    db = where / "db.sqlite3"
    shutil.copy(migrated_db, db)
    with running_site(redis_server, prefix, db, settings="tests.browser.settings_busy", DJJ_LEDGER=str(where / "ledger.txt")) as site:
        django_command(site.env, "shell", "-c", "from tests.browser.seed import seed; print(seed())", timeout=300)
        yield site


@pytest.fixture(params=sorted(WIDTHS), ids=lambda w: f"{w}px")
def width(request) -> int:
    return request.param


@pytest.fixture
def page(browser, busy_site, width):
    context, page = logged_in(browser, busy_site, width, WIDTHS[width])
    yield page
    context.close()


#: docs/admin.md's pictures: (name, the width it shows). docs/img/refresh.sh sets DJJ_DOCS_IMG.
DOCS = {("failed-last-hour", 1024), ("job-detail", 1024), ("queues", 1440), ("workers", 1024), ("dashboard", 1024),
        ("retry-confirm", 1024), ("history", 1440)}


def docs_shot(page, name: str, width: int) -> None:
    """With DJJ_DOCS_IMG=DIR, save the window (the first screen, as the operator sees it) as DIR/admin-NAME.png."""
    where = os.environ.get("DJJ_DOCS_IMG")
    if where and (name, width) in DOCS:
        Path(where).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(where) / f"admin-{name}.png"))


def fits(page, width: int) -> None:
    scroll = page.evaluate("document.documentElement.scrollWidth")
    assert scroll <= width, f"the page is {scroll} px wide in a {width} px window"


def on_first_screen(locator, width: int) -> None:
    box = box_of(locator)
    assert box["x"] >= 0 and box["x"] + box["width"] <= width + 1 and box["y"] + box["height"] <= WIDTHS[width], box


def test_q1_what_failed_in_the_last_hour_and_why_among_thousands(busy_site, page, width):
    page.goto("/admin/django_jobs/jobrecord/")
    page.get_by_role("link", name="last hour").click()
    page.get_by_role("link", name="Failed", exact=True).click()
    page.wait_for_url(lambda u: "finished_within=1h" in u and "state__exact=failed" in u)
    errors = page.locator("#result_list td.field-error_column").all_inner_texts()
    assert any("ValueError: this job always fails" in e for e in errors)
    assert any("RuntimeError: flaky failure 1" in e for e in errors)
    fits(page, width)
    screenshot(page, f"operator-q1-failed-last-hour-{width}")
    docs_shot(page, "failed-last-hour", width)

    page.fill("#searchbar", "always fails")  # error text
    page.press("#searchbar", "Enter")
    page.wait_for_url(lambda u: "q=always+fails" in u or "q=always%20fails" in u)
    assert page.locator("#result_list tbody tr").count() == 40
    page.fill("#searchbar", "invoice-1")  # an argument value: the failing child of a flow
    page.press("#searchbar", "Enter")
    page.locator("#result_list tbody tr").first.wait_for()
    page.locator("#result_list tbody tr").first.locator("th a, td a").first.click()
    page.wait_for_url(lambda u: "/change/" in u)  # with ?_changelist_filters=...
    set_live(page, False)  # the job's page refreshes itself: not while it is measured
    on_first_screen(page.locator("#djj-summary .djj-state").first, width)
    assert "RuntimeError: broken invoice-1" in page.locator("#djj-last-error").inner_text()
    screenshot(page, f"operator-q1-detail-{width}")
    docs_shot(page, "job-detail", width)


def test_q2_is_a_queue_stuck_the_paused_backlog_is_flagged(busy_site, page, width):
    page.goto("/admin/django_jobs/jobrecord/queues/")
    set_live(page, False)
    low = page.locator('tr[data-queue="low"]')
    assert "Paused with 300 jobs waiting" in page.locator('.djj-warning[data-queue="low"]').inner_text()
    assert low.locator(".djj-count-waiting").inner_text() == "300"
    assert low.locator(".djj-oldest").inner_text() != "-"
    assert page.locator('.djj-warning[data-queue="default"]').count() == 0
    for button in page.locator("#djj-queues button").all():
        box = box_of(button)
        assert box["x"] + box["width"] <= width + 1
    fits(page, width)
    screenshot(page, f"operator-q2-queues-{width}")
    docs_shot(page, "queues", width)


def test_q3_workers_and_what_they_run_then_cancel_one_from_there(busy_site, page, engine, width):
    page.goto("/admin/django_jobs/jobrecord/workers/")
    wait_until(lambda: page.locator("#djj-workers tbody tr").count() >= 1 or page.reload(), timeout=30, interval=1,
               message="the worker's heartbeat")
    job_id = stoppable.using(queue_name="high").enqueue(f"report-export-{width}", 120).id  # until cancelled
    row = page.locator(f'#djj-running tr[data-job="{job_id}"]')
    row.wait_for(timeout=20_000)  # the page refreshes itself
    set_live(page, False)  # then stops, to be measured
    assert "pid" in row.locator(".djj-running-worker").inner_text()
    on_first_screen(row.get_by_role("button", name="Cancel"), width)
    fits(page, width)
    screenshot(page, f"operator-q3-workers-{width}")
    docs_shot(page, "workers", width)
    page.once("dialog", lambda dialog: dialog.accept())
    row.get_by_role("button", name="Cancel").click()
    assert "cancellation requested" in page.locator(".messagelist").inner_text()
    assert engine.get_job("high", job_id)["cx"] == "1"  # its worker is asked to stop it (a sync job stops when it checks)


def test_the_dashboard_over_thousands_of_jobs(busy_site, page, width):
    page.goto("/admin/django_jobs/jobrecord/dashboard/")
    assert int(page.locator("#djj-completed").inner_text().replace(",", "")) > 2000
    fits(page, width)
    screenshot(page, f"operator-dashboard-{width}")
    docs_shot(page, "dashboard", width)


def test_q4_retry_these_failed_jobs_states_the_count_and_the_skips_first(busy_site, page, engine, width):
    page.goto("/admin/django_jobs/jobrecord/?finished_within=1h")
    page.fill("#searchbar", f"q4-{width}")  # an argument value: 12 failed, 1 completed, 1 failed flow parent
    page.press("#searchbar", "Enter")
    page.wait_for_url(lambda u: f"q=q4-{width}" in u)
    rows = page.locator("#result_list tbody tr")
    assert rows.count() == 14
    listed = {box.get_attribute("value") for box in page.locator("#result_list input[name=_selected_action]").all()}
    assert len(listed) == 14
    set_live(page, False)  # a reload under way as the rows are selected loses them
    page.locator("#action-toggle").check()
    page.locator("select[name=action]").select_option("retry_jobs")
    page.locator("button[name=index]").click()

    assert page.locator("#djj-total").inner_text() == "14"
    assert page.locator("#djj-would").inner_text() == "12"
    skips = page.locator(".djj-skip").all_inner_texts()
    assert any("Would skip 1: not failed or cancelled" in s for s in skips), skips
    assert any("Would skip 1: flow parents that failed through a child" in s for s in skips), skips
    button = page.get_by_role("button", name="Yes, retry 14 jobs")
    on_first_screen(button, width)
    fits(page, width)
    screenshot(page, f"operator-q4-retry-confirm-{width}")
    docs_shot(page, "retry-confirm", width)
    assert sum(engine.get_job("default", j)["s"] == "failed" for j in listed) == 13  # nothing ran yet

    button.click()
    assert page.locator(".messagelist").inner_text().strip().startswith("Retried 12 jobs. Skipped 2")
    states = [s.strip().lower() for s in page.locator("#result_list .djj-state").all_inner_texts()]
    assert states.count("failed") == 1, states  # only the flow parent: the list shows the new states at once
    screenshot(page, f"operator-q4-retried-{width}")

    # Pause all asks first (a dialog with JavaScript; a page without it); No changes nothing.
    page.goto("/admin/django_jobs/jobrecord/queues/")
    dialogs: list[str] = []

    def dismiss(dialog) -> None:
        dialogs.append(dialog.message)
        dialog.dismiss()

    page.once("dialog", dismiss)
    page.get_by_role("button", name="Pause all queues", exact=True).click()
    assert dialogs and "Pause every queue?" in dialogs[0]  # the hidden input named confirm no longer shadows window.confirm
    assert not engine.is_paused("default") and not engine.is_paused("high")
    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name="Pause all queues", exact=True).click()
    assert "Paused every queue" in page.locator(".messagelist").inner_text()
    try:
        assert engine.is_paused("default") and engine.is_paused("high")
    finally:
        engine.resume("default")
        engine.resume("high")


def test_q5_who_did_this_the_jobs_page_shows_the_admin_and_manage_py_actions(busy_site, page, engine, width):
    _total, [(job_id, _raw)] = engine.list_jobs("low", "waiting", offset=sorted(WIDTHS).index(width), limit=1)
    page.goto(f"/admin/django_jobs/jobrecord/{job_id}/change/")  # a job of the paused queue's backlog
    page.get_by_role("button", name="Cancel", exact=True).click()
    assert "cancel" in page.locator(".messagelist").inner_text().lower()
    django_command(busy_site.env, "jobs", "retry", job_id, "--user", "admin")
    page.goto(f"/admin/django_jobs/jobrecord/{job_id}/change/")
    history = page.locator("#djj-history .djj-history-entry")
    assert history.count() == 2
    newest, oldest = history.nth(0).inner_text(), history.nth(1).inner_text()
    assert "admin" in newest and "jobs retry" in newest and "manage.py jobs" in newest
    assert "admin" in oldest and "Cancelled (admin)" in oldest
    page.locator("#djj-history").scroll_into_view_if_needed()
    fits(page, width)
    screenshot(page, f"operator-q5-history-{width}")
    docs_shot(page, "history", width)
    page.screenshot(path=str(ARTIFACTS / f"operator-q5-history-view-{width}.png"))

