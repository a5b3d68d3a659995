"""Flows over several queues on a real Redis Cluster: the outbox, the relay, flow enqueue in parts.

Queues ``default``, ``high`` and ``low`` live on different slots (and, on the 3-primary cluster
of the fixtures, on at least two nodes: checked below), so every flow step between a child and
its parent is recorded in the outbox of the job's own slot and delivered by the relay
(engine/relay.py; docs/flows.md#redis-cluster). The same tests run against one server, where
nothing goes through the outbox.
"""

from __future__ import annotations

import json
from collections import Counter

import pytest

from django_jobs.engine.protocol import RetryCode
from django_jobs.engine.streams import expand_entry
from django_jobs.flows import Flow
from tests.chaos.invariants import assert_invariants
from tests.testapp import jobs_flows as jf

pytestmark = pytest.mark.parametrize("topology", ["server", "cluster"], indirect=True)

QUEUES = ("default", "high", "low")
HIGH, LOW = jf.value.using(queue_name="high"), jf.value.using(queue_name="low")


def state(result) -> str:
    result.refresh()
    return result.state


def outboxes(engine) -> int:
    return sum(engine.outbox_size(q) for q in QUEUES)


def test_the_queues_of_these_tests_are_on_different_nodes_of_the_cluster(engine, topology):
    if topology != "cluster":
        assert engine.flow_outbox is False
        return
    assert engine.flow_outbox is True
    from redis.cluster import key_slot

    nodes = {engine.client.get_node_from_key(engine.keys(q).meta).name for q in QUEUES}
    assert len({key_slot(engine.keys(q).meta.encode()) for q in QUEUES}) == 3 and len(nodes) >= 2


def test_a_flow_over_three_queues_completes_and_its_steps_went_through_the_outbox(engine, work, topology):
    handle = Flow(jf.gather.s("p"), children=[jf.value.s(1), HIGH.s(2), LOW.s(3)]).enqueue()
    a, b, c = (child.id for child in handle.children)
    cross = topology == "cluster"
    assert engine.get_job("high", b).get("xs") == ("1" if cross else None)

    work()

    assert state(handle.result) == "completed"
    assert handle.result.return_value == {a: ["completed", 1], b: ["completed", 2], c: ["completed", 3]}
    assert outboxes(engine) == 0  # every step delivered and acknowledged
    assert_invariants(engine.client, engine.prefix, QUEUES)


def test_a_childs_end_waits_in_its_outbox_until_the_relay_delivers_it_once(engine, topology):
    """Drive the two steps by hand: record (settle, child's slot), then deliver twice, then acknowledge."""
    from django_jobs.engine.queue import Outcome

    handle = Flow(jf.gather.s("p"), children=[HIGH.s(2)]).enqueue()
    kid = handle.children[0].id
    [claimed] = engine.fetch("high", 1, lease_ms=60_000, worker_id="w").jobs
    assert engine.settle("high", [Outcome(claimed.id, claimed.token, "c", "2")]) == [1]
    if topology != "cluster":
        assert state(handle.result) == "waiting" and outboxes(engine) == 0  # in place on one server
        return
    assert state(handle.result) == "waiting_children"  # recorded in the child's slot only
    assert engine.outbox_size("high") == 1
    assert_invariants(engine.client, engine.prefix, QUEUES)  # an end in flight is not a stuck parent

    member = f"d|{handle.id}|{kid}"
    raw = engine.client.hget(engine.keys("high").outbox, member)
    target = engine.keys("default").job(handle.id)
    assert engine._run("flow_deliver", (target,), (engine.maxlen, raw)) == 1
    assert engine._run("flow_deliver", (target,), (engine.maxlen, raw)) == 0  # a second delivery: no effect
    assert state(handle.result) == "waiting"
    assert engine.client.hget(target, "pend") == "0"
    seq = json.loads(raw)["seq"]
    assert engine._run("flow_ack", (engine.keys("high").outbox, engine.keys("high").outbox_due), (member, seq + 1)) == 0
    assert engine.relay("high") == 1  # the entry was still there: delivered again (no effect), acknowledged
    assert outboxes(engine) == 0
    waiting = [e for item in engine.client.xrange(engine.keys("default").events) for e in expand_entry(*item)
               if e[1].get("j") == handle.id and e[1].get("e") == "waiting"]
    assert len(waiting) == 1  # the parent moved to waiting once
    assert_invariants(engine.client, engine.prefix, QUEUES)


