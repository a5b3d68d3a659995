"""Unique jobs, throttling and debounce through the job API, a real Redis and in-process workers."""

from __future__ import annotations

import threading

import pytest

from django_jobs import InvalidJob, job
from django_jobs.compat import TaskResultStatus
from django_jobs.engine import get_engine
from tests.conftest import read_ledger
from tests.testapp import jobs_limits

# Every test also runs against a real Redis Cluster (tests/conftest.py).
pytestmark = pytest.mark.parametrize("topology", ["server", "cluster"], indirect=True)


def lock_keys() -> list[str]:
    engine = get_engine()
    return list(engine.client.scan_iter(match=engine.keys("default").unique_prefix + "*"))


def test_a_unique_job_enqueued_twice_while_waiting_returns_the_first_and_says_so(work):
    first = jobs_limits.sync_account.enqueue(7)
    again = jobs_limits.sync_account.enqueue(account_id=7)  # same arguments, spelled differently
    other = jobs_limits.sync_account.enqueue(7, full=True)
    assert not first.deduplicated and again.deduplicated and not other.deduplicated
    assert again.id == first.id != other.id
    assert get_engine().counts("default")["waiting"] == 2
    engine = get_engine()
    dedup = [f for _, f in engine.client.xrange(engine.keys("default").events) if f["e"] == "deduplicated"]
    assert dedup == [{"e": "deduplicated", "j": first.id, "dup": dedup[0]["dup"]}]
    work()
    assert lock_keys() == []  # released when the jobs finished
    # Finished: the key is free, a new enqueue makes a new job.
    later = jobs_limits.sync_account.enqueue(7)
    assert not later.deduplicated and later.id != first.id
    work()


