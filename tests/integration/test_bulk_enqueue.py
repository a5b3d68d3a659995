"""A bulk enqueue of several chunks (issue 17): the chunks are sent one after another without
waiting for each other's reply, on one server, on Sentinel and on a Redis Cluster."""

from __future__ import annotations

import pytest

from django_jobs.backends import BULK_CHUNK
from django_jobs.compat import default_task_backend
from django_jobs.engine import get_engine
from tests.testapp import jobs

pytestmark = pytest.mark.parametrize("topology", ["server", "sentinel", "cluster"], indirect=True)

COUNT = 3 * BULK_CHUNK + 7  # four script calls, the last one short


def test_a_bulk_enqueue_over_several_chunks_returns_every_job_in_order_with_its_enqueued_at():
    engine = get_engine()
    before = engine.counts("default")["waiting"]
    results = jobs.add.enqueue_many([(n, 7) for n in range(COUNT)])
    assert [result.args for result in results] == [[n, 7] for n in range(COUNT)]
    assert len({result.id for result in results}) == COUNT
    assert engine.counts("default")["waiting"] == before + COUNT
    # Each result holds the enqueue time Redis stored in its own job, as get_result() reads it back.
    for result in results[:: BULK_CHUNK // 5]:
        fresh = default_task_backend.get_result(result.id)
        assert (fresh.args, fresh.enqueued_at) == (result.args, result.enqueued_at)
    assert all(result.enqueued_at is not None for result in results)


@pytest.mark.parametrize(
    ("last", "error"),
    [
        ((1,), TypeError),  # does not fit add(a, b): InvalidArguments
        ((object(), 1), TypeError),  # not JSON
        (("x" * 600_000, 1), ValueError),  # over MAX_PAYLOAD_BYTES (512 KiB): InvalidJob
        (("\ud800", 1), UnicodeEncodeError),  # not UTF-8: Redis' protocol cannot carry it
    ],
    ids=["arguments", "json", "size", "utf8"],
)
def test_a_bulk_enqueue_whose_last_job_cannot_be_enqueued_writes_nothing(last, error):
    engine = get_engine()
    before = engine.counts("default")
    with pytest.raises(error):
        jobs.add.enqueue_many([*((n, 1) for n in range(3 * BULK_CHUNK)), last])
    assert engine.counts("default") == before
    # The connection is in step: the next bulk enqueue gets its own replies.
    results = jobs.add.enqueue_many([(n, 2) for n in range(2 * BULK_CHUNK)])
    assert engine.counts("default")["waiting"] == before["waiting"] + 2 * BULK_CHUNK
    assert default_task_backend.get_result(results[-1].id).args == [2 * BULK_CHUNK - 1, 2]


@pytest.mark.parametrize("count", [2, COUNT], ids=["one-call", "streamed"])
def test_a_bulk_enqueue_makes_no_job_or_reply_object_per_job(monkeypatch, count):
    """The jobs go as two columns (ids, payloads) and the replies are read as enqueue times: no
    ``NewJob`` and no ``Enqueued`` per job (docs/performance.md, "Bulk enqueue, Python per job")."""
    from django_jobs import backends
    from django_jobs.engine import transitions

    def refuse(*args, **kwargs):
        raise AssertionError("an object per job")

    monkeypatch.setattr(backends, "jobs_like", refuse)
    monkeypatch.setattr(transitions, "jobs_like", refuse)
    monkeypatch.setattr(transitions, "_enqueued_pairs", refuse)
    results = jobs.add.enqueue_many([(n, 3) for n in range(count)])
    assert [result.args for result in results] == [[n, 3] for n in range(count)]
    fresh = default_task_backend.get_result(results[-1].id)
    assert (fresh.args, fresh.enqueued_at, fresh.task) == ([count - 1, 3], results[-1].enqueued_at, results[-1].task)


def test_each_bulk_enqueue_carries_its_own_correlation_and_parent_ids():
    """The results of a task's bulk enqueues are copies of one kept while the two ids stay (``_Plan.bulk_maker``)."""
    from django_jobs.correlation import correlation_id, process_correlation_id

    seen = []
    for cid in ("cid-a", "cid-a", "cid-b", None):
        if cid is None:
            results = jobs.add.enqueue_many([(n, 4) for n in range(3)])
        else:
            with correlation_id(cid):
                results = jobs.add.enqueue_many([(n, 4) for n in range(3)])
        want = cid or process_correlation_id()
        assert {(r.correlation_id, r.parent_id) for r in results} == {(want, "")}
        assert default_task_backend.get_result(results[1].id).correlation_id == want
        seen.append(results)
    assert len({r.id for results in seen for r in results}) == 12