def test_a_relay_that_dies_between_deliver_and_acknowledge_leaves_the_entry_and_the_next_pass_applies_nothing_twice(engine, topology):
    from django_jobs.engine.queue import Outcome

    handles = [Flow(jf.gather.s(f"p{i}"), children=[HIGH.s(i), LOW.s(i)]).enqueue() for i in range(5)]
    for queue in ("high", "low"):
        jobs = engine.fetch(queue, 10, lease_ms=60_000, worker_id="w").jobs
        engine.settle(queue, [Outcome(c.id, c.token, "c", "7") for c in jobs])

    class Crash(Exception):
        pass

    def crash() -> None:
        raise Crash

    if topology == "cluster":
        with pytest.raises(Crash):
            engine.relay("high", after_deliver=crash)
        assert engine.outbox_size("high") == 5  # the delivered entry was not acknowledged
    for queue in ("high", "low"):
        engine.relay(queue)
    assert outboxes(engine) == 0
    for handle in handles:
        assert state(handle.result) == "waiting"
        assert engine.client.hget(engine.keys("default").job(handle.id), "pend") == "0"
    assert_invariants(engine.client, engine.prefix, QUEUES)


@pytest.mark.parametrize(("policy", "parent_state", "recorded"), [("fail", "failed", "failed"), ("ignore", "completed", "failed"), ("remove", "completed", "removed")])
def test_each_failure_policy_across_slots(engine, work, policy, parent_state, recorded):
    slow = LOW.using(delay=60).s(5)  # still scheduled when its sibling fails
    handle = Flow(jf.gather.s("p"), children=[jf.broken.using(queue_name="high").s("b").on_failure(policy), slow]).enqueue()
    failing, other = handle.children

    work(["default", "high"])

    assert state(failing.result) == "failed"
    assert state(handle.result) == parent_state if policy == "fail" else state(handle.result) == "waiting_children"
    parent = engine.get_job("default", handle.id)
    assert json.loads(parent["c:" + failing.id])["s"] == recorded
    if policy == "fail":
        assert handle.result.failure_reason == "child_failed"
        assert state(other.result) == "cancelled" and other.result.failure_reason == "parent_ended"
    assert outboxes(engine) == 0
    assert_invariants(engine.client, engine.prefix, QUEUES)


def test_cancelling_a_parent_cancels_its_children_on_other_slots_at_once(engine):
    inner = Flow(jf.gather.s("inner"), children=[jf.value.s(1), HIGH.s(2)])
    handle = Flow(jf.gather.s("outer"), children=[inner, LOW.s(3)]).enqueue()
    inner_handle, leaf = handle.children

    assert handle.result.cancel() == "cancelled"

    assert state(handle.result) == "cancelled"
    assert state(leaf.result) == "cancelled" and leaf.result.failure_reason == "parent_ended"
    assert state(inner_handle.result) == "cancelled"
    for child in inner_handle.children:
        assert state(child.result) == "cancelled" and child.result.failure_reason == "parent_ended"
    assert outboxes(engine) == 0
    assert_invariants(engine.client, engine.prefix, QUEUES)


def test_deleting_a_waiting_parent_cancels_its_children_on_other_slots(engine):
    handle = Flow(jf.gather.s("p"), children=[HIGH.s(1), LOW.s(2)]).enqueue()

    assert engine.delete_jobs("default", [handle.id]) == [1]

    assert engine.get_job("default", handle.id) is None
    for child in handle.children:
        assert state(child.result) == "cancelled" and child.result.failure_reason == "parent_ended"
    assert outboxes(engine) == 0
    assert_invariants(engine.client, engine.prefix, QUEUES)


