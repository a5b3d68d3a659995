"""Flow control through the job API and an in-process worker: RateLimited, progress, queue limits."""

from __future__ import annotations

import json

import pytest

from django_jobs.compat import TaskResultStatus
from django_jobs.engine import get_engine
from django_jobs.limits import reset_queue_limits, set_queue_limits
from tests.testapp import jobs_limits

# Every test also runs against a real Redis Cluster (tests/conftest.py).
pytestmark = pytest.mark.parametrize("topology", ["server", "cluster"], indirect=True)


def events_of(queue: str, job_id: str) -> list[dict[str, str]]:
    engine = get_engine()
    from django_jobs.engine.streams import expand_entry

    entries = engine.client.xrange(engine.keys(queue).events)
    return [fields for item in entries for _, fields in expand_entry(*item) if fields["j"] == job_id]


def test_a_job_that_raises_rate_limited_runs_again_later_without_using_an_attempt(work):
    result = jobs_limits.limited_once.enqueue("a", 0.2)  # attempts=1: a counted attempt would fail it
    work()
    result.refresh()
    assert result.status == TaskResultStatus.SUCCESSFUL and result.return_value == "a"
    assert result.attempts == 2 and result.errors == []  # two runs started, neither failed
    assert get_engine().get_job("default", result.id)["a"] == "1"
    kinds = [e["e"] for e in events_of("default", result.id)]
    assert kinds == ["waiting", "active", "rate_limited", "waiting", "active", "completed"]
    delay = next(e for e in events_of("default", result.id) if e["e"] == "rate_limited")["delay"]
    assert delay == "200"


def test_rate_limited_with_backoff_queue_holds_every_job_of_the_queue(work):
    limited = jobs_limits.limited_once.enqueue("b", 0.5, "queue")
    other = jobs_limits.noop.using(delay=0.2).enqueue("other")  # due after the hold started
    work(threads=1)
    engine = get_engine()
    held_at = int(next(i for i, e in engine.client.xrange(engine.keys("default").events) if e["e"] == "rate_limited").split("-")[0])
    # The event's stream id is taken when the settle script writes its events, at the end of the
    # call (one entry per batch), a few ms after the hold began: 50 ms of slack, far below the
    # 300 ms by which an unheld job (due at 0.2 s) would start before the hold's end.
    assert int(engine.get_job("default", other.id)["st"]) >= held_at + 500 - 50
    limited.refresh()
    assert limited.status == TaskResultStatus.SUCCESSFUL


def test_rate_limited_refuses_bad_arguments():
    from django_jobs import RateLimited

    with pytest.raises(ValueError, match="retry_after"):
        RateLimited(retry_after=-1)
    with pytest.raises(ValueError, match="'job', 'key' or 'queue'"):
        RateLimited(retry_after=1, backoff="everything")


def test_progress_is_stored_and_emitted(work):
    result = jobs_limits.report.enqueue({"done": 3, "total": 4})
    assert result.progress is None
    work()
    result.refresh()
    assert result.progress == {"done": 3, "total": 4}
    [event] = [e for e in events_of("default", result.id) if e["e"] == "progress"]
    assert json.loads(event["pg"]) == {"done": 3, "total": 4}


def test_progress_that_is_not_json_or_too_big_fails_the_job_with_a_clear_error(work):
    not_json = jobs_limits.report.using(attempts=1).enqueue(["x" * 5000])
    work()
    not_json.refresh()
    assert not_json.status == TaskResultStatus.FAILED
    assert "the limit is 4,096" in not_json.errors[0].traceback


def test_queue_limits_from_settings_and_at_run_time_apply_to_an_in_process_worker(work, jobs_settings):
    from django.test import override_settings

    queues = {"default": {"CONCURRENCY": 1}, "high": {}, "low": {}}
    with override_settings(DJANGO_JOBS={**jobs_settings, "QUEUES": queues}):
        results = jobs_limits.noop.enqueue_many([(f"n{i}",) for i in range(4)])
        work(threads=4)
        engine = get_engine()
        spans = sorted((int(engine.get_job("default", r.id)["st"]), int(engine.get_job("default", r.id)["f"])) for r in results)
        # One at a time: each job was claimed no earlier than the previous one settled.
        assert all(spans[i + 1][0] >= spans[i][1] for i in range(3))
        set_queue_limits("default", rate="2/s", concurrency=None)
        results = jobs_limits.noop.enqueue_many([(f"m{i}",) for i in range(4)])
        work(threads=4)
        starts = sorted(int(engine.get_job("default", r.id)["st"]) for r in results)
        assert starts[2] - starts[0] >= 1000 and starts[3] - starts[1] >= 1000
        reset_queue_limits("default")


def test_a_per_key_rate_limits_each_key_on_its_own(work):
    x = jobs_limits.call_api.enqueue_many([("x",)] * 3)
    y = jobs_limits.call_api.enqueue_many([("y",)] * 2)
    work()
    engine = get_engine()

    def starts(results):
        return sorted(int(engine.get_job("default", r.id)["st"]) for r in results)

    sx, sy = starts(x), starts(y)
    assert sx[2] - sx[0] >= 1000  # the third start of key x waited for its window
    assert sy[1] - sx[0] < 1000  # key y did not wait behind key x
    for r in x:
        r.refresh()
        assert r.status == TaskResultStatus.SUCCESSFUL and r.attempts == 1


def test_bad_limit_options_are_refused_when_the_job_is_declared():
    from django_jobs import InvalidJob, job
    from tests.integration.test_flow_control_unique import takes_user_id

    with pytest.raises(InvalidJob, match="needs limit_concurrency"):
        job(limit_key="u:{user_id}")(takes_user_id)
    with pytest.raises(InvalidJob, match="'fast' is not valid"):
        job(limit_key="u:{user_id}", limit_rate="fast")(takes_user_id)
    with pytest.raises(InvalidJob, match=r"names \{user\}"):
        job(limit_key="u:{user}", limit_concurrency=1)(takes_user_id)
