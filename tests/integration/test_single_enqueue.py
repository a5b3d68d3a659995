"""One ``enqueue()`` of a job without a unique or limit key (issue 17, eighth session): its own
path (``RedisBackend._enqueue_one``), what every enqueue of the task shares kept per task (a
``_Plan``), the result a copy of the plan's (``results_like``) with its own id, arguments,
correlation and parent ids. What the call returns must be what the job stored in Redis reads as."""

from __future__ import annotations

import copy
import dataclasses
import pickle

import pytest
from django.test import override_settings

from django_jobs import InvalidJob, runtime
from django_jobs.compat import (
    DJANGO_HAS_TASKS,
    TaskResultStatus,
    default_task_backend,
    task_enqueued,
)
from django_jobs.correlation import correlation_id
from django_jobs.engine.queue import NewJob
from django_jobs.tasks import JobResult
from tests.testapp import jobs


def fields(result: JobResult) -> dict[str, object]:
    return {f.name: getattr(result, f.name) for f in dataclasses.fields(JobResult)}


@pytest.mark.parametrize(
    ("job", "args", "kwargs", "stored"),
    [
        (jobs.add, (1, 2), {}, ([1, 2], {})),
        (jobs.add, (3,), {"b": 4}, ([3], {"b": 4})),
        (jobs.add, (), {"a": 5, "b": 6}, ([], {"a": 5, "b": 6})),
        (jobs.echo, ((1, [2, (3,)]),), {}, ([[1, [2, [3]]]], {})),  # not flat: the constructor's normalisation
        (jobs.add.using(priority=7, queue_name="low"), (1, 1), {}, ([1, 1], {})),
        (jobs.add.using(delay=60), (1, 1), {}, ([1, 1], {})),
    ],
    ids=["args", "mixed", "kwargs", "nested", "using", "delayed"],
)
def test_a_single_enqueue_returns_what_the_job_stored_in_redis_reads_as(job, args, kwargs, stored):
    with correlation_id("c-one"):
        result = job.enqueue(*args, **kwargs)
    fresh = default_task_backend.get_result(result.id)
    assert type(result) is JobResult and result.task is job
    mine, read = fields(result), fields(fresh)
    if job.delay:  # the delay decides the due time only: the job read back has its registered task
        assert read.pop("task") is jobs.add and mine.pop("task") is job
    assert mine == read  # every field: the enqueue time, the task as enqueued, the ids
    assert (result.args, result.kwargs) == stored
    assert (result.status, result.correlation_id, result.parent_id) == (TaskResultStatus.READY, "c-one", "")
    assert result.state == ("scheduled" if job.delay else "waiting")


def test_single_enqueues_of_one_task_keep_their_own_ids_arguments_and_correlation_ids():
    with correlation_id("c-1"):
        first = jobs.add.enqueue(1, 2)
    with correlation_id("c-2"):
        second = jobs.add.enqueue(3, b=4)
    third = jobs.add.enqueue(5, 6)  # no current id: the process' own
    assert len({first.id, second.id, third.id}) == 3
    assert [(r.args, r.kwargs) for r in (first, second, third)] == [([1, 2], {}), ([3], {"b": 4}), ([5, 6], {})]
    assert [r.correlation_id for r in (first, second)] == ["c-1", "c-2"]
    assert len(third.correlation_id) == 20
    for result in (first, second, third):
        assert fields(result) == fields(default_task_backend.get_result(result.id))


def test_a_single_enqueue_from_a_running_job_names_it_as_the_parent():
    class Running:
        id = "parent-1"

    token = runtime.current_job.set(Running())  # type: ignore[arg-type]
    try:
        child = jobs.add.enqueue(1, 2)
    finally:
        runtime.current_job.reset(token)
    orphan = jobs.add.enqueue(1, 2)
    assert child.parent_id == "parent-1" and orphan.parent_id == ""
    assert default_task_backend.get_result(child.id).parent_id == "parent-1"


def test_a_single_enqueue_result_copies_pickles_and_prints_as_a_read_one():
    result = jobs.add.enqueue(1, 2)
    read = jobs.add.get_result(result.id)
    # (As before this path: the enqueue's result holds its state as JobState, a str enum, the read one as str.)
    assert repr(result).replace("<JobState.WAITING: 'waiting'>", "'waiting'") == repr(read)
    assert fields(copy.copy(result)) == fields(read)
    if DJANGO_HAS_TASKS:  # (with the django_tasks backport a job's function does not pickle, on main too)
        assert fields(pickle.loads(pickle.dumps(jobs.add.enqueue(7, 8))))["args"] == [7, 8]
    assert dataclasses.replace(jobs.add.enqueue(5, 6), id="other").queue == "default"


def test_a_connected_receiver_gets_the_complete_result_of_a_single_enqueue():
    seen = []

    def receiver(sender, task_result, **kwargs):
        seen.append((task_result.id, task_result.status, task_result.queue, task_result.correlation_id, task_result.args,
                     task_result.enqueued_at))

    task_enqueued.connect(receiver)
    try:
        with correlation_id("c-sig"):
            result = jobs.add.enqueue(1, 2)
    finally:
        task_enqueued.disconnect(receiver)
    assert seen == [(result.id, TaskResultStatus.READY, "default", "c-sig", [1, 2], result.enqueued_at)]
    assert result.enqueued_at is not None


def test_what_a_task_keeps_follows_the_settings_and_errors_are_raised_at_every_call(jobs_settings):
    jobs.echo.enqueue("a" * 100)
    with override_settings(DJANGO_JOBS={**jobs_settings, "MAX_PAYLOAD_BYTES": 150}):
        for _ in range(2):  # nothing kept from a refused call
            with pytest.raises(InvalidJob, match="bytes, over MAX_PAYLOAD_BYTES"):
                jobs.echo.enqueue("a" * 200)
    assert jobs.echo.enqueue("a" * 200).args == ["a" * 200]
    backoff = jobs.add.using(backoff=lambda attempt: 1.0)
    for _ in range(2):
        with pytest.raises(InvalidJob, match="callable backoff"):
            backoff.enqueue(1, 2)


def test_the_engines_one_job_enqueue_is_its_enqueue_of_one(engine, r):
    job = NewJob(id="one-1", data='{"v":1,"n":"tests.testapp.jobs.add","a":[1,2]}', correlation_id="c")
    code = engine.enqueue_one("default", job)
    assert (int(code), code.enqueued_ms) == (1, int(r.hget(engine.keys("default").job("one-1"), "e")))
    again = engine.enqueue_one("default", job)  # a replay: nothing written, the first call's time
    assert (int(again), again.enqueued_ms) == (0, code.enqueued_ms)
    assert engine.enqueue("default", [job]) == [0] and engine.enqueue("default", [job])[0].enqueued_ms == code.enqueued_ms
    later = engine.enqueue_one("default", NewJob(id="one-2", data=job.data, delay_ms=60_000))
    assert int(later) == 2