def test_a_failure_three_levels_down_fails_each_parent_up_the_tree_across_three_slots(engine, work):
    leaf = jf.broken.using(queue_name="low").s("deep")
    middle = Flow(jf.gather.using(queue_name="high").s("middle"), children=[leaf, jf.value.s(1)])
    handle = Flow(jf.gather.s("root"), children=[middle, LOW.using(delay=60).s(2)]).enqueue()
    middle_handle, late = handle.children

    work(["default", "high", "low"])

    assert state(middle_handle.result) == "failed" and middle_handle.result.failure_reason == "child_failed"
    assert state(handle.result) == "failed" and handle.result.failure_reason == "child_failed"
    assert state(late.result) == "cancelled"
    assert outboxes(engine) == 0
    assert_invariants(engine.client, engine.prefix, QUEUES)


def test_nested_flows_over_three_queues_complete_bottom_up(engine, work):
    inner = Flow(jf.gather.using(queue_name="high").s("inner"), children=[LOW.s(1), jf.value.s(2)])
    handle = Flow(jf.gather.using(queue_name="low").s("outer"), children=[inner, HIGH.s(3)]).enqueue()
    inner_handle, leaf = handle.children

    work()

    a, b = (c.id for c in inner_handle.children)
    inner_value = {a: ["completed", 1], b: ["completed", 2]}
    assert state(inner_handle.result) == "completed" and inner_handle.result.return_value == inner_value
    assert state(handle.result) == "completed"
    assert handle.result.return_value == {inner_handle.id: ["completed", inner_value], leaf.id: ["completed", 3]}
    assert_invariants(engine.client, engine.prefix, QUEUES)


def test_a_replayed_flow_enqueue_writes_nothing_more(engine):
    from django_jobs.engine.queue import FlowJob, NewJob

    data = '{"v":1,"n":"tests.testapp.jobs_flows.value","a":[1],"k":{}}'
    rows = [
        FlowJob(queue="default", job=NewJob(id="p1", data=data), children=(("high", "c1", "x"), ("low", "c2", "x"))),
        FlowJob(queue="high", job=NewJob(id="c1", data=data, parent_id="p1"), parent_queue="default"),
        FlowJob(queue="low", job=NewJob(id="c2", data=data, parent_id="p1"), parent_queue="default"),
    ]
    first = engine.enqueue_flow(rows)
    assert first == 1
    again = engine.enqueue_flow(rows)
    assert again == 0 and again.enqueued_ms == first.enqueued_ms
    assert engine.counts("high")["waiting"] == engine.counts("low")["waiting"] == 1
    assert engine.get_job("high", "c1")["e"] == engine.get_job("default", "p1")["e"]


def test_a_flow_part_sent_twice_with_its_nonce_is_skipped_and_another_nonce_is_refused(engine, topology):
    if topology != "cluster":
        pytest.skip("flow_enqueue_part is the cluster path")
    data = '{"v":1,"n":"tests.testapp.jobs_flows.value","a":[1],"k":{}}'
    base = engine.keys("high").base
    part = [base, "c9", data, 0, 0, 0, "", "p9", engine.keys("default").base, "", 0, ""]
    code, e = engine._run("flow_enqueue_part", (engine.keys("high").meta,), (engine.maxlen, 0, "n1", 5000, 0, *part))
    assert code == 1
    assert engine._run("flow_enqueue_part", (engine.keys("high").meta,), (engine.maxlen, 0, "n1", 5000, 0, *part))[0] == 1
    assert engine.counts("high")["waiting"] == 1
    code, stored = engine._run("flow_enqueue_part", (engine.keys("high").meta,), (engine.maxlen, 0, "n2", 5000, 0, *part))
    assert (code, stored) == (0, e)


def failed_across_slots(tag: str):
    """A parent (default) failed through its child ``flaky`` on ``high`` (fails once, then
    succeeds); its sibling on ``low``, scheduled for later, was cancelled with it."""
    from tests.testapp.jobs import flaky

    failing = flaky.using(queue_name="high", attempts=1).s(tag, 1)
    handle = Flow(jf.gather.s("p"), children=[failing, LOW.using(delay=600).s(5)]).enqueue()
    from django_jobs.testing import work_until_empty

    work_until_empty(QUEUES)
    failing, sibling = handle.children
    assert state(handle.result) == "failed" and handle.result.failure_reason == "child_failed"
    assert state(sibling.result) == "cancelled" and sibling.result.failure_reason == "parent_ended"
    return handle, failing, sibling


