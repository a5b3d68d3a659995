"""cancel.lua: cancel jobs that have not started; ask running jobs to stop."""

from __future__ import annotations

from tests.lua.conftest import QUEUE, assert_state, claim, claim_one, complete, fail, new_job, score


def test_cancelling_a_waiting_job_moves_it_to_cancelled(engine, r, k, events):
    engine.enqueue(QUEUE, [new_job("a"), new_job("b")])
    events.new()

    assert engine.cancel(QUEUE, "a") == 1

    assert_state(r, k, "a", "cancelled")
    keep_ms = engine.settings.keep(QUEUE, "FAILED")[0] * 1000
    assert score(r, k.cancelled, "a") == int(r.hget(k.job("a"), "f")) + keep_ms
    assert events.new() == [("cancelled", "a")]
    assert [c.id for c in claim(engine, 5)] == ["b"]


def test_cancelling_a_scheduled_job_moves_it_to_cancelled(engine, r, k, events):
    engine.enqueue(QUEUE, [new_job("s", delay_ms=60_000)])
    events.new()

    assert engine.cancel(QUEUE, "s") == 1

    assert_state(r, k, "s", "cancelled")
    assert events.new() == [("cancelled", "s")]


def test_cancelling_a_running_job_flags_it_once(engine, r, k, events):
    engine.enqueue(QUEUE, [new_job("a")])
    claim_one(engine, "a")
    events.new()

    assert engine.cancel(QUEUE, "a") == 2
    assert engine.cancel(QUEUE, "a") == 2

    assert_state(r, k, "a", "active")
    assert r.hget(k.job("a"), "cx") == "1"
    assert events.new() == [("cancel_requested", "a")]


def test_cancelling_a_finished_job_does_nothing(engine, r, k, events):
    engine.enqueue(QUEUE, [new_job("done"), new_job("bad"), new_job("gone")])
    done, bad = claim(engine, 2)
    engine.settle(QUEUE, [complete(done), fail(bad)])
    engine.cancel(QUEUE, "gone")
    snapshot = {j: r.hgetall(k.job(j)) for j in ("done", "bad", "gone")}
    events.new()

    assert [engine.cancel(QUEUE, j) for j in ("done", "bad", "gone")] == [0, 0, 0]

    assert {j: r.hgetall(k.job(j)) for j in snapshot} == snapshot
    assert events.new() == []


def test_cancelling_an_unknown_job_returns_not_found(engine, r, k, events):
    assert engine.cancel(QUEUE, "nope") == -1
    assert not r.exists(k.job("nope"))
    assert events.new() == []
