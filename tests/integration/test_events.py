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
