"""django_jobs.operations: the one API behind the admin, ``manage.py jobs``, JobResult.cancel and limits."""

from __future__ import annotations

import dataclasses

import pytest

from django_jobs import operations
from django_jobs.exceptions import InvalidJob
from django_jobs.operations import Action, JobFilter, Skipped, SkipReason
from django_jobs.testing import immediate
from tests.testapp import jobs_limits
from tests.testapp.jobs import add, always_fails


def failed(count: int) -> list[str]:
    with immediate():
        return [always_fails.enqueue().id for _ in range(count)]


def test_cancel_by_ids_reports_done_requested_and_skipped_per_id(engine):
    waiting, running, done = add.enqueue(1, 1), add.enqueue(2, 2), add.enqueue(3, 3)
    claimed = engine.claim("default", running.id, lease_ms=60_000, worker_id="w1")
    assert claimed is not None
    operations.cancel([done.id], queue="default")
    result = operations.cancel([("default", waiting.id), ("default", running.id), ("default", done.id), ("default", "nope")])
    assert result.action is Action.CANCEL
    assert result.done == (("default", waiting.id),)
    assert result.requested == (("default", running.id),)
    assert result.skipped == (
        Skipped("default", done.id, SkipReason.ALREADY_FINISHED),
        Skipped("default", "nope", SkipReason.NOT_FOUND),
    )
    assert result.outcome(running.id) == "requested"
    assert result.outcome(done.id) is SkipReason.ALREADY_FINISHED
    with pytest.raises(KeyError):
        result.outcome("not-part-of-it")
    assert engine.get_job("default", waiting.id)["s"] == "cancelled"


def test_results_are_frozen_slotted_dataclasses():
    result = operations.OperationResult(Action.RETRY)
    with pytest.raises(dataclasses.FrozenInstanceError):
        result.done = ()  # type: ignore[misc]
    assert not hasattr(result, "__dict__") and not hasattr(Skipped("q", "j", SkipReason.NOT_FOUND), "__dict__")


def test_retry_by_filter_selects_by_state_and_name_and_counts_skips(engine):
    ids = failed(3)
    other = add.enqueue(1, 2)
    operations.cancel([other.id], queue="default")
    only_failed = operations.retry(JobFilter("default", ("failed",), name=add.name))
    assert only_failed.done == () and only_failed.skipped == ()  # no failed add job
    result = operations.retry(JobFilter("default", ("failed", "cancelled")))
    assert sorted(j for _, j in result.done) == sorted([*ids, other.id])
    again = operations.retry([*ids, "gone"], queue="default")
    assert again.skip_counts() == {SkipReason.NOT_RETRYABLE: 3, SkipReason.NOT_FOUND: 1}
    assert engine.counts("default")["waiting"] == 4


def test_retry_skips_a_job_whose_unique_key_another_job_holds(engine, work):
    first = jobs_limits.charge.enqueue(1, -5)
    work()
    holder = jobs_limits.charge.enqueue(1, 10)
    assert not holder.deduplicated
    result = operations.retry([first.id], queue="default")
    assert result.skipped == (Skipped("default", first.id, SkipReason.UNIQUE_KEY_HELD),)
    assert result.skip_messages() == {"their unique key is held by another job": 1}


def test_an_unknown_script_code_becomes_a_generic_skip_naming_the_code(engine):
    job = add.enqueue(1, 1)
    result = operations._apply(
        Action.RETRY, [("default", job.id)], lambda e, q, ids: [7 for _ in ids], lambda code: None, None, 100
    )
    assert result.skipped == (Skipped("default", job.id, SkipReason.UNKNOWN_CODE, 7),)
    assert result.skip_messages() == {"unexpected script code 7": 1}
    assert "failed through a child" in SkipReason.CHILD_FAILED.value


def test_delete_skips_running_jobs_and_progress_is_reported_per_chunk(engine):
    jobs = [add.enqueue(i, i) for i in range(5)]
    engine.claim("default", jobs[0].id, lease_ms=60_000, worker_id="w1")
    seen: list[tuple[int, int]] = []
    result = operations.delete([j.id for j in jobs], queue="default", progress=lambda n, of: seen.append((n, of)), chunk=2)
    assert seen == [(2, 5), (4, 5), (5, 5)]
    assert result.done_count == 4
    assert result.skipped == (Skipped("default", jobs[0].id, SkipReason.NOT_DELETABLE),)


def test_pause_resume_one_or_all_queues(engine):
    assert operations.pause("high").queues == ("high",)
    assert engine.is_paused("high") and not engine.is_paused("default")
    every = operations.pause()
    assert set(every.queues) >= {"default", "high"} and every.action is Action.PAUSE
    assert all(engine.is_paused(q) for q in every.queues)
    assert operations.resume(None).action is Action.RESUME
    assert not any(engine.is_paused(q) for q in every.queues)


def test_purge_deletes_finished_jobs_up_to_a_limit(engine):
    with immediate():
        for i in range(5):
            add.enqueue(i, i)
    limited = operations.purge("default", "completed", limit=3, chunk=2)
    assert (limited.deleted, limited.limited) == (3, True)
    rest = operations.purge("default", "completed")
    assert (rest.deleted, rest.limited) == (2, False)


def test_user_mistakes_are_clear_errors(engine):
    with pytest.raises(InvalidJob, match="Queue 'nope' is not configured"):
        operations.pause("nope")
    with pytest.raises(InvalidJob, match="Cannot retry 'waiting' jobs; states: failed, cancelled"):
        operations.retry(JobFilter("default", ("waiting",)))
    with pytest.raises(InvalidJob, match="Only finished jobs can be purged"):
        operations.purge("default", "active")
    with pytest.raises(InvalidJob, match="without its queue"):
        operations.cancel(["some-id"])
    with pytest.raises(InvalidJob, match="Cannot cancel 'completed'"):
        operations.cancel(JobFilter("default", ("completed",)))
