"""Global events: another process follows a queue's events stream; waiting on a result without polling."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from django_jobs.engine.streams import expand_entry
from django_jobs.events import FINAL_EVENTS, QueueEvents, wait_for_result
from tests.redis_server import env_for

# Every test also runs against a real Redis Cluster (tests/conftest.py).
pytestmark = pytest.mark.parametrize("topology", ["server", "cluster"], indirect=True)

ROOT = Path(__file__).resolve().parents[2]

LISTENER = """
import json, sys, django
django.setup()
from django_jobs.events import QueueEvents
events = QueueEvents("default", types=set(sys.argv[1].split(",")))
print("ready", flush=True)
for event in events.listen(timeout=float(sys.argv[2])):
    print(json.dumps([event.id, event.type, event.job_id]), flush=True)
"""


@pytest.mark.single_server("its listener subprocess is pointed at the single test server")
def test_another_process_receives_the_events_in_order(redis_server, prefix, engine, work):
    from tests.testapp.jobs import add
    from tests.testapp.jobs_observability import boom

    listener = subprocess.Popen(
        [sys.executable, "-c", LISTENER, "waiting,active,completed,failed", "1.5"],
        cwd=ROOT, env=env_for(redis_server, prefix), stdout=subprocess.PIPE, text=True,
    )
    try:
        assert listener.stdout.readline().strip() == "ready"
        ids = [add.enqueue(i, i).id for i in range(3)]
        last = boom.enqueue().id
        work()
        stream = [(event_id, f["e"], f["j"]) for entry_id, entry in engine.client.xrange(engine.keys("default").events)
                  for event_id, f in expand_entry(entry_id, entry)]
        assert [e for e in stream if e[2] == last][-1][1] == "failed"
    finally:
        out, _ = listener.communicate(timeout=30)  # it stops 1.5 s after the last event
    received = [tuple(json.loads(line)) for line in out.splitlines()]
    assert received == stream  # every event, in stream order
    assert {job for _, _, job in received} == {*ids, last}


def test_a_listener_resumes_after_the_last_event_it_handled_and_filters_by_type(engine, work):
    from tests.testapp.jobs import add

    everything = QueueEvents("default", last_id="0")
    first = add.enqueue(1, 1)
    work()
    seen = everything.read(timeout=1)
    assert [e.type for e in seen] == ["waiting", "active", "completed"] and {e.job_id for e in seen} == {first.id}
    resume_from = seen[-1].id

    second = add.enqueue(2, 2)
    work()
    resumed = QueueEvents("default", last_id=resume_from, types={"completed"})
    got = resumed.read(timeout=1)
    assert [(e.type, e.job_id) for e in got] == [("completed", second.id)]
    assert resumed.read(timeout=0.05) == []  # nothing new: an empty list after the timeout

    only_new = QueueEvents("default")  # "$": only what comes next
    assert only_new.read(timeout=0.05) == []


def test_events_carry_their_extra_fields(engine, work):
    from tests.testapp.jobs_observability import fails_once

    events = QueueEvents("default", types={"retrying"})
    fails_once.enqueue()
    work()
    (retry,) = events.read(timeout=1)
    assert retry.fields == {"delay": "0"} and retry.queue == "default"


def test_wait_for_result_returns_as_soon_as_a_real_worker_finishes_the_job(workers):
    from tests.testapp.jobs import add

    result = add.using(delay=0.3).enqueue(20, 22)
    proc = workers.start("--processes", "1", "--threads", "2")
    assert wait_for_result(result, timeout=20) is result
    assert result.state == "completed" and result.return_value == 42
    proc.terminate()
    proc.communicate(timeout=30)


def test_wait_for_result_raises_timeout_error_when_the_job_does_not_finish(engine):
    from tests.testapp.jobs import add

    result = add.using(delay=3600).enqueue(1, 2)
    started = time.monotonic()
    with pytest.raises(TimeoutError, match=result.id):
        wait_for_result(result, timeout=0.3)
    assert 0.3 <= time.monotonic() - started < 3


def test_wait_for_result_of_a_finished_job_returns_at_once(work):
    from tests.testapp.jobs_observability import boom

    result = boom.enqueue()
    work()
    assert wait_for_result(result, timeout=0.01).state == "failed"
    assert FINAL_EVENTS == {"completed", "failed", "cancelled"}


# -- batch entries: one entry per event kind per script call (lua/includes/emit.lua) -----------


def enqueue_batch(engine, count: int) -> list[str]:
    """Enqueue ``count`` add jobs in one enqueue_many call: one 'waiting' entry naming them all."""
    from django_jobs.engine.keys import new_job_id
    from django_jobs.engine.queue import NewJob

    ids = [new_job_id() for _ in range(count)]
    data = json.dumps({"n": "tests.testapp.jobs.add", "a": [1, 2]})
    engine.enqueue_many("default", [NewJob(id=job_id, data=data) for job_id in ids])
    return ids


def batch_entries(engine, event: str) -> list[list[str]]:
    """The job ids of each batch entry of ``event`` in the default queue's stream."""
    return [json.loads(f["js"]) for _, f in engine.client.xrange(engine.keys("default").events)
            if f.get("e") == event and "js" in f]


