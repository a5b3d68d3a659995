"""The results of a bulk enqueue (issue 17): made with their id and arguments only, the other
fields set on first read (``JobResult.__getattr__``); ``task_enqueued`` still reaches a
connected receiver once per job, with a complete result."""

from __future__ import annotations

import copy
import dataclasses
import pickle

import pytest

from django_jobs.backends import BULK_CHUNK
from django_jobs.compat import TaskResultStatus, default_task_backend, task_enqueued
from django_jobs.correlation import correlation_id
from django_jobs.signals import job_enqueued
from django_jobs.tasks import JobResult, call
from tests.testapp import jobs

COUNT = 2 * BULK_CHUNK + 3  # three script calls, streamed


def fields(result: JobResult) -> dict[str, object]:
    return {f.name: getattr(result, f.name) for f in dataclasses.fields(JobResult)}


@pytest.mark.parametrize("signal", [task_enqueued, job_enqueued], ids=["task_enqueued", "job_enqueued"])
@pytest.mark.parametrize("count", [2, COUNT], ids=["one-call", "streamed"])
def test_a_connected_receiver_gets_every_job_of_a_bulk_enqueue_each_complete(signal, count):
    seen: list[tuple[str, object, object, object, object, object]] = []

    def receiver(sender, task_result, **kwargs):
        seen.append((task_result.id, task_result.status, task_result.queue, task_result.correlation_id,
                     task_result.args, task_result.enqueued_at))

    signal.connect(receiver)
    try:
        with correlation_id("bulk-cid"):
            results = jobs.add.enqueue_many([(n, 1) for n in range(count)])
    finally:
        signal.disconnect(receiver)
    assert [s[0] for s in seen] == [r.id for r in results]
    assert all(s[1:4] == (TaskResultStatus.READY, "default", "bulk-cid") for s in seen)
    assert [s[4] for s in seen] == [[n, 1] for n in range(count)]
    assert all(s[5] is not None for s in seen)


def test_an_unread_bulk_result_reads_as_the_job_stored_in_redis():
    with correlation_id("c-lazy"):
        results = jobs.add.enqueue_many([(1, 2), call(3, b=4), {"a": 5, "b": 6}, [7, 8]])
    stored = [default_task_backend.get_result(r.id) for r in results]
    for result, fresh in zip(results, stored, strict=True):
        assert type(result) is JobResult
        assert fields(result) == fields(fresh)  # every field, the enqueue time included
        assert result == fresh
        assert (result.status, result.state, result.queue, result.correlation_id) == (TaskResultStatus.READY, "waiting", "default", "c-lazy")
    assert [r.args for r in results] == [[1, 2], [3], [], [7, 8]]
    assert [r.kwargs for r in results] == [{}, {"b": 4}, {"a": 5, "b": 6}, {}]


def test_an_unread_bulk_result_refreshes_and_keeps_its_other_fields(work):
    first, second = jobs.add.enqueue_many([(1, 2), (3, 4)])
    first.refresh()  # the first thing read: refresh() replaces _return_value, where the unset fields wait
    assert (first.status, first.queue, first.backend, first.errors) == (TaskResultStatus.READY, "default", "default", [])
    work()
    second.refresh()
    assert (second.status, second.return_value, second.queue, second.state) == (TaskResultStatus.SUCCESSFUL, 7, "default", "completed")
    first.refresh()
    assert first.return_value == 3


def test_an_unread_bulk_result_copies_pickles_and_prints_as_a_read_one():
    one, two = jobs.add.enqueue_many([(1, 2), (1, 2)])
    read = jobs.add.get_result(one.id)
    assert repr(one).replace(one.id, "ID").split("enqueued_at=")[0] == repr(read).replace(read.id, "ID").split("enqueued_at=")[0]
    assert fields(copy.copy(two)) == fields(default_task_backend.get_result(two.id))
    assert fields(pickle.loads(pickle.dumps(jobs.add.enqueue_many([(5, 6), (7, 8)])[1])))["args"] == [7, 8]
    assert dataclasses.replace(jobs.add.enqueue_many([(5, 6), (7, 8)])[0], id="other").queue == "default"


def test_each_bulk_result_has_lists_of_its_own():
    one, two = jobs.add.enqueue_many([(1, 2), (3, 4)])
    one.errors.append("x")
    one.args.append(9)
    assert (two.errors, two.worker_ids, two.earlier_errors, two.args) == ([], [], [], [3, 4])


def test_a_missing_attribute_of_a_bulk_result_raises_as_on_any_result():
    lazy, _ = jobs.add.enqueue_many([(1, 2), (3, 4)])
    eager = jobs.add.get_result(lazy.id)
    with pytest.raises(AttributeError) as on_lazy:
        lazy.no_such_field  # noqa: B018
    with pytest.raises(AttributeError) as on_eager:
        eager.no_such_field  # noqa: B018
    assert str(on_lazy.value) == str(on_eager.value) == "'JobResult' object has no attribute 'no_such_field'"
    assert not hasattr(lazy, "no_such_field") and lazy.status == TaskResultStatus.READY


def test_a_bad_item_of_a_bulk_enqueue_is_named_by_its_number():
    from django_jobs.exceptions import InvalidArguments

    with pytest.raises(InvalidArguments, match=r"item 2 of enqueue_many\(\)"):
        jobs.add.enqueue_many([(1, 2), call(1, b=2), (1,), (1, 2)])
    with pytest.raises(InvalidArguments, match=r"item 1 of enqueue_many\(\)"):
        jobs.add.enqueue_many([(1, 2), {"a": 1, "c": 2}])
    with pytest.raises(TypeError, match="enqueue_many\\(\\) items must be tuples"):
        jobs.add.enqueue_many([(1, 2), 3])
