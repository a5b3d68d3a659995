"""The invariant checker itself: it must notice each kind of broken state."""

from __future__ import annotations

import pytest

from tests.chaos.invariants import event_violations, field_violations, invariant_violations
from tests.testapp import jobs_chaos

pytestmark = pytest.mark.chaos


def test_a_consistent_store_has_no_violations(r, prefix, work):
    jobs_chaos.quick.enqueue_many([("a",), ("b",)])
    work(["default"])
    jobs_chaos.quick.using(delay=60).enqueue("later")
    jobs_chaos.quick.enqueue("waiting")
    assert invariant_violations(r, prefix, ["default", "high"]) == []


def test_each_broken_invariant_is_reported(r, prefix):
    waiting, other, orphan_holder = jobs_chaos.quick.enqueue_many([("a",), ("b",), ("c",)])
    base = f"{prefix}:{{default}}:"
    r.zadd(base + "active", {waiting.id: 1})  # in two sets
    r.hset(base + "job:" + other.id, "s", "completed")  # state and set disagree
    r.delete(base + "job:" + orphan_holder.id)  # set member without a hash
    r.hset(base + "job:lonely", "s", "waiting")  # hash in no set
    problems = invariant_violations(r, prefix, ["default"])
    assert len(problems) == 4, problems
    assert any(waiting.id in p and "'wait', 'active'" in p for p in problems)
    assert any(other.id in p and "'completed'" in p for p in problems)
    assert any(orphan_holder.id in p and "no job hash" in p for p in problems)
    assert any("lonely" in p and "no state set" in p for p in problems)


def test_a_job_completed_then_requeued_or_completed_twice_is_reported(r, prefix, work):
    once, twice, requeued = jobs_chaos.quick.enqueue_many([("a",), ("b",), ("c",)])
    work(["default"])
    assert event_violations(r, prefix, ["default"]) == []
    events = f"{prefix}:{{default}}:events"
    r.xadd(events, {"e": "completed", "j": twice.id})
    r.xadd(events, {"e": "waiting", "j": requeued.id, "why": "retried"})  # an operator retry is fine
    r.xadd(events, {"e": "stalled", "j": requeued.id})
    r.xadd(events, {"e": "completed", "j": requeued.id})
    r.xadd(events, {"e": "waiting", "j": requeued.id})
    problems = event_violations(r, prefix, ["default"])
    assert len(problems) == 2, problems
    assert any(twice.id in p and "'completed'" in p for p in problems)
    assert any(requeued.id in p and "'waiting'" in p for p in problems)
    assert not any(once.id in p for p in problems)


def test_an_active_job_without_a_lease_and_a_finished_job_without_a_finish_time_are_reported(r, prefix, work):
    done, claimed = jobs_chaos.quick.enqueue_many([("a",), ("b",)])
    work(["default"])
    assert field_violations(r, prefix, ["default"]) == []
    base = f"{prefix}:{{default}}:job:"
    r.hdel(base + done.id, "f")
    r.hset(base + claimed.id, mapping={"s": "active", "a": "0"})
    r.hdel(base + claimed.id, "tok")
    problems = field_violations(r, prefix, ["default"])
    assert len(problems) == 2, problems
    assert any(done.id in p and "finish time" in p for p in problems)
    assert any(claimed.id in p and "no lease" in p for p in problems)
