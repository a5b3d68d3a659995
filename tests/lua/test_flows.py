"""flow_enqueue.lua and includes/flow.lua against the real Redis: the tree, its events, and
what settle, recover, release and cancel do to a flow's parent and children."""

from __future__ import annotations

import json

from django_jobs.engine.keys import QueueKeys
from django_jobs.engine.queue import FlowJob
from tests.chaos.invariants import assert_invariants
from tests.lua.conftest import (
    LONG_LEASE_MS,
    PRIORITY_SPAN,
    QUEUE,
    Events,
    assert_state,
    claim_one,
    complete,
    fail,
    jobs_settings,
    new_job,
    retry,
    server_ms,
)

OTHER = "high"


def tree(parent_priority: int = 0, policies: tuple[str, str] = ("", "")) -> list[FlowJob]:
    """Parent ``p`` on :data:`QUEUE` with children ``c1`` (on :data:`QUEUE`) and ``c2`` (on ``high``)."""
    return [
        FlowJob(queue=QUEUE, job=new_job("p", priority=parent_priority), keep_ms=60_000,
                children=((QUEUE, "c1", "tests.c1"), (OTHER, "c2", "tests.c2"))),
        FlowJob(queue=QUEUE, job=new_job("c1", parent_id="p"), parent_queue=QUEUE, policy=policies[0], keep_ms=60_000),
        FlowJob(queue=OTHER, job=new_job("c2", parent_id="p"), parent_queue=QUEUE, policy=policies[1], keep_ms=60_000),
    ]


def other_keys(prefix: str) -> QueueKeys:
    return QueueKeys.build(prefix, OTHER)


def test_a_flow_puts_its_parent_in_waiting_children_and_its_leaves_in_wait_on_their_own_queues(engine, r, k, prefix, events):
    ok = other_keys(prefix)
    assert engine.enqueue_flow(tree()) == 1

    assert_state(r, k, "p", "waiting_children")
    assert r.hget(k.job("p"), "pend") == "2"
    assert json.loads(r.hget(k.job("p"), "kids")) == [[k.base, "c1", QUEUE, "tests.c1"], [ok.base, "c2", OTHER, "tests.c2"]]
    assert_state(r, k, "c1", "waiting")
    assert_state(r, ok, "c2", "waiting")
    assert r.hmget(ok.job("c2"), "par", "pb", "fk") == ["p", k.base, "60000"]
    assert events.new() == [("waiting_children", "p"), ("waiting", "c1")]
    assert Events(r, ok).new() == [("waiting", "c2")]
    assert r.llen(k.marker) == 1 and r.llen(ok.marker) == 1
    assert engine.counts(QUEUE)["waiting_children"] == 1


def test_the_last_child_to_complete_moves_the_parent_to_waiting_at_the_back_of_its_priority(engine, r, k, prefix, events):
    ok = other_keys(prefix)
    engine.enqueue_flow(tree(parent_priority=7))
    c1 = claim_one(engine, "c1")
    assert engine.settle(QUEUE, [complete(c1, '{"x": 1}')]) == [1]
    assert_state(r, k, "p", "waiting_children")
    assert r.hget(k.job("p"), "pend") == "1"
    r.delete(k.marker)
    events.new()

    c2 = engine.fetch(OTHER, 1, lease_ms=LONG_LEASE_MS, worker_id="w").jobs[0]
    assert engine.settle(OTHER, [complete(c2, "[2]")]) == [1]
    assert engine.settle(OTHER, [complete(c2, "[2]")]) == [1]  # a replay counts the child once

    assert_state(r, k, "p", "waiting")
    seq = int(r.hget(k.meta, "seq"))
    assert r.zscore(k.wait, "p") == (100 - 7) * PRIORITY_SPAN + seq
    assert r.hmget(k.job("p"), "c:c1", "c:c2", "pend") == ['{"s":"completed","r":{"x": 1}}', '{"s":"completed","r":[2]}', "0"]
    assert events.new() == [("waiting", "p")]  # on the parent's own stream
    assert Events(r, ok).all()[-1] == ("completed", "c2")
    assert r.llen(k.marker) == 1


def test_a_retry_of_a_child_leaves_its_parent_waiting(engine, r, k):
    engine.enqueue_flow(tree())
    c1 = claim_one(engine, "c1")
    assert engine.settle(QUEUE, [retry(c1)]) == [1]
    assert_state(r, k, "p", "waiting_children")
    assert r.hget(k.job("p"), "pend") == "2"


def test_a_failed_child_fails_the_parent_and_cancels_its_pending_siblings_on_their_queues(engine, r, k, prefix, events):
    ok = other_keys(prefix)
    engine.enqueue_flow(tree())
    c1 = claim_one(engine, "c1")
    events.new()

    assert engine.settle(QUEUE, [fail(c1)]) == [1]

    assert_state(r, k, "p", "failed")
    assert r.hget(k.job("p"), "why") == "child_failed"
    assert json.loads(r.hget(k.job("p"), "err"))[0]["exception_class_path"] == "django_jobs.exceptions.ChildFailed"
    assert_state(r, ok, "c2", "cancelled")
    assert r.hget(ok.job("c2"), "why") == "parent_ended"
    assert events.new() == [("failed", "c1"), ("failed", "p")]
    assert Events(r, ok).all()[-1] == ("cancelled", "c2")
    assert_invariants(r, prefix, [QUEUE, OTHER])


