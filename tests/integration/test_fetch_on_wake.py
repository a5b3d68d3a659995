"""Fetch on wake (docs/architecture.md#blocking-fetch-the-marker-list): an idle worker's wait and fetch in one round trip."""

from __future__ import annotations

import threading

from django_jobs import job
from django_jobs.compat import TaskResultStatus
from django_jobs.events import wait_for_result
from tests.redis_server import wait_until
from tests.testapp import jobs

WORKER = "host:1:abcdef"


@job
def thread_name(n: int = 0) -> str:
    """The name of the thread that ran the job."""
    return threading.current_thread().name


def _wait_in_thread(engine, timeout: float, count: int = 4):
    """Start ``fetch_on_wake`` on "default" in a thread; return (thread, results, client ids)."""
    out: list = []
    ids: list = []

    def run() -> None:
        out.append(engine.fetch_on_wake("default", timeout, count, lease_ms=30_000, worker_id=WORKER, start_now=count,
                                        blocked=ids.append))

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    wait_until(lambda: ids, message="the wait to be sent")
    return thread, out, ids


def test_a_job_enqueued_during_the_wait_comes_back_in_the_wake_ups_own_reply(engine, r):
    # Each test starts with Redis' script cache flushed: the first calls load the scripts (NOSCRIPT, then EVAL).
    jobs.add.enqueue(0, 0)
    assert len(engine.fetch_on_wake("default", 0.01, 1, lease_ms=30_000, worker_id=WORKER).jobs) == 1
    thread, out, ids = _wait_in_thread(engine, 10.0)
    assert isinstance(ids[0], int)
    r.config_resetstat()
    result = jobs.add.enqueue(2, 3)
    thread.join(timeout=5)
    assert not thread.is_alive()
    [claimed] = out[0].jobs
    assert claimed.id == result.id and claimed.queue == "default"
    # One fetch for the wake-up, sent with the wait: the enqueue and the fetch are the only script calls.
    stats = r.info("commandstats")
    assert (stats["cmdstat_evalsha"]["calls"], stats["cmdstat_evalsha"]["failed_calls"]) == (2, 0)
    assert stats["cmdstat_zpopmin"]["calls"] == 1 and "cmdstat_eval" not in stats
    assert result.refresh() is None and result.status == TaskResultStatus.RUNNING
    assert r.llen(engine.keys("default").marker) == 0  # the token was taken


def test_the_wait_ends_at_its_timeout_and_still_fetches(engine):
    result = jobs.add.enqueue(1, 1)
    engine.client.delete(engine.keys("default").marker)  # a job waiting with no token: the timeout's fetch finds it
    res = engine.fetch_on_wake("default", 0.05, 4, lease_ms=30_000, worker_id=WORKER)
    assert [c.id for c in res.jobs] == [result.id]


def test_unblock_ends_the_wait_at_once(engine):
    thread, out, ids = _wait_in_thread(engine, 25.0)
    engine.unblock(ids[0])
    thread.join(timeout=5)  # far below the wait's 25 s
    assert not thread.is_alive() and out[0].jobs == []


def test_a_stopping_worker_hands_back_what_its_wake_up_fetch_claimed(engine):
    from django_jobs.worker.process import WorkerProcess

    worker = WorkerProcess(queues=["default"], threads=2, grace=1.0)
    worker.start()
    try:
        wait_until(lambda: worker._blocked_id is not None, message="the fetcher to wait on the marker")
        worker.stopping.set()  # stopping, but the wait not ended yet: a job arrives first
        result = jobs.add.enqueue(4, 5)
        fetcher = next(t for t in worker._threads if t.name == "djj-fetcher")
        fetcher.join(timeout=5)
        assert not fetcher.is_alive()
        assert result.refresh() is None and result.status == TaskResultStatus.READY
        counts = engine.counts("default")
        assert (counts["waiting"], counts["active"]) == (1, 0) and not worker._leases  # handed back, not run
    finally:
        worker.request_stop()
        worker.shutdown()


def test_shutdown_ends_an_idle_fetchers_wait(engine):
    from django_jobs.worker.process import WorkerProcess

    worker = WorkerProcess(queues=["default"], threads=2, grace=1.0)
    worker.start()
    wait_until(lambda: worker._blocked_id is not None, message="the fetcher to wait on the marker")
    worker.request_stop()
    worker.shutdown()
    for thread in worker._threads:
        if thread.name.startswith("djj-fetcher"):
            thread.join(timeout=2)  # the waiting one's 5 s wait was ended, not left to run out
            assert not thread.is_alive()