def events_of(engine, queue: str, job_id: str, name: str) -> int:
    return sum(1 for item in engine.client.xrange(engine.keys(queue).events) for _, e in expand_entry(*item)
               if e.get("j") == job_id and e.get("e") == name)


def deliver(engine, queue: str, member: str) -> list[int]:
    """Deliver outbox entry ``member`` of ``queue`` twice by hand (a relay that lost its acknowledgement)."""
    raw = engine.client.hget(engine.keys(queue).outbox, member)
    entry = json.loads(raw)
    target = entry["b"] + "job:" + (entry["id"] if entry["k"] in ("x", "o") else entry["par"])
    return [engine._run("flow_deliver", (target,), (engine.maxlen, raw)) for _ in range(2)]


def test_retrying_the_failed_child_re_opens_its_parent_on_another_slot_exactly_once(engine, work, topology, ledger_path):
    from django_jobs.engine.transitions import Transitions
    from tests.conftest import read_ledger

    handle, failing, sibling = failed_across_slots("x1")

    # The retry's own transition (no relay yet): the child starts over in its slot, the parent's
    # re-open waits in the child's outbox.
    assert Transitions.retry_many(engine, "high", [failing.id]) == [RetryCode.RETRIED]
    assert state(failing.result) == "waiting"
    if topology == "cluster":
        assert state(handle.result) == "failed"
        assert deliver(engine, "high", f"r|{handle.id}|{failing.id}") == [1, 0]  # once, even delivered twice
        assert state(handle.result) == "waiting_children" and state(sibling.result) == "cancelled"
        assert deliver(engine, "default", f"x|{sibling.id}") == [1, 0]  # the parent re-opens its child
        for queue in QUEUES:
            engine.relay(queue)
    assert outboxes(engine) == 0
    assert state(handle.result) == "waiting_children" and state(sibling.result) == "waiting"
    parent = engine.get_job("default", handle.id)
    assert parent["pend"] == "2" and "err" not in parent
    assert [e["exception_class_path"] for e in json.loads(parent["eh"])] == ["django_jobs.exceptions.ChildFailed"]
    assert_invariants(engine.client, engine.prefix, QUEUES)

    work()

    assert state(handle.result) == "completed"
    assert handle.result.return_value == {failing.id: ["completed", "ok after 2"], sibling.id: ["completed", 5]}
    assert [row[2] for row in read_ledger(ledger_path) if row[0] == "end"].count("gather:p") == 1  # ran once, last
    assert events_of(engine, "default", handle.id, "waiting_children") == 2  # enqueued, re-opened once
    assert outboxes(engine) == 0
    assert_invariants(engine.client, engine.prefix, QUEUES)


def test_retrying_a_failure_three_levels_down_re_opens_each_parent_up_the_tree_across_three_slots(engine, work):
    from tests.testapp.jobs import flaky

    leaf = flaky.using(queue_name="low", attempts=1).s("deep", 1)
    middle = Flow(jf.gather.using(queue_name="high").s("middle"), children=[leaf, jf.value.s(1)])
    handle = Flow(jf.gather.s("root"), children=[middle, LOW.using(delay=600).s(2)]).enqueue()
    middle_handle, late = handle.children
    leaf_handle = middle_handle.children[0]
    work()
    assert state(handle.result) == "failed" and state(middle_handle.result) == "failed"

    assert engine.retry_many("low", [leaf_handle.id]) == [RetryCode.RETRIED]  # relays at once

    assert state(middle_handle.result) == "waiting_children" and state(handle.result) == "waiting_children"
    assert state(late.result) == "waiting"  # cancelled with the root, started over with it
    assert outboxes(engine) == 0
    assert_invariants(engine.client, engine.prefix, QUEUES)
    work()
    assert state(middle_handle.result) == "completed" and state(handle.result) == "completed"
    assert handle.result.return_value[late.id] == ["completed", 2]
    assert_invariants(engine.client, engine.prefix, QUEUES)


def test_a_parent_whose_failed_child_is_on_another_slot_is_not_retried_alone(engine, work):
    handle, failing, sibling = failed_across_slots("x2")

    assert engine.retry_many("default", [handle.id]) == [RetryCode.CHILD_FAILED]  # read from its own records

    assert state(handle.result) == "failed" and state(failing.result) == "failed" and state(sibling.result) == "cancelled"
    assert outboxes(engine) == 0
    assert_invariants(engine.client, engine.prefix, QUEUES)