def test_a_child_failed_by_recovery_past_max_recoveries_applies_its_policy(engine, r, k, prefix):
    with jobs_settings(MAX_RECOVERIES=0) as eng:
        eng.enqueue_flow(tree(policies=("i", "")))
        claim_one(eng, "c1")
        assert eng.recover(QUEUE, now_ms=server_ms(r) + 3_600_000) == (0, 1)
        assert_state(r, k, "c1", "failed")
        assert_state(r, k, "p", "waiting_children")  # ignored: the parent still waits for c2
        assert r.hmget(k.job("p"), "c:c1", "pend") == ['{"s":"failed"}', "1"]


def test_a_stalled_child_is_recovered_without_touching_its_parent(engine, r, k):
    engine.enqueue_flow(tree())
    claim_one(engine, "c1")
    assert engine.recover(QUEUE, now_ms=server_ms(r) + 3_600_000) == (1, 0)
    assert_state(r, k, "c1", "waiting")
    assert_state(r, k, "p", "waiting_children")
    assert r.hget(k.job("p"), "pend") == "2"


def test_cancelling_a_parent_cancels_waiting_children_and_asks_running_ones_to_stop(engine, r, k, prefix):
    ok = other_keys(prefix)
    engine.enqueue_flow(tree())
    c1 = claim_one(engine, "c1")

    assert engine.cancel(QUEUE, "p") == 1

    assert_state(r, k, "p", "cancelled")
    assert_state(r, ok, "c2", "cancelled")
    assert_state(r, k, "c1", "active")
    assert r.hget(k.job("c1"), "cx") == "1"
    # The running child then ends: its parent is cancelled already, so nothing more happens.
    assert engine.settle(QUEUE, [complete(c1)]) == [1]
    assert_state(r, k, "p", "cancelled")
    assert r.hget(k.job("p"), "c:c1") is None
    assert_invariants(r, prefix, [QUEUE, OTHER])


def test_a_released_child_whose_cancel_was_requested_applies_its_policy(engine, r, k):
    engine.enqueue_flow(tree(policies=("r", "")))
    c1 = claim_one(engine, "c1")
    assert engine.cancel(QUEUE, "c1") == 2
    assert engine.release(QUEUE, [(c1.id, c1.token)]) == 1
    assert_state(r, k, "c1", "cancelled")
    assert r.hmget(k.job("p"), "c:c1", "pend") == ['{"s":"removed"}', "1"]


def test_a_child_kept_for_no_time_still_completes_its_parent(r, k, prefix, events):
    # A flow's queue keeps writing the ended child's hash (the flow reads it) before deleting it.
    with jobs_settings(KEEP_COMPLETED={"AGE": 0}) as engine:
        ok = other_keys(prefix)
        engine.enqueue_flow(tree())
        assert engine.settle(QUEUE, [complete(claim_one(engine, "c1"), '{"x": 1}')]) == [1]
        c2 = engine.fetch(OTHER, 1, lease_ms=LONG_LEASE_MS, worker_id="w").jobs[0]
        assert engine.settle(OTHER, [complete(c2, "[2]")]) == [1]
        assert_state(r, k, "p", "waiting")
        assert r.hmget(k.job("p"), "c:c1", "c:c2") == ['{"s":"completed","r":{"x": 1}}', '{"s":"completed","r":[2]}']
        assert not r.exists(k.job("c1")) and not r.exists(ok.job("c2"))


def test_a_job_outside_flows_settles_as_before(engine, r, k, events):
    engine.enqueue(QUEUE, [new_job("solo")])
    c = claim_one(engine, "solo")
    assert engine.settle(QUEUE, [complete(c)]) == [1]
    assert_state(r, k, "solo", "completed")
    assert [e for e, _ in events.all()] == ["waiting", "active", "completed"]
    assert r.hget(k.meta, "flows") is None  # this queue never held a flow: settle skips flow steps


def test_a_flow_marks_each_of_its_queues_in_their_meta_hash(engine, r, k, prefix):
    engine.enqueue_flow(tree())
    assert r.hget(k.meta, "flows") == "1" and r.hget(other_keys(prefix).meta, "flows") == "1"
    assert r.hget(QueueKeys.build(prefix, "low").meta, "flows") is None


def test_the_invariant_checker_reports_a_parent_left_waiting_for_a_child_that_ended(engine, r, k, prefix):
    from tests.chaos.invariants import invariant_violations

    engine.enqueue_flow(tree())
    assert invariant_violations(r, prefix, [QUEUE, OTHER]) == []
    # Fabricate the fault flows must never leave: c1 completed behind its parent's back.
    r.zrem(k.wait, "c1")
    r.zadd(k.completed, {"c1": server_ms(r) + 60_000})
    r.hset(k.job("c1"), "s", "completed")

    assert invariant_violations(r, prefix, [QUEUE, OTHER]) == [f"{QUEUE}: parent p waits for child c1, which is completed"]
    r.hset(k.job("p"), "pend", "5")
    assert f"{QUEUE}: parent p has pend='5' but 2 unrecorded children" in invariant_violations(r, prefix, [QUEUE, OTHER])


