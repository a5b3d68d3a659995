"""Enqueue → run → result, through the real engine and an in-process worker."""

from __future__ import annotations

import pytest

from django_jobs import InvalidJob, call
from django_jobs.compat import InvalidTask, TaskResultDoesNotExist, TaskResultStatus, task_backends
from tests.testapp import jobs

# Every test runs against one Redis server, a real Redis Cluster and a real Sentinel group (tests/conftest.py).
pytestmark = pytest.mark.parametrize("topology", ["server", "cluster", "sentinel"], indirect=True)


def test_sync_job_runs_and_its_result_is_readable_from_its_id(work):
    result = jobs.add.enqueue(2, 3)
    assert result.status == TaskResultStatus.READY
    assert work() == 1
    fresh = jobs.add.get_result(result.id)
    assert fresh.status == TaskResultStatus.SUCCESSFUL
    assert fresh.return_value == 5
    assert fresh.attempts == 1
    assert fresh.started_at is not None and fresh.finished_at >= fresh.started_at


def test_async_job_runs_on_the_event_loop(work):
    result = jobs.async_add.enqueue(a=20, b=22)
    work()
    result.refresh()
    assert result.status == TaskResultStatus.SUCCESSFUL
    assert result.return_value == 42


def test_jobs_run_in_priority_order_then_fifo(work, ledger_path):
    from tests.conftest import read_ledger

    jobs.record.using(priority=-5).enqueue("low")
    jobs.record.enqueue("mid-1")
    jobs.record.using(priority=50).enqueue("high")
    jobs.record.enqueue("mid-2")
    work(threads=1)
    assert [row[2] for row in read_ledger(ledger_path)] == ["high", "mid-1", "mid-2", "low"]


def test_delayed_job_waits_until_its_time(engine, work):
    result = jobs.add.using(delay=0.3).enqueue(1, 1)
    assert result.state == "scheduled"
    assert engine.counts("default")["scheduled"] == 1
    work()
    result.refresh()
    assert result.return_value == 2
    assert result.started_at - result.enqueued_at >= __import__("datetime").timedelta(seconds=0.25)


def test_failing_job_is_retried_then_succeeds(work):
    result = jobs.flaky.enqueue("a", 2)
    work()
    result.refresh()
    assert result.status == TaskResultStatus.SUCCESSFUL
    assert result.return_value == "ok after 3"
    assert len(result.errors) == 2
    assert "flaky failure 1" in result.errors[0].traceback
    assert result.errors[0].exception_class_path == "builtins.RuntimeError"


def test_job_that_keeps_failing_is_failed_with_its_traceback(work):
    result = jobs.always_fails.enqueue()
    work()
    result.refresh()
    assert result.status == TaskResultStatus.FAILED
    assert result.state == "failed"
    assert len(result.errors) == 2
    assert "this job always fails" in result.errors[-1].traceback
    with pytest.raises(ValueError):
        result.return_value  # noqa: B018


def test_retry_exception_reschedules_with_its_delay(work):
    result = jobs.retry_later.enqueue("x")
    work()
    result.refresh()
    assert result.return_value == "done"
    assert result.errors[0].exception_class_path == "django_jobs.exceptions.Retry"


def test_sync_job_past_its_timeout_fails_with_job_timeout(work):
    result = jobs.too_slow.enqueue(4.0)  # far past the 0.5 s timeout, even on a loaded machine
    work()
    result.refresh()
    assert result.state == "failed"
    assert result.errors[-1].exception_class_path == "django_jobs.exceptions.JobTimeout"


def test_non_json_return_value_fails_the_job(work):
    result = jobs.returns_object.enqueue()
    work()
    result.refresh()
    assert result.state == "failed"
    assert "not JSON serializable" in result.errors[-1].traceback


def test_bulk_enqueue_runs_every_job(work, engine):
    results = jobs.add.enqueue_many([(i, i) for i in range(50)] + [{"a": 1, "b": 2}, call(3, b=4)])
    assert len({r.id for r in results}) == 52
    assert engine.counts("default")["waiting"] == 52
    work()
    values = sorted(jobs.add.get_result(r.id).return_value for r in results)
    assert values == sorted([2 * i for i in range(50)] + [3, 7])