def test_retrying_a_cancelled_parent_starts_its_children_on_other_slots_over(engine, work):
    inner = Flow(jf.gather.using(queue_name="high").s("inner"), children=[LOW.s(1), jf.value.s(2)])
    handle = Flow(jf.gather.s("outer"), children=[inner, LOW.s(3)]).enqueue()
    inner_handle, leaf = handle.children
    assert handle.result.cancel() == "cancelled"
    assert state(inner_handle.result) == "cancelled" and state(leaf.result) == "cancelled"

    assert engine.retry_many("default", [handle.id]) == [RetryCode.RETRIED]

    assert state(handle.result) == "waiting_children" and state(inner_handle.result) == "waiting_children"
    assert state(leaf.result) == "waiting"
    assert all(state(c.result) == "waiting" for c in inner_handle.children)
    assert engine.retry_many("default", [handle.id]) == [RetryCode.NOT_RETRYABLE]  # a replay
    assert outboxes(engine) == 0
    assert_invariants(engine.client, engine.prefix, QUEUES)
    work()
    assert state(handle.result) == "completed" and state(inner_handle.result) == "completed"
    assert_invariants(engine.client, engine.prefix, QUEUES)


def test_an_end_sent_before_its_parent_re_opened_is_asked_for_again(engine, topology):
    """A running child's end that reaches its parent before the parent's re-open reaches the child
    is ignored (it carries the older generation); the re-open then asks for it again, once."""
    from django_jobs.engine.queue import Outcome
    from django_jobs.engine.transitions import Transitions
    from tests.testapp.jobs import flaky

    if topology != "cluster":
        pytest.skip("the generations are the cluster path (in place the re-open reads the child)")
    failing = flaky.using(queue_name="high", attempts=1).s("x3", 1)
    handle = Flow(jf.gather.s("p"), children=[failing, LOW.s(5)]).enqueue()
    failing, sibling = handle.children
    [running] = engine.fetch("low", 1, lease_ms=60_000, worker_id="w").jobs  # the sibling runs
    [claimed] = engine.fetch("high", 1, lease_ms=60_000, worker_id="w").jobs
    engine.settle("high", [Outcome(claimed.id, claimed.token, "f", '{"exception_class_path": "RuntimeError"}')])
    for queue in QUEUES:
        engine.relay(queue)
    assert state(handle.result) == "failed" and engine.get_job("low", sibling.id)["cx"] == "1"  # asked to stop

    assert Transitions.retry_many(engine, "high", [failing.id]) == [RetryCode.RETRIED]
    assert engine.relay("high", limit=1) == 1  # the parent re-opens; its re-open toward the sibling waits
    assert engine.settle("low", [Outcome(running.id, running.token, "c", "5")]) == [1]
    raw = engine.client.hget(engine.keys("low").outbox, f"d|{handle.id}|{sibling.id}")
    assert engine._run("flow_deliver", (engine.keys("default").job(handle.id),), (engine.maxlen, raw)) == 0  # older: ignored
    assert state(handle.result) == "waiting_children" and "c:" + sibling.id not in engine.get_job("default", handle.id)
    for queue in QUEUES:  # the re-open reaches the sibling, which sends its end again
        engine.relay(queue)
    parent = engine.get_job("default", handle.id)
    assert json.loads(parent["c:" + sibling.id]) == {"s": "completed", "r": 5} and parent["pend"] == "1"
    assert outboxes(engine) == 0
    assert_invariants(engine.client, engine.prefix, QUEUES)