def test_a_batch_entry_is_one_event_per_job_for_a_listener_which_resumes_inside_it(engine, work):
    everything = QueueEvents("default", last_id="0")
    ids = enqueue_batch(engine, 5)
    assert batch_entries(engine, "waiting") == [ids]  # one entry for the five jobs

    seen = everything.read(timeout=1)
    assert [(e.type, e.job_id) for e in seen] == [("waiting", job_id) for job_id in ids]
    assert len({e.id for e in seen}) == 5  # each its own id: "<entry id>:<index>"

    # A listener that handled the first two events of the entry resumes with the third.
    resumed = QueueEvents("default", last_id=seen[1].id)
    assert [e.job_id for e in resumed.read(timeout=1)] == ids[2:]
    # One that handled the whole entry (its last event) gets nothing of it again.
    assert QueueEvents("default", last_id=seen[-1].id).read(timeout=0.05) == []

    work()
    finished = everything.read(timeout=1)
    completed = [e.job_id for e in finished if e.type == "completed"]
    assert sorted(completed) == sorted(ids)  # every job once, whatever the batches were
    assert sorted(e.job_id for e in finished if e.type == "active") == sorted(ids)


def test_wait_returns_when_the_jobs_completion_is_in_a_batch_entry(engine):
    import threading

    from django_jobs.engine.queue import Outcome
    from tests.testapp.jobs import add

    ids = enqueue_batch(engine, 6)
    claimed = engine.fetch("default", 6, lease_ms=60_000, worker_id="w1").jobs
    assert sorted(c.id for c in claimed) == sorted(ids)
    result = add.get_result(ids[3])

    def settle_all() -> None:  # one settle call: one 'completed' entry naming the six jobs
        engine.settle("default", [Outcome(c.id, c.token, "c", "3", 0, 0) for c in claimed])

    settler = threading.Timer(0.3, settle_all)  # after wait() pinned the stream's tip
    settler.start()
    try:
        assert wait_for_result(result, timeout=20) is result
    finally:
        settler.join()
    assert result.state == "completed" and result.return_value == 3
    assert batch_entries(engine, "completed") == [[c.id for c in claimed]]  # it came in a batch


def test_the_admin_throughput_counts_each_job_of_a_batch_entry(engine):
    from django_jobs.engine.queue import Outcome

    ids = enqueue_batch(engine, 8)
    claimed = engine.fetch("default", 8, lease_ms=60_000, worker_id="w1").jobs
    engine.settle("default", [Outcome(c.id, c.token, "c", "3", 0, 0) for c in claimed])
    assert batch_entries(engine, "completed") == [[c.id for c in claimed]]  # one entry
    assert engine.throughput("default")["completed"] == len(ids)
