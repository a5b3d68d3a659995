"""Realistic data for the operator tests and docs/admin.md's screenshots: about 3,000 jobs over three queues.

``default``: 1,800 quick jobs, 40 that always fail (ValueError), 30 that fail once and succeed on
their retry, flows (12 that succeed, 3 whose child fails), and for each window width the
operator tests use (1024, 1440) a group tagged ``q4-<width>``: 12 failed jobs whose retry
succeeds, one that completed, one failed flow parent whose child (not tagged) failed it.
``high``: 700 quick jobs and a cron schedule (tests/browser/settings_busy.py). ``low``: paused
with a backlog of 300 waiting jobs. A few jobs are scheduled an hour ahead.

Run inside the site's environment (the workers must be running)::

    python -m django shell -c "from tests.browser.seed import seed; seed()"
"""

from __future__ import annotations

import time

#: The window widths the operator tests use; each gets its own q4 group.
WIDTHS = (1024, 1440)


def seed(timeout: float = 180) -> dict[str, dict[str, int]]:
    """Enqueue the jobs, wait until the workers ran everything runnable, mirror it; return the counts."""
    from django_jobs.engine import get_engine
    from django_jobs.flows import Flow
    from django_jobs.mirror import mirror_once
    from tests.testapp import jobs_flows as jf
    from tests.testapp.jobs import add, always_fails, flaky

    engine = get_engine()
    engine.pause("low")
    add.using(queue_name="low").enqueue_many([(i, i) for i in range(300)])
    add.using(delay=3600).enqueue_many([(i, 0) for i in range(5)])
    add.enqueue_many([(i, i) for i in range(1800)])
    add.using(queue_name="high").enqueue_many([(i, 1) for i in range(700)])
    always_fails.using(attempts=1).enqueue_many([() for _ in range(40)])
    flaky.enqueue_many([(f"retried-{i}", 1) for i in range(30)])
    for i in range(12):
        Flow(jf.gather.s(f"report-{i}"), children=[jf.value.s(i), jf.value.s(i + 1)]).enqueue()
    for i in range(3):
        Flow(jf.gather.s(f"invoice-run-{i}"), children=[jf.value.s(i), jf.broken.s(f"invoice-{i}")]).enqueue()
    for width in WIDTHS:
        flaky.using(attempts=1).enqueue_many([(f"q4-{width}-{i}", 1) for i in range(12)])
        flaky.enqueue(f"q4-{width}-ok", 0)
        Flow(jf.gather.s(f"q4-{width}-parent"), children=[jf.value.s(1), jf.broken.s(f"child-{width}")]).enqueue()

    def busy() -> bool:
        counts = [engine.counts(q) for q in ("default", "high")]
        return any(c["waiting"] or c["active"] or c["waiting_children"] for c in counts)

    deadline = time.monotonic() + timeout
    while busy():
        if time.monotonic() > deadline:
            raise AssertionError(f"the workers did not run the seed in {timeout} s: {[engine.counts(q) for q in ('default', 'high')]}")
        time.sleep(0.2)
    mirror_once()
    return {q: engine.counts(q) for q in ("default", "high", "low")}
