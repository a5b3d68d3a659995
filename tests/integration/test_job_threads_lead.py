"""Job threads pull (leader/follower, worker/process.py ``_job_thread``): at saturation a job thread fetches.

While short jobs keep the queue busy, a job thread whose run ends does the fetch that is due
itself (when none is in flight), runs the first job of what it claimed on its own thread (no
hand-off) and wakes one idle job thread per other job it queued (``notify(n)``, never all). The
fetcher thread starts the drain, waits on the markers when it ends, and is not woken meanwhile.

The first tests run one job thread (and the completer) by hand on a worker whose other threads
are not started, so which thread fetches and runs what is exact.
"""

from __future__ import annotations

import threading

import pytest

from django_jobs import job
from django_jobs.compat import TaskResultStatus
from django_jobs.events import wait_for_result
from tests.redis_server import wait_until


@job
def thread_name(n: int = 0) -> str:
    """The name of the thread that ran the job."""
    return threading.current_thread().name


_ran: list[int] = []


@job
def record(n: int) -> None:
    """Note that it ran."""
    _ran.append(n)


def _fetch_threads(engine, monkeypatch) -> list[tuple[str, int]]:
    """Record (thread name, jobs claimed) for every fetch ``engine`` makes from now on."""
    calls: list[tuple[str, int]] = []
    fetch, settle_and_fetch = engine.fetch, engine.settle_and_fetch

    def counting_fetch(queue, count, **kw):
        res = fetch(queue, count, **kw)
        calls.append((threading.current_thread().name, len(res.jobs)))
        return res

    def counting_settle_and_fetch(queue, outcomes, count, **kw):
        codes, res = settle_and_fetch(queue, outcomes, count, **kw)
        calls.append((threading.current_thread().name, len(res.jobs)))
        return codes, res

    monkeypatch.setattr(engine, "fetch", counting_fetch)
    monkeypatch.setattr(engine, "settle_and_fetch", counting_settle_and_fetch)
    return calls


@pytest.fixture
def leading(engine):
    """A worker whose last fetch found work, with short jobs: only the threads a test starts run."""
    from django_jobs.worker.process import WorkerProcess

    worker = WorkerProcess(queues=["default"], threads=2, grace=1.0, burst=True, engine=engine)
    worker._avg_run = 0.0  # short jobs (claimed ahead)
    worker._lead_ok = True
    worker._fetch_active = True
    started: list[threading.Thread] = []

    def start(target, name: str) -> threading.Thread:
        thread = threading.Thread(target=target, name=name, daemon=True)
        thread.start()
        started.append(thread)
        worker._threads.append(thread)
        return thread

    worker.start_thread = start
    yield worker
    with worker._lock:
        worker._jobs_stop = True
        worker._job_cond.notify_all()
        worker._settle_stop = True
        worker._settle_cond.notify()
    for thread in started:
        thread.join(timeout=10)
        assert not thread.is_alive()
    with worker._lock:
        left = list(worker._leases.values())
    worker._release(left)


def _settle_when_done(worker, claimed: int) -> None:
    """Once ``claimed`` jobs were claimed and ended, let the completer settle (as the fetcher thread going idle does)."""
    wait_until(lambda: worker._claimed == claimed and not worker._ready and not worker._running and worker._free == worker.capacity,
               message="the jobs to end")
    with worker._lock:
        worker._fetcher_idle()


def test_a_job_thread_fetches_and_runs_the_first_job_it_claimed_itself(leading, engine, monkeypatch):
    worker = leading
    results = thread_name.enqueue_many([(n,) for n in range(3)])
    calls = _fetch_threads(engine, monkeypatch)
    woken: list[int] = []
    notify = worker._job_cond.notify
    monkeypatch.setattr(worker._job_cond, "notify", lambda n=1: (woken.append(n), notify(n)))
    worker.start_thread(worker._complete_loop, "djj-completer")
    worker.start_thread(worker._job_thread, "djj-job_0")  # the only job thread: no fetcher thread runs
    _settle_when_done(worker, 3)
    done = [wait_for_result(r, timeout=10) for r in results]
    assert [r.status for r in done] == [TaskResultStatus.SUCCESSFUL] * 3
    assert {r.return_value for r in done} == {"djj-job_0"}  # run where they were fetched
    # It fetched for the free slots (4: two threads, two ahead) and got the three; its second fetch
    # (one slot still free) found nothing: the fetching is the fetcher thread's again.
    assert calls[:2] == [("djj-job_0", 3), ("djj-job_0", 0)]
    assert not worker._lead_ok
    # One wake-up per job it queued but the one it ran itself; never all the waiters.
    assert woken == [2]


def test_a_fetch_wakes_one_idle_job_thread_per_job_queued(leading, engine, monkeypatch):
    worker = leading
    thread_name.enqueue_many([(n,) for n in range(3)])
    woken: list[int] = []
    notify = worker._job_cond.notify
    monkeypatch.setattr(worker._job_cond, "notify", lambda n=1: (woken.append(n), notify(n)))
    notify_all = worker._job_cond.notify_all
    monkeypatch.setattr(worker._job_cond, "notify_all", lambda: (woken.append(-1), notify_all()))
    assert worker._fetch_round(4) == (3, -1)  # the fetcher thread's fetch: none of them is run by it
    assert woken == [3] and len(worker._ready) == 3  # notify(3), not notify_all