def test_non_json_argument_fails_at_enqueue_naming_it(engine):
    with pytest.raises(TypeError, match="argument 'b'.*not JSON serializable"):
        jobs.add.enqueue(1, b=object())
    with pytest.raises(TypeError, match="positional argument 0"):
        jobs.add.enqueue({1, 2}, 3)
    assert engine.counts("default")["waiting"] == 0


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"priority": 101}, "priority"),
        ({"queue_name": "nope"}, "not configured"),
        ({"attempts": 0}, "attempts"),
        ({"timeout": -1}, "timeout"),
        ({"backoff": "sideways"}, "backoff"),
    ],
)
def test_invalid_options_are_refused_with_a_clear_error(options, message):
    with pytest.raises(InvalidTask, match=message):
        jobs.add.using(**options)


def test_negative_delay_is_refused():
    with pytest.raises(InvalidJob, match="delay"):
        jobs.add.using(delay=-1)


def test_unknown_result_id_raises_task_result_does_not_exist():
    with pytest.raises(TaskResultDoesNotExist):
        jobs.add.get_result("0" * 32)


def test_plain_django_task_runs_on_our_workers(work):
    assert type(task_backends["default"]).__name__ == "RedisBackend"
    result = jobs.plain_task.enqueue(21)
    assert jobs.plain_task.priority == 5
    work()
    result.refresh()
    assert result.return_value == 42
    context = jobs.context_task.enqueue(x=1)
    work()
    context.refresh()
    assert context.return_value == {"attempt": 1, "id": context.id, "x": 1}


def test_job_on_another_queue_runs_only_when_that_queue_is_served(work, engine):
    result = jobs.echo.enqueue({"k": [1, 2]})
    work(queues=["default"])
    assert engine.counts("high")["waiting"] == 1
    work(queues=["high"])
    result.refresh()
    assert result.return_value == {"k": [1, 2]}


def test_cancel_waiting_job_means_it_never_runs(work, ledger_path):
    from tests.conftest import read_ledger

    result = jobs.record.enqueue("cancelled")
    assert result.cancel() == "cancelled"
    work()
    result.refresh()
    assert result.state == "cancelled"
    assert result.status == TaskResultStatus.FAILED
    assert read_ledger(ledger_path) == []
    assert result.cancel() == "finished"


def test_delay_counts_from_each_enqueue_not_from_using(engine, r, jobs_settings):
    later = jobs.add.using(delay=30)
    import time

    time.sleep(0.3)  # the copy is kept around, as a user would
    result = later.enqueue(1, 2)
    assert result.state == "scheduled"
    h = r.hgetall(engine.keys("default").job(result.id))
    assert int(h["run"]) - int(h["e"]) == 30_000


def test_callable_backoff_in_using_is_refused_not_silently_dropped():
    with pytest.raises(InvalidJob, match="callable backoff"):
        jobs.add.using(backoff=lambda attempt: 1.0).enqueue(1, 2)


def test_every_invalid_option_error_is_an_invalid_task():
    with pytest.raises(InvalidTask):
        jobs.add.using(delay=-1)
    with pytest.raises(InvalidTask):
        jobs.add.using(attempts=0)


def test_payload_limit_counts_utf8_bytes(jobs_settings):
    from django.test import override_settings

    with override_settings(DJANGO_JOBS={**jobs_settings, "MAX_PAYLOAD_BYTES": 200}):
        jobs.echo.enqueue("a" * 100)
        with pytest.raises(InvalidJob, match="bytes, over MAX_PAYLOAD_BYTES"):
            jobs.echo.enqueue("é" * 100)  # 100 characters, 200 bytes


def test_sync_job_failed_by_its_timeout_sends_task_finished(work):
    from django_jobs.compat import task_finished

    seen = []

    def receiver(sender, task_result, **kwargs):
        seen.append((task_result.id, task_result.status))

    task_finished.connect(receiver)
    try:
        result = jobs.too_slow.enqueue(4.0)  # far past the 0.5 s timeout, even on a loaded machine
        work()
    finally:
        task_finished.disconnect(receiver)
    assert (result.id, TaskResultStatus.FAILED) in seen


def test_enqueue_many_of_nothing_returns_nothing_and_writes_nothing(engine):
    from tests.testapp import jobs_limits
    from tests.testapp.jobs import add

    assert add.enqueue_many([]) == []
    assert jobs_limits.sync_account.enqueue_many([]) == []  # a unique job takes the guarded path
    assert sum(engine.counts("default").values()) == 0
