"""A worker's lease book-keeping when a job's retry is claimed again before the last run's replies are in.

A retry without delay (``backoff="none"`` or ``0``) is waiting again the moment its settle is
written, and the fetcher may claim the job's next run before the completer (settle) or the
heartbeat (renew) has looked at what Redis answered about the run before. Those answers are
about the earlier run: they must not remove the next run's lease. When they did, the burst
worker saw no lease left, declared the queues empty and exited with the job still running in
Redis (its outcome dropped as "lease lost"): tests/integration/test_jobs.py's retry tests
failed that way under load.

The interleavings are made exact with the worker's fault points (worker/faults.py): the test
runs the worker's steps itself, in one thread, against the real Redis.
"""

from __future__ import annotations

import math
import threading
import time

import pytest

from django_jobs.compat import TaskResultStatus
from django_jobs.worker import executor, faults
from tests.testapp import jobs


@pytest.fixture
def worker(engine):
    from django_jobs.worker.process import WorkerProcess

    worker = WorkerProcess(queues=["default"], threads=1, grace=1.0, burst=True)  # its threads are not started
    yield worker
    with worker._cond:
        left = list(worker._leases.values())
    worker._release(left)


def _run(job, prepared):
    """Run a claimed job on a thread of its own, as a job thread does (worker/process.py); return its outcome.

    (Not on the test's thread: the executor closes that thread's database connections, which
    pytest-django guards.)
    """
    job.started = time.monotonic()
    out = []
    thread = threading.Thread(target=lambda: out.append(executor.run_sync(job, prepared)))
    thread.start()
    thread.join(timeout=30)
    [outcome] = out
    return outcome


def _claim_and_fail(worker):
    """Claim the failing job and run it here: its first run and that run's retry outcome."""
    assert worker._fetch_round(1) == (1, -1)
    first, prepared = worker._ready.popleft()
    return first, _run(first, prepared)


def test_a_retry_claimed_again_before_its_settle_returns_keeps_the_new_runs_lease(worker, monkeypatch):
    result = jobs.always_fails.enqueue()
    first, outcome = _claim_and_fail(worker)
    again = []

    def point(name: str) -> None:
        if name == "after_settle" and not again:
            # The retry is written (waiting again, no delay); the fetcher claims it before the
            # completer looks at the settle's reply.
            assert worker._fetch_round(1)[0] == 1
            again.append(worker._leases[result.id])

    monkeypatch.setattr(faults, "point", point)
    worker._settle([(first, outcome)])
    [second] = again
    assert second is not first and second.claimed.attempt == 2
    assert worker._leases.get(result.id) is second  # the first run's settle does not remove the second's lease
    assert not second.decided
    lost, _ = worker.engine.renew("default", [(second.id, second.claimed.token)], lease_ms=worker.lease_ms)
    assert lost == []  # the second run owns the job
    assert result.refresh() is None and result.status == TaskResultStatus.RUNNING


def test_a_renewal_answered_for_the_settled_run_does_not_drop_the_runs_claimed_after_it(worker, monkeypatch):
    result = jobs.always_fails.enqueue()
    first, outcome = _claim_and_fail(worker)
    again = []

    def point(name: str) -> None:
        if name == "after_settle" and not again:
            # The heartbeat renews while the first run's lease is still listed (settled in Redis) ...
            again.append(None)
            worker._renew()
        elif name == "after_renew" and again == [None]:
            # ... and its reply (the first run's lease is lost) is read after the retry was claimed again.
            assert worker._fetch_round(1)[0] == 1
            again.append(worker._leases[result.id])

    monkeypatch.setattr(faults, "point", point)
    worker._settle([(first, outcome)])
    second = again[1]
    assert second is not first and second.claimed.attempt == 2
    assert worker._leases.get(result.id) is second and not second.decided  # still counted: the burst goes on
    # Its outcome is settled, not dropped: the job ends failed (attempt 2 of 2).
    worker._ready.popleft()
    worker._settle([(second, _run(second, second.prepared))])
    assert result.id not in worker._leases
    assert result.refresh() is None and result.status == TaskResultStatus.FAILED


def test_a_retry_settled_by_the_fetch_that_claims_it_again_keeps_the_new_runs_lease(worker):
    # The outcome rides the next fetch (one round trip, the settle first): the retry is waiting
    # again when the fetch runs, so that very fetch claims its next run, under the same id.
    result = jobs.always_fails.enqueue()
    first, outcome = _claim_and_fail(worker)
    for name in ("settle", "fetch"):  # cached (a settle meeting NOSCRIPT would run after the fetch)
        worker.engine.client.script_load(worker.engine._scripts[name].script)
    with worker._cond:
        worker._add_outcome(first, outcome)
        worker._unstarted.add("claimed-ahead")  # a job thread has work: the fetch may carry the settle
    assert worker._fetch_round(1) == (1, -1)
    assert worker._pending == []  # taken by the fetch
    second = worker._leases.get(result.id)
    assert second is not None and second is not first and second.claimed.attempt == 2
    assert not second.decided and worker._settles == 1
    lost, _ = worker.engine.renew("default", [(second.id, second.claimed.token)], lease_ms=worker.lease_ms)
    assert lost == []  # the second run owns the job
    # Its outcome rides the next fetch too (which finds nothing): the job ends failed (attempt 2 of 2).
    again, prepared = worker._ready.popleft()
    assert again is second
    with worker._cond:
        worker._add_outcome(second, _run(second, prepared))
    assert worker._fetch_round(1) == (0, -1)
    assert result.id not in worker._leases and worker._pending == []
    assert result.refresh() is None and result.status == TaskResultStatus.FAILED


def test_outcomes_of_another_queue_stay_for_the_completer(worker):
    result = jobs.always_fails.enqueue()
    first, outcome = _claim_and_fail(worker)
    with worker._cond:
        worker._add_outcome(first, outcome)
        assert worker._take_outcomes("other") == []
        assert worker._pending == [(first, outcome)]
    worker._settle(worker._take_outcomes("default"))  # as the completer does
    assert result.id not in worker._leases


def test_a_fetch_the_job_threads_wait_for_leaves_the_outcomes_to_the_completer(worker):
    # Every claimed job has started: the fetch goes alone (no settle's Redis time before the claim)
    # and the completer is told to settle the pending outcomes at once.
    result = jobs.always_fails.enqueue()
    first, outcome = _claim_and_fail(worker)
    with worker._cond:
        worker._unstarted.clear()
        worker._add_outcome(first, outcome)
    assert worker._fetch_round(1) == (0, -1)  # the retry is not written yet: nothing to claim
    assert worker._pending == [(first, outcome)] and worker._pending_since == -math.inf
    worker._settle(worker._take_outcomes("default"))  # as the completer does
    assert result.id not in worker._leases
