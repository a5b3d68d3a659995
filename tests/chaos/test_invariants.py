"""The invariant checker itself: it must notice each kind of broken state."""

from __future__ import annotations

import pytest

from tests.chaos.invariants import invariant_violations
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