def test_while_job_threads_lead_the_fetcher_thread_is_not_woken(engine, monkeypatch):
    """A burst drain of short jobs: after the first fetch the job threads do (nearly) all of it."""
    from django_jobs.worker.process import WorkerProcess

    calls = _fetch_threads(engine, monkeypatch)
    thread_name.enqueue_many([(n,) for n in range(600)])
    worker = WorkerProcess(queues=["default"], threads=2, grace=1.0, burst=True, engine=engine)
    worker._avg_run = 0.0
    worker.run()
    assert worker.processed == 600
    by_fetcher = [got for name, got in calls if name == "djj-fetcher"]
    by_job_threads = [got for name, got in calls if name.startswith("djj-job_")]
    # The fetcher: the first fetch, the empty ones at the end while the last jobs finish (and one a
    # second as a fallback, on a slow machine). The job threads claim the rest.
    assert len(by_fetcher) <= 6, calls
    assert sum(by_job_threads) > 500, calls


@pytest.mark.parametrize("kwargs", [{"threads": 1}, {"threads": 2, "max_jobs": 1000}], ids=["one-thread", "max-jobs"])
def test_a_lone_job_thread_or_a_recycling_worker_leaves_the_fetching_to_the_fetcher(engine, monkeypatch, kwargs):
    from django_jobs.worker.process import WorkerProcess

    calls = _fetch_threads(engine, monkeypatch)
    thread_name.enqueue_many([(n,) for n in range(100)])
    worker = WorkerProcess(queues=["default"], grace=1.0, burst=True, engine=engine, **kwargs)
    worker._avg_run = 0.0
    worker.run()
    assert worker.processed == 100
    assert calls and {name for name, _ in calls} == {"djj-fetcher"}


def test_shutdown_releases_what_a_job_threads_fetch_claimed_while_stopping(leading, engine, monkeypatch):
    worker = leading
    _ran.clear()
    results = record.enqueue_many([(n,) for n in range(3)])
    in_fetch, go_on = threading.Event(), threading.Event()
    fetch = engine.fetch

    def slow_fetch(queue, count, **kw):
        in_fetch.set()
        assert go_on.wait(10)
        return fetch(queue, count, **kw)

    monkeypatch.setattr(engine, "fetch", slow_fetch)
    worker.start_thread(worker._complete_loop, "djj-completer")
    worker.start_thread(worker._job_thread, "djj-job_0")
    assert in_fetch.wait(10)  # the job thread fetches (the fetch lock held)
    worker.request_stop()
    worker._pipe.open()  # the main thread's wake-up pipe (run() opens it): shutdown() sleeps on it
    stopping = threading.Thread(target=worker.shutdown)
    stopping.start()  # waits for the fetch in flight, then releases what it claimed
    go_on.set()
    stopping.join(timeout=20)
    assert not stopping.is_alive()
    worker._pipe.close()
    assert _ran == []  # claimed by the fetch, never started: the worker was stopping
    assert not worker._leases
    wait_until(lambda: not worker._ready and not worker._unstarted, message="the job thread to set them aside")
    assert _ran == []
    assert [r.refresh() or r.status for r in results] == [TaskResultStatus.READY] * 3
    counts = engine.counts("default")
    assert (counts["waiting"], counts["active"]) == (3, 0)  # handed back, not left to their leases


def test_a_running_job_at_shutdown_finishes_and_the_claimed_ahead_are_released(engine):
    from django_jobs.worker.process import WorkerProcess

    gate.clear()
    _ran.clear()
    worker = WorkerProcess(queues=["default"], threads=1, grace=10.0, engine=engine)
    worker._avg_run = 0.0  # claims ahead of its one thread
    worker.start()
    try:
        first = blocking.enqueue(0)
        wait_until(lambda: _ran == [0], message="the first job to run")
        rest = record.enqueue_many([(n,) for n in range(1, 4)])
        wait_until(lambda: len(worker._leases) >= 2, message="a job claimed ahead")
        worker.request_stop()
        worker._pipe.open()
        stopping = threading.Thread(target=worker.shutdown)
        stopping.start()
        wait_until(lambda: worker._deadline is not None, message="the shutdown to begin")
        gate.set()
        stopping.join(timeout=20)
        assert not stopping.is_alive()
    finally:
        gate.set()
        worker.request_stop()
        worker._pipe.close()
    assert _ran == [0]  # the claimed-ahead jobs never started
    assert wait_for_result(first, timeout=5).status == TaskResultStatus.SUCCESSFUL
    assert all(r.refresh() is None and r.status == TaskResultStatus.READY for r in rest)
    assert engine.counts("default")["active"] == 0 and not worker._leases


gate = threading.Event()


@job
def blocking(n: int) -> None:
    """Note that it ran, then wait for the test."""
    _ran.append(n)
    assert gate.wait(20)
