"""The django.tasks backend contract, enqueue_on_commit and the django.tasks signals."""

from __future__ import annotations

import asyncio

import pytest
from django.db import transaction

from django_jobs.compat import (
    TaskResultStatus,
    default_task_backend,
    task_enqueued,
    task_finished,
    task_started,
)
from django_jobs.signals import enqueued_signal_needed
from django_jobs.tasks import STATE_TO_STATUS, JobResult
from tests.testapp import jobs


def test_backend_declares_every_capability():
    backend = default_task_backend
    assert backend.supports_defer
    assert backend.supports_async_task
    assert backend.supports_get_result
    assert backend.supports_priority


def test_every_state_maps_to_a_django_status():
    assert set(STATE_TO_STATUS) == {"waiting", "scheduled", "waiting_children", "active", "completed", "failed", "cancelled"}
    assert STATE_TO_STATUS["active"] == TaskResultStatus.RUNNING
    assert STATE_TO_STATUS["cancelled"] == TaskResultStatus.FAILED


@pytest.mark.db
@pytest.mark.django_db(transaction=True)
def test_enqueue_on_commit_enqueues_only_after_the_transaction_commits(engine):
    with transaction.atomic():
        result = jobs.add.enqueue_on_commit(1, 2)
        assert engine.counts("default")["waiting"] == 0
    assert engine.counts("default")["waiting"] == 1
    assert jobs.add.get_result(result.id).state == "waiting"


@pytest.mark.db
@pytest.mark.django_db(transaction=True)
def test_enqueue_on_commit_enqueues_nothing_on_rollback(engine):
    class Boom(Exception):
        pass

    with pytest.raises(Boom), transaction.atomic():
        jobs.add.enqueue_on_commit(1, 2)
        raise Boom
    assert engine.counts("default")["waiting"] == 0


@pytest.mark.db
@pytest.mark.django_db(transaction=True)
def test_enqueue_on_commit_checks_arguments_in_the_caller(engine):
    with pytest.raises(TypeError, match="not JSON serializable"), transaction.atomic():
        jobs.add.enqueue_on_commit(object(), 2)
    assert engine.counts("default")["waiting"] == 0


def test_aenqueue_and_aget_result_work_from_async_code(work):
    async def go():
        result = await jobs.add.aenqueue(4, 5)
        return result

    result = asyncio.run(go())
    work()

    async def read():
        return await jobs.add.aget_result(result.id)

    fresh = asyncio.run(read())
    assert isinstance(fresh, JobResult)
    assert fresh.return_value == 9


def test_django_task_signals_are_sent_for_enqueue_start_and_finish(work):
    seen: list[tuple[str, str, str]] = []

    def on(name):
        def receiver(sender, task_result, **kwargs):
            seen.append((name, task_result.id, task_result.status))

        return receiver

    receivers = [on("enqueued"), on("started"), on("finished")]
    task_enqueued.connect(receivers[0])
    task_started.connect(receivers[1])
    task_finished.connect(receivers[2])
    try:
        result = jobs.add.enqueue(1, 1)
        work()
    finally:
        task_enqueued.disconnect(receivers[0])
        task_started.disconnect(receivers[1])
        task_finished.disconnect(receivers[2])
    assert seen == [
        ("enqueued", result.id, TaskResultStatus.READY),
        ("started", result.id, TaskResultStatus.RUNNING),
        ("finished", result.id, TaskResultStatus.SUCCESSFUL),
    ]


def test_result_wait_returns_when_the_job_finishes(work):
    import threading

    result = jobs.add.enqueue(3, 4)
    thread = threading.Thread(target=work)
    thread.start()
    assert result.wait(timeout=10).return_value == 7
    thread.join(10)


def test_result_wait_times_out_on_a_job_nobody_runs():
    result = jobs.add.enqueue(3, 4)
    with pytest.raises(TimeoutError, match="did not finish"):
        result.wait(timeout=0.2)


def test_job_enqueued_from_a_job_records_its_parent(work):
    from django_jobs.correlation import correlation_id

    with correlation_id("req-42"):
        parent = jobs.enqueue_child.enqueue("p")
    work()
    parent.refresh()
    child = jobs.record.get_result(parent.return_value)
    assert child.parent_id == parent.id
    assert child.correlation_id == "req-42"
    assert parent.correlation_id == "req-42"


def test_a_job_finds_a_new_backend_when_the_tasks_setting_changes(settings):
    from django_jobs.compat import task_backends

    first = jobs.add.get_backend()
    assert first is task_backends[jobs.add.backend] and jobs.add.get_backend() is first
    settings.TASKS = {**settings.TASKS}  # setting_changed: Django gives the handler new backends
    second = jobs.add.get_backend()
    assert second is not first and second is task_backends[jobs.add.backend]


@pytest.mark.parametrize(
    ("args", "kwargs"),
    [
        ((), {}),
        ((1, "a", 2.5, True, None), {"x": 1}),
        ([[1, (2, 3)], {"k": b"v"}], {"n": {"m": (1,)}}),  # nested: Django's normalize_json
        ((1,), {1: "int key"}),
    ],
)
def test_a_results_arguments_are_normalised_as_django_normalises_them(args, kwargs):
    from django_jobs.compat import normalize_json

    result = JobResult(
        task=jobs.add, id="x", status=TaskResultStatus.READY, enqueued_at=None, started_at=None, finished_at=None,
        last_attempted_at=None, args=args, kwargs=kwargs, backend="default", errors=[], worker_ids=[],
    )
    assert result.args == normalize_json(args) and type(result.args) is list
    assert result.kwargs == normalize_json(kwargs) and result.kwargs is not kwargs


def test_task_enqueued_is_skipped_only_when_no_receiver_would_act(engine, caplog):
    """The backend asks once per enqueue call whether a send would do anything (docs/performance.md)."""
    import logging

    from django_jobs.backends import RedisBackend as JobsBackend
    from django_jobs.signals import job_enqueued

    with caplog.at_level(logging.INFO, logger="django_jobs.enqueue"), caplog.at_level(logging.INFO, logger="django.tasks"):
        assert enqueued_signal_needed(JobsBackend) is False  # Django's DEBUG log line and our forwarder only
        seen: list[str] = []

        def receiver(sender, task_result, **kwargs):
            seen.append(task_result.id)

        for signal in (task_enqueued, job_enqueued):
            signal.connect(receiver)
            try:
                assert enqueued_signal_needed(JobsBackend) is True
                results = jobs.add.enqueue_many([(1, 2), (3, 4)])
                assert seen[-2:] == [r.id for r in results]
            finally:
                signal.disconnect(receiver)
            assert enqueued_signal_needed(JobsBackend) is False
    with caplog.at_level(logging.DEBUG, logger="django_jobs.enqueue"):
        assert enqueued_signal_needed(JobsBackend) is True
        result = jobs.add.enqueue(5, 6)
    assert any(getattr(record, "job_id", None) == result.id for record in caplog.records)


def test_a_job_hash_without_p_reads_back_at_priority_0_though_its_task_declares_another(engine):
    # The next release leaves priority 0 out of the hash; get_result() reads it as 0, not as the task's own 5.
    result = jobs.plain_task.using(priority=0).enqueue(2)
    engine.client.hdel(engine.keys(result.queue).job(result.id), "p")
    assert jobs.plain_task.get_result(result.id).task.priority == 0
    declared = jobs.plain_task.enqueue(3)
    assert jobs.plain_task.get_result(declared.id).task.priority == 5
