"""Flows across slots of a real Redis Cluster with real ``runworkers`` processes and crashes.

A child's end is recorded in its own slot's outbox by its transition; the relay (each worker's
heartbeat) delivers it to the parent's slot and then acknowledges it (engine/relay.py). A worker
process killed between the two steps, or a relay that dies after delivering and before
acknowledging, must lose nothing and apply nothing twice: every parent runs exactly once with
the results of all its children, and no parent gets two "waiting" events.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from django_jobs import serialization
from django_jobs.engine.streams import expand_entry
from django_jobs.flows import Flow
from django_jobs.worker.faults import EXIT_CODE
from tests.chaos.conftest import Chaos
from tests.redis_server import wait_until
from tests.testapp import jobs_flows as jf

pytestmark = [pytest.mark.chaos, pytest.mark.parametrize("topology", ["cluster"], indirect=True)]

FLOWS = 30


def run_flows_with_a_crash(chaos: Chaos, engine, tmp_path: Path, point: str) -> None:
    flag = tmp_path / "crashed"
    sup = chaos.start(
        "--processes=2", "--threads=4", "--grace=5", ready=2,
        env={"DJANGO_SETTINGS_MODULE": "tests.chaos.fault_settings", "DJJ_FAULT_AT": point, "DJJ_FAULT_ONCE": str(flag)},
    )
    high, low = jf.value.using(queue_name="high"), jf.value.using(queue_name="low")
    handles = [Flow(jf.gather.s(f"p{i}"), children=[high.s(i), low.s(i + 1)]).enqueue() for i in range(FLOWS)]

    wait_until(lambda: chaos.counts("end").keys() >= {f"gather:p{i}" for i in range(FLOWS)}, 60, message="every parent to run")
    wait_until(lambda: engine.counts("default")["completed"] == FLOWS, 20, message="every parent completed")
    assert flag.exists(), "the fault never fired"
    sup.wait_output(f"Worker process {int(flag.read_text())} exited with {EXIT_CODE}", timeout=5)
    wait_until(lambda: sum(engine.outbox_size(q) for q in ("default", "high", "low")) == 0, 10, message="the outboxes to drain")
    assert sup.stop() == 0

    ends = chaos.counts("end")
    assert all(ends[f"gather:p{i}"] == 1 for i in range(FLOWS)), "a parent ran twice"
    jobs = engine.get_jobs([("default", h.id) for h in handles])
    for i, (handle, job) in enumerate(zip(handles, jobs, strict=True)):
        a, b = (c.id for c in handle.children)
        assert job["s"] == "completed"
        assert serialization.loads(job["r"]) == {a: ["completed", i], b: ["completed", i + 1]}
    # Exactly once in effect: each parent moved to waiting once, however often its steps were delivered.
    ids = {h.id for h in handles}
    woken = Counter(
        fields["j"] for item in engine.client.xrange(engine.keys("default").events) for _id, fields in expand_entry(*item)
        if fields.get("j") in ids and fields.get("e") == "waiting"
    )
    assert set(woken.values()) == {1} and len(woken) == FLOWS, woken
    chaos.check_invariants()


def test_a_worker_killed_between_recording_a_childs_end_and_delivering_it_loses_nothing(chaos, engine, tmp_path):
    # The process dies right after its settle wrote the outbox entries, before its relay ran.
    run_flows_with_a_crash(chaos, engine, tmp_path, "after_settle")


def test_a_relay_killed_after_delivering_before_acknowledging_applies_each_step_once(chaos, engine, tmp_path):
    run_flows_with_a_crash(chaos, engine, tmp_path, "after_deliver")


@pytest.fixture
def healed(cluster_group):
    """The cluster, healed after the test (the killed primary rejoins as a replica)."""
    yield cluster_group
    cluster_group.heal()


def test_the_primary_of_the_childrens_slot_killed_while_they_run_every_parent_still_runs_once(chaos, engine, healed):
    """SIGKILL the primary of queue high mid-flows: its replica is promoted; settles and outbox
    entries it had not replicated are lost with the child's end (the child runs again, counted),
    acknowledgements lost make a second delivery (no effect). Every parent runs exactly once."""
    import time

    slow = jf.slow_step.using(queue_name="high")
    handles = [Flow(jf.gather.s(f"p{i}"), children=[slow.s(f"h{i}", 0.1), jf.value.using(queue_name="low").s(i)]).enqueue()
               for i in range(FLOWS)]
    time.sleep(1)  # the replicas have the flows (asynchronous replication; the kill tests the steps after)
    sup = chaos.start("--processes=1", "--threads=4", ready=1, env={"DJJ_LEASE_SECONDS": "2"})
    chaos.wait_ledger("end", ["h0", "h1"])
    key = engine.keys("high").wait
    old = healed.kill_primary(key)
    healed.wait_failover(old.port, key)

    wait_until(lambda: chaos.counts("end").keys() >= {f"gather:p{i}" for i in range(FLOWS)}, 60, message="every parent to run")
    wait_until(lambda: sum(engine.outbox_size(q) for q in ("default", "high", "low")) == 0, 20, message="the outboxes to drain")
    assert sup.stop() == 0
    ends = chaos.counts("end")
    assert all(ends[f"gather:p{i}"] == 1 for i in range(FLOWS)), "a parent ran twice"
    print("FLOWS_FAILOVER", {"children_run_twice": sum(1 for i in range(FLOWS) if ends[f"h{i}"] > 1)})
    for i, (handle, job) in enumerate(zip(handles, engine.get_jobs([("default", h.id) for h in handles]), strict=True)):
        a, b = (c.id for c in handle.children)
        if job["s"] != "completed":  # printed whole (an assertion message is cut short)
            print("PARENT NOT COMPLETED", i, job)
            print(sup.output[-8000:])
        assert job["s"] == "completed"
        assert serialization.loads(job["r"]) == {a: ["completed", f"h{i}"], b: ["completed", i]}
    chaos.check_invariants()


def test_retrying_the_failed_children_of_flows_over_three_slots_with_workers_running_runs_each_parent_once(chaos, engine, tmp_path):
    """Each parent (default) failed through its child on high; the children are retried while
    workers run and a relay dies after delivering once (before acknowledging): each retry
    re-opens its parent on the other slot once, and each parent runs once, with both results."""
    flag, gate = tmp_path / "crashed", tmp_path / "gate"
    sup = chaos.start(
        "--processes=2", "--threads=4", "--grace=5", ready=2,
        env={"DJANGO_SETTINGS_MODULE": "tests.chaos.fault_settings", "DJJ_FAULT_AT": "after_deliver", "DJJ_FAULT_ONCE": str(flag)},
    )
    # The child fails until the gate opens, on every run: the relay's crash kills the jobs its
    # process was running too, and one re-run once its lease ran out (stalled) must still fail
    # (a child failing only on its first run completed then, and its parent never failed).
    failing, low = jf.gated.using(queue_name="high"), jf.value.using(queue_name="low")
    n = 10
    handles = [Flow(jf.gather.s(f"r{i}"), children=[failing.s(f"r{i}", str(gate)), low.s(i)]).enqueue() for i in range(n)]
    try:
        # A killed worker's jobs wait for their lease (2 s) and its replacement process (1 s).
        wait_until(lambda: engine.counts("default")["failed"] == n, 45, message="every parent failed through its child")
    except AssertionError:
        print({q: engine.counts(q) for q in ("default", "high", "low")}, {q: engine.outbox_size(q) for q in ("default", "high", "low")})
        print(sup.stop(), chaos.counts("end"))
        print(sup.output[-20000:])
        raise

    wait_until(lambda: sum(engine.outbox_size(q) for q in ("default", "high", "low")) == 0, 10, message="the outboxes to drain")
    assert flag.exists()  # the relay died after a delivery

    gate.touch()
    assert set(engine.retry_many("high", [h.children[0].id for h in handles])) == {1}

    wait_until(lambda: engine.counts("default")["completed"] == n, 45, message="every parent completed")
    wait_until(lambda: sum(engine.outbox_size(q) for q in ("default", "high", "low")) == 0, 10, message="the outboxes to drain")
    assert sup.stop() == 0
    ends = chaos.counts("end")
    assert all(ends[f"gather:r{i}"] == 1 for i in range(n)), "a parent ran twice"
    for i, (handle, job) in enumerate(zip(handles, engine.get_jobs([("default", h.id) for h in handles]), strict=True)):
        a, b = (c.id for c in handle.children)
        assert serialization.loads(job["r"]) == {a: ["completed", f"ok r{i}"], b: ["completed", i]}
    ids = {h.id for h in handles}
    reopened = Counter(
        fields["j"] for item in engine.client.xrange(engine.keys("default").events) for _id, fields in expand_entry(*item)
        if fields.get("j") in ids and fields.get("e") == "waiting_children"
    )
    assert set(reopened.values()) == {2} and len(reopened) == n, reopened  # enqueued, re-opened once
    chaos.check_invariants()


#: A producer process: enqueues flows over three slots and is SIGKILLed right after the first
#: part of flow number ``argv[2]`` (its root and the create entries of the other parts are written).
PRODUCER = """
import os, signal, sys
import django
django.setup()
from django_jobs.engine import get_engine
from django_jobs.flows import Flow
from tests.testapp import jobs_flows as jf

