"""recover.lua: expired leases, tested deterministically with the now_ms override."""

from __future__ import annotations

import json

from django_jobs.engine.codes import ScriptCode
from tests.lua.conftest import (
    QUEUE,
    assert_state,
    claim,
    claim_one,
    complete,
    jobs_settings,
    new_job,
    score,
    server_ms,
)

#: A recovery run "one hour from now": every lease taken in the test has expired by then.
LATER_MS = 3_600_000


def later(r) -> int:
    return server_ms(r) + LATER_MS


def test_an_expired_lease_returns_the_job_to_the_front_of_its_priority(engine, r, k, events):
    engine.enqueue(QUEUE, [new_job("a"), new_job("b"), new_job("vip", priority=5)])
    original = score(r, k.wait, "a")
    vip, a = claim(engine, 2)
    engine.settle(QUEUE, [complete(vip)])
    r.delete(k.marker)
    events.new()

    assert engine.recover(QUEUE, now_ms=later(r)) == (1, 0)

    assert_state(r, k, "a", "waiting")
    assert score(r, k.wait, "a") == original
    assert r.zrange(k.wait, 0, -1) == ["a", "b"]
    h = r.hgetall(k.job("a"))
    assert (h["a"], h["rec"]) == ("0", "1")
    assert "tok" not in h and "w" not in h
    assert events.new() == [("stalled", "a")]
    assert r.llen(k.marker) == 1


def test_a_lease_that_has_not_expired_is_left_alone(engine, r, k, events):
    engine.enqueue(QUEUE, [new_job("a")])
    claim_one(engine, "a", lease_ms=60_000)
    deadline = score(r, k.active, "a")
    events.new()

    assert engine.recover(QUEUE, now_ms=deadline) == (0, 0)  # valid until its deadline
    assert_state(r, k, "a", "active")
    assert engine.recover(QUEUE, now_ms=deadline + 1) == (1, 0)
    assert events.new() == [("stalled", "a")]


def test_a_job_that_keeps_losing_its_worker_fails_as_worker_lost(r, k, events):
    with jobs_settings(MAX_RECOVERIES=2) as engine:
        engine.enqueue(QUEUE, [new_job("poison")])
        for _ in range(2):
            claim_one(engine, "poison")
            assert engine.recover(QUEUE, now_ms=later(r)) == (1, 0)
        claim_one(engine, "poison")
        events.new()

        now = later(r)
        assert engine.recover(QUEUE, now_ms=now) == (0, 1)

        assert_state(r, k, "poison", "failed")
        h = r.hgetall(k.job("poison"))
        assert (h["why"], h["rec"], h["f"]) == ("worker_lost", "3", str(now))
        (error,) = json.loads(h["err"])
        assert error["exception_class_path"] == "django_jobs.exceptions.LeaseLost"
        assert "worker_lost" in error["traceback"]
        assert score(r, k.failed, "poison") == now + engine.settings.keep(QUEUE, "FAILED")[0] * 1000
        assert [(f["e"], f["j"], f.get("why")) for f in events.new_fields()] == [("failed", "poison", "worker_lost")]


def test_recovery_is_idempotent(engine, r, k, events):
    engine.enqueue(QUEUE, [new_job("a"), new_job("b")])
    claim(engine, 2)
    now = later(r)
    assert engine.recover(QUEUE, now_ms=now) == (2, 0)
    snapshot = {j: r.hgetall(k.job(j)) for j in "ab"}
    waiting = r.zrange(k.wait, 0, -1, withscores=True)
    events.new()

    assert engine.recover(QUEUE, now_ms=now) == (0, 0)
    assert engine.recover(QUEUE, now_ms=now + LATER_MS) == (0, 0)

    assert {j: r.hgetall(k.job(j)) for j in "ab"} == snapshot
    assert r.zrange(k.wait, 0, -1, withscores=True) == waiting
    assert events.new() == []


def test_the_old_token_can_no_longer_settle_after_recovery(engine, r, k):
    engine.enqueue(QUEUE, [new_job("a")])
    old = claim_one(engine, "a")
    engine.recover(QUEUE, now_ms=later(r))

    assert engine.settle(QUEUE, [complete(old)]) == [ScriptCode.NOT_OWNER]
    assert engine.renew(QUEUE, [(old.id, old.token)], lease_ms=1_000) == (["a"], [])
    assert_state(r, k, "a", "waiting")

    new = claim_one(engine, "a")
    assert int(new.token) > int(old.token)
    assert new.attempt == 1
    assert engine.settle(QUEUE, [complete(old), complete(new)]) == [ScriptCode.NOT_OWNER, 1]


def test_a_stalled_job_whose_cancel_was_requested_is_cancelled_not_rerun(engine, r, k, events):
    engine.enqueue(QUEUE, [new_job("a")])
    claim_one(engine, "a")
    engine.cancel(QUEUE, "a")
    events.new()

    assert engine.recover(QUEUE, now_ms=later(r)) == (0, 0)

    assert_state(r, k, "a", "cancelled")
    assert events.new() == [("cancelled", "a")]
    assert claim(engine, 5) == []


def test_one_recovery_call_handles_at_most_limit_jobs(engine, r):
    engine.enqueue(QUEUE, [new_job(f"j{i}") for i in range(3)])
    claim(engine, 3)
    now = later(r)

    assert engine.recover(QUEUE, now_ms=now, limit=2) == (2, 0)
    assert engine.recover(QUEUE, now_ms=now, limit=2) == (1, 0)


def test_a_stale_entry_in_the_active_set_is_dropped_without_an_event(engine, r, k, events):
    engine.enqueue(QUEUE, [new_job("done")])
    engine.settle(QUEUE, [complete(claim_one(engine, "done"))])
    r.zadd(k.active, {"ghost": 1, "done": 1})
    events.new()

    assert engine.recover(QUEUE, now_ms=later(r)) == (0, 0)

    assert r.zcard(k.active) == 0
    assert_state(r, k, "done", "completed")
    assert events.new() == []


def test_recovery_with_redis_time_ignores_leases_that_are_still_valid(engine, r, k):
    engine.enqueue(QUEUE, [new_job("a")])
    claim_one(engine, "a", lease_ms=60_000)
    assert engine.recover(QUEUE) == (0, 0)
    assert_state(r, k, "a", "active")


def test_recover_reports_each_job_it_handled(engine, r):
    engine.enqueue(QUEUE, [new_job("j1", correlation_id="req-1"), new_job("j2")])
    engine.fetch(QUEUE, 2, lease_ms=60_000, worker_id="w1")
    result = engine.recover(QUEUE, now_ms=later(r))
    assert result == (2, 0)
    assert sorted(result.jobs) == [("j1", "stalled", "req-1"), ("j2", "stalled", "")]