# -- retrying inside flows (docs/flows.md#retrying) ------------------------------------------------


def nested() -> list[FlowJob]:
    """``root`` <- [``mid`` <- [``leaf``], ``c2`` (on ``high``)], all kept a minute when a flow step ends them."""
    return [
        FlowJob(queue=QUEUE, job=new_job("root"), keep_ms=60_000, children=((QUEUE, "mid", "t"), (OTHER, "c2", "t"))),
        FlowJob(queue=QUEUE, job=new_job("mid", parent_id="root"), parent_queue=QUEUE, keep_ms=60_000, children=((QUEUE, "leaf", "t"),)),
        FlowJob(queue=QUEUE, job=new_job("leaf", parent_id="mid"), parent_queue=QUEUE, keep_ms=60_000),
        FlowJob(queue=OTHER, job=new_job("c2", parent_id="root"), parent_queue=QUEUE, keep_ms=60_000),
    ]


def test_retrying_a_failed_leaf_reopens_every_ancestor_that_failed_through_it(engine, r, k, prefix):
    ok = other_keys(prefix)
    engine.enqueue_flow(nested())
    c2 = engine.fetch(OTHER, 1, lease_ms=LONG_LEASE_MS, worker_id="w").jobs[0]  # running when the leaf fails
    leaf = claim_one(engine, "leaf")
    assert engine.settle(QUEUE, [fail(leaf)]) == [1]
    assert r.hmget(k.job("mid"), "s", "why") == r.hmget(k.job("root"), "s", "why") == ["failed", "child_failed"]
    assert r.hget(ok.job("c2"), "cx") == "1"  # its parent ended: asked to stop

    assert engine.retry(QUEUE, ["mid"]) == [3]  # its failed child is not retried with it
    assert engine.retry(QUEUE, ["root"]) == [3]
    assert r.hget(k.job("root"), "s") == "failed"

    assert engine.retry(QUEUE, ["leaf"]) == [1]
    assert_state(r, k, "leaf", "waiting")
    assert_state(r, k, "mid", "waiting_children")
    assert_state(r, k, "root", "waiting_children")
    assert r.hmget(k.job("mid"), "pend", "c:leaf", "err", "why") == ["1", None, None, None]
    assert r.hmget(k.job("root"), "pend", "c:mid") == ["2", None]
    assert json.loads(r.hget(k.job("root"), "eh"))[0]["exception_class_path"] == "django_jobs.exceptions.ChildFailed"
    assert json.loads(r.hget(k.job("leaf"), "eh"))[0]["traceback"] == "fail leaf"  # its own error, kept
    assert r.hget(ok.job("c2"), "cx") is None  # the stop request its parent's end made is withdrawn
    assert_invariants(r, engine.prefix, (QUEUE, OTHER))

    assert engine.settle(OTHER, [complete(c2, "2")]) == [1]
    assert engine.settle(QUEUE, [complete(claim_one(engine, "leaf"), "1")]) == [1]
    assert engine.settle(QUEUE, [complete(claim_one(engine, "mid"), "10")]) == [1]
    assert_state(r, k, "root", "waiting")
    assert r.hmget(k.job("root"), "c:mid", "c:c2") == ['{"s":"completed","r":10}', '{"s":"completed","r":2}']
    assert_invariants(r, engine.prefix, (QUEUE, OTHER))


def test_a_cancelled_waiting_parent_is_reopened_with_its_cancelled_children_by_a_retry(engine, r, k, prefix):
    ok = other_keys(prefix)
    engine.enqueue_flow(tree())
    assert engine.settle(QUEUE, [complete(claim_one(engine, "c1"), "1")]) == [1]
    assert engine.cancel_many(QUEUE, ["p"]) == [1]
    assert r.hmget(ok.job("c2"), "s", "why") == ["cancelled", "parent_ended"]

    assert engine.retry_many(QUEUE, ["p"]) == [1]

    assert_state(r, k, "p", "waiting_children")
    assert r.hmget(k.job("p"), "pend", "c:c1") == ["1", '{"s":"completed","r":1}']  # the completed child stays recorded
    assert_state(r, ok, "c2", "waiting")
    assert r.llen(ok.marker) == 1
    assert_invariants(r, engine.prefix, (QUEUE, OTHER))


def test_a_flow_reply_carries_the_e_every_job_holds_and_a_replay_the_stored_one(engine, r, k, prefix):
    import time

    created = engine.enqueue_flow(tree())
    assert created == 1
    ok = other_keys(prefix)
    held = {int(r.hget(k.job("p"), "e")), int(r.hget(k.job("c1"), "e")), int(r.hget(ok.job("c2"), "e"))}
    assert held == {created.enqueued_ms}
    time.sleep(0.005)
    replay = engine.enqueue_flow(tree())
    assert replay == 0 and replay.enqueued_ms == created.enqueued_ms