def test_50_concurrent_enqueues_with_one_unique_key_create_exactly_one_job(work):
    results: list = []
    barrier = threading.Barrier(50)

    def enqueue(i: int) -> None:
        barrier.wait()
        results.append(jobs_limits.charge.enqueue(42, i))

    threads = [threading.Thread(target=enqueue, args=(i,)) for i in range(50)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len({r.id for r in results}) == 1
    assert sum(1 for r in results if not r.deduplicated) == 1
    assert get_engine().counts("default")["waiting"] == 1
    work()


def test_debounce_keeps_the_last_arguments_and_run_time(work, ledger_path):
    first = jobs_limits.reindex.using(delay=5).enqueue(1, 1)
    second = jobs_limits.reindex.using(delay=5).enqueue(1, 2)
    last = jobs_limits.reindex.enqueue(1, 3)  # due now: the waiting job moves up
    assert second.deduplicated and last.deduplicated and second.id == last.id == first.id
    last.refresh()
    assert last.state == "waiting" and last.args == [1, 3]
    work()
    assert [row[2:] for row in read_ledger(ledger_path) if row[0] == "reindex"] == [["1", "3"]]
    last.refresh()
    assert last.return_value == 3


def test_a_unique_key_is_released_after_the_job_fails_and_held_while_it_runs(engine):
    from django_jobs.engine.queue import Outcome

    first = jobs_limits.charge.enqueue(5, -1)
    claimed = engine.fetch("default", 1, lease_ms=60_000, worker_id="w1").jobs[0]
    # unique_until="finish": still guarded while it runs.
    assert jobs_limits.charge.enqueue(5, 10).id == first.id
    assert engine.settle("default", [Outcome(claimed.id, claimed.token, "f", '{"exception_class_path": "x", "traceback": ""}')]) == [1]
    assert lock_keys() == []
    fresh = jobs_limits.charge.enqueue(5, 10)
    assert not fresh.deduplicated and fresh.id != first.id
    assert fresh.cancel() == "cancelled"
    assert lock_keys() == []  # released on cancel too


def test_a_unique_key_survives_stalled_recovery_and_is_released_when_recovery_fails_the_job(engine):
    first = jobs_limits.charge.enqueue(9, 1)
    for _ in range(4):  # MAX_RECOVERIES is 3 in the test settings
        engine.fetch("default", 1, lease_ms=60_000, worker_id="w1")
        recovery = engine.recover("default", now_ms=engine.server_time_ms() + 120_000)
        assert recovery == (1, 0) or recovery == (0, 1)
        if recovery == (1, 0):
            assert jobs_limits.charge.enqueue(9, 2).id == first.id  # back to waiting: still guarded
    first.refresh()
    assert first.state == "failed" and first.failure_reason == "worker_lost"
    assert lock_keys() == []
    assert not jobs_limits.charge.enqueue(9, 3).deduplicated
    for r in get_engine().list_jobs("default", "waiting")[1]:
        get_engine().cancel("default", r[0])


def test_unique_for_throttles_to_one_job_per_window_even_after_it_finished(work):
    first = jobs_limits.throttled_report.enqueue("daily")
    work()
    again = jobs_limits.throttled_report.enqueue("daily")
    assert again.deduplicated and again.id == first.id
    again.refresh()
    assert again.status == TaskResultStatus.SUCCESSFUL
    engine = get_engine()
    [lock] = lock_keys()
    assert 0 < engine.client.pttl(lock) <= 60_000
    engine.client.delete(lock)  # the window passed
    assert not jobs_limits.throttled_report.enqueue("daily").deduplicated
    work()


def takes_user_id(user_id: int) -> None:
    """A plain function the declaration tests turn into jobs."""


def test_bad_unique_options_are_refused_when_the_job_is_declared():
    with pytest.raises(InvalidJob, match=r"names \{user\}, which is not an argument"):
        job(unique_key="u:{user}")(takes_user_id)
    with pytest.raises(InvalidJob, match="unique_mode='last'"):
        job(unique=True, unique_mode="last")(takes_user_id)
    with pytest.raises(InvalidJob, match="unique_for=-1"):
        job(unique_for=-1)(takes_user_id)
    with pytest.raises(InvalidJob, match="unique_until='end'"):
        job(unique=True, unique_until="end")(takes_user_id)


def test_a_unique_key_that_cannot_be_computed_fails_in_the_caller():
    with pytest.raises(InvalidJob, match="unique_key"):
        jobs_limits.reindex.enqueue_on_commit(1)  # the key callable needs two arguments
    with pytest.raises(InvalidJob, match="unique_key"):
        jobs_limits.reindex.enqueue(1)
    assert get_engine().counts("default")["waiting"] == 0


def test_an_operator_retry_takes_a_free_unique_key_back_and_skips_while_another_job_holds_it(work):
    import io
    import json

    from django.core.management import CommandError, call_command

    from django_jobs.admin import run_job_action
    from django_jobs.limits import retry_jobs

    failed = jobs_limits.charge.enqueue(1, -5)
    work()

    def state() -> str:
        return get_engine().get_job("default", failed.id)["s"]

    assert state() == "failed" and lock_keys() == []
    holder = jobs_limits.charge.enqueue(1, 10)  # the key is free: a new job holds it
    assert not holder.deduplicated
    # The admin, the command and retry_jobs all leave the failed job alone while holder guards the key.
    report = run_job_action("retry", [("default", failed.id)])
    assert report.done == 0 and report.skipped == {"their unique key is held by another job": 1}
    with pytest.raises(CommandError, match="another job holds its unique key"):
        call_command("jobs", "retry", failed.id, stdout=io.StringIO())
    assert retry_jobs("default") == 0
    out = io.StringIO()
    call_command("jobs", "retry", "--failed", "default", "--yes", "--json", stdout=out, stderr=io.StringIO())
    assert json.loads(out.getvalue()) == {"queue": "default", "retried": 0, "held": 1}
    assert state() == "failed"
    work()  # holder runs and releases the key
    assert lock_keys() == []
    report = run_job_action("retry", [("default", failed.id)])
    assert report.done == 1 and not report.skipped
    again = jobs_limits.charge.enqueue(1, 20)
    assert again.deduplicated and again.id == failed.id  # the retried job holds its key again
    work()
    assert lock_keys() == []  # released when the retried job finished (failed again)


def test_guarded_enqueues_return_the_enqueued_at_that_get_result_reads_back():
    """Created, deduplicated (the kept job's time) and replaced (debounce) results all carry the job's stored time."""
    from django_jobs.compat import default_task_backend

    results = [jobs_limits.sync_account.enqueue(n % 150) for n in range(300)]  # 150 created, 150 deduplicated
    results += [jobs_limits.reindex.enqueue(n % 50, n) for n in range(200)]  # 50 created, 150 replaced
    results += jobs_limits.sync_account.enqueue_many([(n,) for n in range(100, 250)])  # 50 deduplicated, 100 created
    assert sum(r.deduplicated for r in results) == 150 + 150 + 50
    for r in results:
        fresh = default_task_backend.get_result(r.id)
        assert r.enqueued_at is not None and (r.enqueued_at, r.task.run_after) == (fresh.enqueued_at, fresh.task.run_after), r.id