def test_an_undeliverable_outbox_entry_is_parked_and_the_others_are_still_delivered(engine, caplog, topology):
    from django_jobs.engine.queue import Outcome
    from django_jobs.engine.relay import PARKED

    handle = Flow(jf.gather.s("p"), children=[HIGH.s(1)]).enqueue()
    k = engine.keys("high")
    bad = json.dumps({"k": "?", "b": engine.keys("default").base, "par": "nope", "id": "bad", "seq": 1})
    engine.client.hset(k.outbox, "d|nope|bad", bad)
    engine.client.zadd(k.outbox_due, {"d|nope|bad": 0})
    [claimed] = engine.fetch("high", 1, lease_ms=60_000, worker_id="w").jobs
    engine.settle("high", [Outcome(claimed.id, claimed.token, "c", "1")])

    engine.relay("high")

    assert state(handle.result) == "waiting"
    assert engine.client.zscore(k.outbox_due, "d|nope|bad") == PARKED and "parked" in caplog.text
    assert engine.relay("high") == 0 and engine.outbox_size("high") == 1  # not read again


# -- a flow written in parts (a cluster flow over several queues): complete in effect -----------
#
# The parts path runs on both topologies (on one server it is what the cluster does, without the
# slots): the producer's enqueue is made to stop after its first part, as a killed producer would.


class ProducerDied(Exception):
    pass


def in_parts(engine, monkeypatch, after_first=None) -> list:
    """Make ``Flow.enqueue()`` write its flows in parts, calling ``after_first`` after the first part
    (default: die there); return the list the rows of each enqueued flow are appended to."""

    def die() -> None:
        raise ProducerDied

    flows: list = []

    def enqueue_flow(rows):
        flows.append(rows)
        return engine._enqueue_flow_parts(rows, after_first=after_first or die)

    monkeypatch.setattr(engine, "enqueue_flow", enqueue_flow)
    return flows


#: Flows written in at least three parts: (name, build) with parents on several slots.
SHAPES = {
    "two_children_on_two_slots": lambda: Flow(jf.gather.s("p"), children=[jf.value.s(1), HIGH.s(2), LOW.s(3)]),
    # A grandchild on the root's queue whose parent is on a second slot, one on a third slot.
    "three_levels_over_three_slots": lambda: Flow(
        jf.gather.s("p"),
        children=[Flow(jf.gather.using(queue_name="high").s("m"), children=[jf.value.s(1), LOW.s(2)]), LOW.s(3)],
    ),
}

FAR = 2**50  # a relay's clock far past the producer's grace


def created_events(engine) -> Counter[str]:
    """How often each job got a creation event (waiting_children, waiting or scheduled): before any runs."""
    return Counter(
        fields["j"] for q in QUEUES for item in engine.client.xrange(engine.keys(q).events) for _id, fields in expand_entry(*item)
        if fields.get("e") in ("waiting_children", "waiting", "scheduled") and fields.get("why") is None
    )


def all_ids(rows) -> dict[str, str]:
    return {row.job.id: row.queue for row in rows}


def assert_written_once(engine, rows) -> None:
    ids = all_ids(rows)
    assert all(engine.get_job(q, i) is not None for i, q in ids.items()), "a job of the flow was never written"
    counts = created_events(engine)
    assert {i: counts[i] for i in ids} == dict.fromkeys(ids, 1), "a job of the flow was written twice"


@pytest.mark.parametrize("shape", list(SHAPES))
def test_a_producer_that_dies_after_the_first_part_leaves_the_rest_to_a_relay_and_the_flow_completes_once(
    engine, work, monkeypatch, shape, ledger_path
):
    from tests.conftest import read_ledger

    flows = in_parts(engine, monkeypatch)
    with pytest.raises(ProducerDied):
        SHAPES[shape]().enqueue()
    [rows] = flows
    root = rows[0].job.id
    assert state_of(engine, "default", root) == "waiting_children"
    assert [i for i, q in all_ids(rows).items() if engine.get_job(q, i) is None] == [r.job.id for r in rows[1:]]
    assert engine.outbox_size("default") >= 2  # one create entry per part not written
    assert_invariants(engine.client, engine.prefix, QUEUES)  # the root waits for children a create entry holds

    assert engine.relay("default") == 0  # within the producer's grace: the producer may still write them
    assert engine.relay("default", now_ms=FAR) >= 2

    assert_written_once(engine, rows)
    assert outboxes(engine) == 0
    assert not engine.client.keys(engine.prefix + ":*part:*")  # the marks went with their entries
    assert_invariants(engine.client, engine.prefix, QUEUES)
    work_and_relay(engine, work)
    assert state_of(engine, "default", root) == "completed"
    assert [row[2] for row in read_ledger(ledger_path) if row[0] == "end"].count("gather:p") == 1
    assert outboxes(engine) == 0
    assert_invariants(engine.client, engine.prefix, QUEUES)


