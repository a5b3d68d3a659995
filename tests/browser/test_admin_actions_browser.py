"""Issue 18, question 4 in headless Chromium at 1024 px: "Retry these failed jobs" states its
true scope (count, what it skips and why) before anything runs, then the list shows the new
states. Screenshot: tests/artifacts/actions-retry-confirm-1024.png."""

from __future__ import annotations

import pytest

from tests.browser.conftest import box_of, logged_in, screenshot, set_live
from tests.redis_server import wait_until
from tests.testapp.jobs import add, flaky

pytestmark = [pytest.mark.browser, pytest.mark.timeout(180)]

WIDTH, HEIGHT = 1024, 768


@pytest.fixture
def narrow(browser, site):
    context, page = logged_in(browser, site, WIDTH, HEIGHT)
    yield page
    context.close()


def test_retry_confirms_its_scope_then_the_list_shows_the_new_states(site, narrow, engine):
    page = narrow
    failed = [flaky.using(attempts=1).enqueue(f"confirm-{i}", 1).id for i in range(5)]  # fail once, then succeed
    add.enqueue_many([(i, i) for i in range(2)])
    wait_until(lambda: engine.counts("default")["failed"] == 5 and engine.counts("default")["completed"] == 2,
               timeout=30, message="the workers ran the jobs")
    site.mirror()

    page.goto("/admin/django_jobs/jobrecord/")
    set_live(page, False)  # the list reloads itself: a reload under way as the rows are selected loses them
    page.locator("#action-toggle").check()  # every row of the page: 5 failed, 2 completed
    page.locator("select[name=action]").select_option("retry_jobs")
    page.locator("button[name=index]").click()

    assert page.locator("#djj-total").inner_text() == "7"
    assert page.locator("#djj-would").inner_text() == "5"
    assert "Would skip 2: not failed or cancelled" in page.locator(".djj-preview").inner_text()
    button = page.get_by_role("button", name="Yes, retry 7 jobs")
    box = box_of(button)
    assert box["x"] + box["width"] <= WIDTH and box["y"] + box["height"] <= HEIGHT  # on the first screen
    assert all(engine.get_job("default", j)["s"] == "failed" for j in failed)  # nothing ran yet
    screenshot(page, "actions-retry-confirm-1024")

    button.click()
    assert page.locator(".messagelist").inner_text().strip() == "Retried 5 jobs. Skipped 2: 2 not failed or cancelled."
    states = {page.locator(f'tr:has(a[href*="{j}"]) .djj-state').inner_text().strip().lower() for j in failed}
    assert "failed" not in states, states  # the live states, though the mirror has not run since
    screenshot(page, "actions-retried-1024")