engine, out, kill_at = get_engine(), open(sys.argv[1], "a"), int(sys.argv[2])
high, low = jf.value.using(queue_name="high"), jf.value.using(queue_name="low")
written = []

def enqueue_flow(rows):
    out.write(rows[0].job.id + "\\n")
    out.flush()
    written.append(rows)
    return engine._enqueue_flow_parts(rows, after_first=die if len(written) == kill_at else None)

def die():
    os.kill(os.getpid(), signal.SIGKILL)

engine.enqueue_flow = enqueue_flow
for i in range(int(sys.argv[3])):
    inner = Flow(jf.gather.using(queue_name="high").s(f"m{i}"), children=[jf.value.s(i), low.s(i)])
    Flow(jf.gather.s(f"p{i}"), children=[inner, low.s(i + 1)]).enqueue()
"""


def test_a_producer_killed_between_the_parts_of_a_flow_leaves_a_flow_the_workers_write_whole_and_run_once(chaos, engine, tmp_path):
    """The producer process is SIGKILLed after the first part of its 5th flow (over three slots, a
    grandchild on the root's queue under a parent on another slot): a worker's relay of the
    root's queue writes the other parts once the producer's grace is over, and the flow runs like
    the others: every job written once, each parent run once, with all its children's results."""
    import signal
    import subprocess
    import sys

    from tests.conftest import ROOT
    from tests.redis_server import env_for

    n, kill_at = 8, 5
    sup = chaos.start("--processes=2", "--threads=4", ready=2)
    roots = tmp_path / "roots"
    proc = subprocess.run(
        [sys.executable, "-c", PRODUCER, str(roots), str(kill_at), str(n)], cwd=ROOT, capture_output=True, text=True,
        env=env_for(chaos.workers.server, chaos.workers.prefix, **chaos.workers.env), timeout=60,
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    ids = roots.read_text().split()
    assert len(ids) == kill_at  # it died in the 5th flow, before the others

    wait_until(lambda: chaos.counts("end").keys() >= {f"gather:p{i}" for i in range(kill_at)}, 60, message="every root to run")
    wait_until(lambda: sum(engine.outbox_size(q) for q in ("default", "high", "low")) == 0, 10, message="the outboxes to drain")
    assert sup.stop() == 0

    ends = chaos.counts("end")
    assert all(ends[f"gather:p{i}"] == 1 and ends[f"gather:m{i}"] == 1 for i in range(kill_at)), ends
    for i, job in enumerate(engine.get_jobs([("default", root) for root in ids])):
        assert job["s"] == "completed"
        result = serialization.loads(job["r"])
        inner_id = next(k for k, v in result.items() if isinstance(v[1], dict))
        assert sorted(v[1] for k, v in result.items() if k != inner_id) == [i + 1]
        assert sorted(v[1] for v in result[inner_id][1].values()) == [i, i]
    created = Counter(
        fields["j"] for q in ("default", "high", "low") for item in engine.client.xrange(engine.keys(q).events)
        for _id, fields in expand_entry(*item) if fields.get("e") == "waiting_children"
    )
    assert set(created.values()) == {1} and len(created) == 2 * kill_at, created  # each parent written once
    chaos.check_invariants()