def work_and_relay(engine, work) -> None:
    """Run the queues to their end, relaying as a cluster's workers do (on one server, only the
    parts path writes jobs whose steps go through the outbox: nothing relays them but this)."""
    for _ in range(4):
        work()
        if not sum(engine.relay(q) for q in QUEUES):
            return


def state_of(engine, queue: str, job_id: str) -> str | None:
    job = engine.get_job(queue, job_id)
    return None if job is None else job["s"]


@pytest.mark.parametrize("race", ["before_the_producer", "first_part_only", "dies_before_acknowledging"])
def test_a_relay_racing_the_producer_writes_nothing_twice(engine, work, monkeypatch, race):
    """A relay delivers the create entries while the producer is between its first part and its own
    deliveries (all of them, the first one only, or all but dying before each acknowledgement):
    the producer's deliveries then find the parts written and write nothing."""

    class RelayDied(Exception):
        pass

    def crash() -> None:
        raise RelayDied

    def relay() -> None:
        if race == "before_the_producer":
            engine.relay("default", now_ms=FAR)
        elif race == "first_part_only":
            engine.relay("default", now_ms=FAR, limit=1)
        else:
            with pytest.raises(RelayDied):
                engine.relay("default", now_ms=FAR, after_deliver=crash)

    flows = in_parts(engine, monkeypatch, after_first=relay)
    handle = SHAPES["three_levels_over_three_slots"]().enqueue()
    [rows] = flows

    assert_written_once(engine, rows)
    assert outboxes(engine) == 0
    assert engine.relay("default", now_ms=FAR) == 0
    assert not engine.client.keys(engine.prefix + ":*part:*")
    assert_invariants(engine.client, engine.prefix, QUEUES)
    # The producer's reply: one enqueue time (Redis' clock) that every job holds.
    e = {engine.get_job(q, i)["e"] for i, q in all_ids(rows).items()}
    assert len(e) == 1 and handle.result.enqueued_at.timestamp() * 1000 == pytest.approx(int(e.pop()), abs=1)
    work_and_relay(engine, work)
    assert state(handle.result) == "completed"
    assert_invariants(engine.client, engine.prefix, QUEUES)


def test_a_part_whose_jobs_ended_and_were_deleted_is_not_written_again_by_a_late_delivery(engine, monkeypatch):
    """A relay wrote a part and died before acknowledging it; its job ran and was deleted meanwhile.
    The next delivery of that entry finds the part's mark and writes nothing."""
    from django_jobs.engine.queue import Outcome

    class RelayDied(Exception):
        pass

    def crash() -> None:
        raise RelayDied

    flows = in_parts(engine, monkeypatch)
    with pytest.raises(ProducerDied):
        Flow(jf.gather.s("p"), children=[HIGH.s(1), LOW.using(delay=600).s(2)]).enqueue()
    [rows] = flows
    with pytest.raises(RelayDied):
        engine.relay("default", now_ms=FAR, limit=1, after_deliver=crash)  # the first create entry: written, not acknowledged
    kid = next(r.job.id for r in rows if r.queue == "high")
    [claimed] = engine.fetch("high", 1, lease_ms=60_000, worker_id="w").jobs
    assert engine.settle("high", [Outcome(claimed.id, claimed.token, "c", "1")]) == [1]
    for q in QUEUES:
        engine.relay(q)  # its end reaches the parent (not the create entries: within the grace)
    assert engine.delete_jobs("high", [kid]) == [1]

    engine.relay("default", now_ms=FAR)

    assert engine.get_job("high", kid) is None  # not written again
    assert engine.get_job("low", next(r.job.id for r in rows if r.queue == "low"))["s"] == "scheduled"
    assert outboxes(engine) == 0
    assert json.loads(engine.get_job("default", rows[0].job.id)["c:" + kid])["s"] == "completed"
    assert_invariants(engine.client, engine.prefix, QUEUES)


