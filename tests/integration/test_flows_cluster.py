"""Flows over several queues on a real Redis Cluster: the outbox, the relay, flow enqueue in parts.

Queues ``default``, ``high`` and ``low`` live on different slots (and, on the 3-primary cluster
of the fixtures, on at least two nodes: checked below), so every flow step between a child and
its parent is recorded in the outbox of the job's own slot and delivered by the relay
(engine/relay.py; docs/flows.md#redis-cluster). The same tests run against one server, where
nothing goes through the outbox.
"""

from __future__ import annotations

import json

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