def test_an_idle_worker_runs_the_job_on_the_thread_whose_wait_ended(engine):
    from django_jobs.worker.process import WorkerProcess

    worker = WorkerProcess(queues=["default"], threads=2, grace=1.0)
    worker.start()
    try:
        names = []
        for n in range(3):  # the two fetcher threads take turns: each wake-up is run where it arrived
            wait_until(lambda: worker._blocked_id is not None and worker._role_waiting == 1, message="an idle worker")
            result = wait_for_result(thread_name.enqueue(n), timeout=10)
            assert result.status == TaskResultStatus.SUCCESSFUL
            names.append(result.return_value)
        assert all(name.startswith("djj-fetcher") for name in names), names
        # A burst into the idle worker: the first job stays on the fetcher thread, the rest go to the job threads.
        burst = thread_name.enqueue_many([(n,) for n in range(20)])
        done = [wait_for_result(r, timeout=10) for r in burst]
        assert all(r.status == TaskResultStatus.SUCCESSFUL for r in done)
        assert any(r.return_value.startswith("djj-job_") for r in done)
    finally:
        worker.request_stop()
        worker.shutdown()


_overlap = threading.Lock()
_running = [0, 0]  # running now, most at once


@job
def overlapping(n: int) -> None:
    """Count how many of these run at once."""
    with _overlap:
        _running[0] += 1
        _running[1] = max(_running)
    threading.Event().wait(0.05)
    with _overlap:
        _running[0] -= 1


def test_a_kept_job_counts_against_threads(engine):
    from django_jobs.worker.process import WorkerProcess

    _running[:] = [0, 0]
    worker = WorkerProcess(queues=["default"], threads=1, grace=1.0)
    worker._avg_run = 0.0  # short jobs: the worker claims one ahead of its one thread
    worker.start()
    try:
        wait_until(lambda: worker._blocked_id is not None and worker._role_waiting == 1, message="an idle worker")
        first = overlapping.enqueue(0)  # kept by the fetcher thread whose wait it ends
        wait_until(lambda: _running[0] == 1, message="the first job to run")
        rest = overlapping.enqueue_many([(n,) for n in range(1, 6)])  # claimed ahead meanwhile
        done = [wait_for_result(r, timeout=10) for r in [first, *rest]]
        assert all(r.status == TaskResultStatus.SUCCESSFUL for r in done)
        assert _running[1] == 1  # --threads 1: never two at once
    finally:
        worker.request_stop()
        worker.shutdown()


def _wait_once(engine) -> int:
    """One short fetch-on-wake wait on "default" in the calling thread; return its connection's client id."""
    ids: list = []
    engine.fetch_on_wake("default", 0.01, 1, lease_ms=30_000, worker_id=WORKER, blocked=ids.append)
    assert isinstance(ids[0], int)
    return ids[0]


def test_a_thread_keeps_its_blocking_connection_between_waits(engine, r):
    first = _wait_once(engine)
    assert _wait_once(engine) == first and _wait_once(engine) == first  # no checkout and release per wait
    out: list = []
    thread = threading.Thread(target=lambda: out.append(_wait_once(engine)))
    thread.start()
    thread.join(timeout=5)
    assert out and out[0] != first  # each thread its own


def test_a_kept_connection_killed_while_idle_is_replaced_at_the_next_wait(engine, r):
    first = _wait_once(engine)
    r.client_kill_filter(_id=first)
    result = jobs.add.enqueue(1, 2)
    ids: list = []
    res = engine.fetch_on_wake("default", 1.0, 1, lease_ms=30_000, worker_id=WORKER, blocked=ids.append)
    assert [c.id for c in res.jobs] == [result.id]  # no error: reconnected, as the pool's checkout did
    assert ids[0] != first
    assert _wait_once(engine) == ids[0]  # and kept again


def test_a_wait_whose_connection_drops_fails_and_the_next_one_reconnects(engine, r):
    from django_jobs.exceptions import RedisUnavailable

    ids: list = []
    errors: list = []

    def run() -> None:
        try:
            engine.fetch_on_wake("default", 25.0, 1, lease_ms=30_000, worker_id=WORKER, blocked=ids.append)
        except RedisUnavailable as exc:
            errors.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    wait_until(lambda: ids, message="the wait to be sent")
    wait_until(lambda: any(c["id"] == str(ids[0]) and c["cmd"] == "blpop" for c in r.client_list()), message="the wait to block")
    # Killed during the wait (not while idle): the wait fails, as before (never sent again: it may have run).
    r.client_kill_filter(_id=ids[0])
    thread.join(timeout=5)
    assert not thread.is_alive() and len(errors) == 1
    result = jobs.add.enqueue(1, 2)
    res = engine.fetch_on_wake("default", 1.0, 1, lease_ms=30_000, worker_id=WORKER)
    assert [c.id for c in res.jobs] == [result.id]  # the next wait connects again