@pytest.mark.parametrize("how", ["cancel", "delete"])
def test_a_parent_cancelled_before_the_rest_of_its_flow_was_written_gets_its_children_cancelled(engine, monkeypatch, how):
    flows = in_parts(engine, monkeypatch)
    with pytest.raises(ProducerDied):
        SHAPES["three_levels_over_three_slots"]().enqueue()
    [rows] = flows
    root = rows[0].job.id
    if how == "cancel":
        assert engine.cancel("default", root) == 1
    else:
        assert engine.delete_jobs("default", [root]) == [1]

    engine.relay("default", now_ms=FAR)
    for q in QUEUES:
        engine.relay(q)

    for i, q in list(all_ids(rows).items())[1:]:
        job = engine.get_job(q, i)
        assert (job["s"], job.get("why")) == ("cancelled", "parent_ended"), (i, q, job)
    assert outboxes(engine) == 0
    assert_invariants(engine.client, engine.prefix, QUEUES)


def test_a_part_with_a_reused_id_is_refused_and_the_parts_below_it_are_parked(engine, monkeypatch):
    """The ids were free when the producer read them; a job took one of a later part's ids before
    that part was written: the producer raises, and neither it nor a relay writes that part or
    the parts below it."""
    from django_jobs.engine.queue import NewJob
    from django_jobs.exceptions import ScriptError

    shape = Flow(jf.gather.s("p"), children=[Flow(jf.gather.using(queue_name="high").s("m"), children=[LOW.s(1)])])

    def take_the_middle_id() -> None:
        middle = flows[0][1].job.id
        engine.enqueue("high", [NewJob(id=middle, data='{"v":1,"n":"tests.testapp.jobs_flows.value","a":[0],"k":{}}')])

    flows = in_parts(engine, monkeypatch, after_first=take_the_middle_id)
    with pytest.raises(ScriptError, match="reused id"):
        shape.enqueue()
    [rows] = flows
    leaf = rows[2].job.id
    assert engine.relay("default", now_ms=FAR) == 0
    assert engine.get_job("low", leaf) is None  # never written under a job of another flow
    assert engine.outbox_size("default") == 2  # parked for an operator
    assert engine.get_job("high", rows[1].job.id).get("fn") is None  # the other job is untouched


def test_a_workers_relay_pass_delivers_the_steps_of_all_its_queues_and_looks_for_parts_once_a_second(engine, monkeypatch, topology):
    """``relay_queues`` (a worker's heartbeat pass): the steps of each queue, and the create
    entries of a dead producer once they are due, when it looks for them (``parts_now``, or once
    per PARTS_PROBE_EVERY: a pass in between does not look)."""
    from django_jobs.engine.queue import Outcome

    handle = Flow(jf.gather.s("p"), children=[HIGH.s(1), LOW.s(2)]).enqueue()
    for q in ("high", "low"):
        [claimed] = engine.fetch(q, 1, lease_ms=60_000, worker_id="w").jobs
        assert engine.settle(q, [Outcome(claimed.id, claimed.token, "c", "1")]) == [1]
    if topology != "cluster":
        assert state(handle.result) == "waiting" and outboxes(engine) == 0  # in place on one server
        return
    assert state(handle.result) == "waiting_children" and outboxes(engine) == 2
    assert engine.relay_queues(QUEUES) == 2  # both ends, from two outboxes in one pass
    assert state(handle.result) == "waiting" and outboxes(engine) == 0
    assert engine.relay_queues(QUEUES) == 0  # idle

    flows = in_parts(engine, monkeypatch)
    with pytest.raises(ProducerDied):
        SHAPES["two_children_on_two_slots"]().enqueue()
    [rows] = flows
    parts = engine.keys("default").outbox_parts
    engine.client.zadd(parts, dict.fromkeys(engine.client.zrange(parts, 0, -1), 0))  # past the grace by Redis' clock
    engine._parts_probe_at = float("inf")  # a probe just happened
    assert engine.relay_queues(QUEUES) == 0 and engine.outbox_size("default") >= 2  # not looked at
    assert engine.relay_queues(QUEUES, parts_now=True) >= 2  # a burst worker's last pass looks
    assert_written_once(engine, rows)
    assert outboxes(engine) == 0
    assert_invariants(engine.client, engine.prefix, QUEUES)