def test_close_disconnects_the_kept_connection_and_the_next_wait_connects_again(engine, r):
    first = _wait_once(engine)
    engine.close()
    wait_until(lambda: str(first) not in {c["id"] for c in r.client_list()}, message="the kept connection to be closed")
    second = _wait_once(engine)
    assert second != first


def test_a_wait_made_after_close_leaves_no_socket_open(engine, r):
    """A fetcher thread not stopped yet when its engine is closed: its next wait connects again; when that wait ends, it closes.

    Before, the reconnected socket stayed open for as long as the thread lived (a fetcher
    still running at interpreter exit: "ResourceWarning: unclosed <socket.socket ...>" once
    every test had passed, CI's fast tier).
    """
    from django_jobs.exceptions import RedisUnavailable

    ids: list = []
    outcomes: list = []
    kept: list = []
    waits_over = threading.Event()
    release = threading.Event()

    def fetcher() -> None:
        for timeout in (25.0, 0.2):  # the wait close() ends, then the one the fetcher makes before it sees it must stop
            try:
                engine.fetch_on_wake("default", timeout, 1, lease_ms=30_000, worker_id=WORKER, blocked=ids.append)
                outcomes.append("ended")
            except RedisUnavailable:
                outcomes.append("failed")
        kept.append(engine._lane.blocking.conn)  # this thread's kept connection
        waits_over.set()
        release.wait(10)  # the thread lives on, as a fetcher left running at exit does

    thread = threading.Thread(target=fetcher, daemon=True)
    thread.start()
    try:
        wait_until(lambda: ids, message="the wait to be sent")
        wait_until(lambda: any(c["id"] == str(ids[0]) and c["cmd"] == "blpop" for c in r.client_list()), message="the wait to block")
        engine.close()
        assert waits_over.wait(10), outcomes
        assert len(outcomes) == 2 and len(ids) == 2 and ids[1] != ids[0]  # the second wait connected again
        assert kept[0]._sock is None  # closed when its wait ended, not left to the garbage collector
        wait_until(lambda: not {str(i) for i in ids} & {c["id"] for c in r.client_list()}, 5,
                   message="both waits' connections gone from the server")
    finally:
        release.set()
        thread.join(5)


def test_a_forked_child_waits_on_a_connection_of_its_own(engine):
    import os

    first = _wait_once(engine)
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never the parent's socket
        code = 1
        try:
            os.write(write_fd, str(_wait_once(engine)).encode())
            code = 0
        finally:
            os._exit(code)
    os.close(write_fd)
    child_id = int(os.read(read_fd, 64) or b"0")
    os.close(read_fd)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert child_id not in (0, first)
    assert _wait_once(engine) == first  # the parent's connection is untouched


_release_first = threading.Event()
_first_in_receiver = threading.Event()


@job
def tagged(tag: str) -> str:
    return tag


def _block_the_first(sender, task_result, **kwargs) -> None:
    """A job_started receiver (the user's code, before the job's own) that blocks while the "first" job starts."""
    if task_result.args == ["first"]:
        _first_in_receiver.set()
        _release_first.wait(10)


def test_a_kept_job_hands_the_fetchers_role_over_before_the_users_code_can_block(engine):
    from django_jobs import signals
    from django_jobs.worker.process import WorkerProcess

    _release_first.clear()
    _first_in_receiver.clear()
    signals.job_started.connect(_block_the_first)
    worker = WorkerProcess(queues=["default"], threads=2, grace=1.0)
    worker.start()
    try:
        wait_until(lambda: worker._blocked_id is not None and worker._role_waiting == 1, message="an idle worker")
        first = tagged.enqueue("first")  # kept by the fetcher thread whose wait it ends
        assert _first_in_receiver.wait(10)
        # Its thread is blocked in a receiver: the other fetcher thread has the role and fetches.
        second = wait_for_result(tagged.enqueue("second"), timeout=10)
        assert second.status == TaskResultStatus.SUCCESSFUL
        assert first.refresh() is None and first.status == TaskResultStatus.RUNNING
        _release_first.set()
        assert wait_for_result(first, timeout=10).status == TaskResultStatus.SUCCESSFUL
    finally:
        _release_first.set()
        signals.job_started.disconnect(_block_the_first)
        worker.request_stop()
        worker.shutdown()
