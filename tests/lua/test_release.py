"""release.lua: a stopping worker hands its unfinished jobs back, fenced by token."""

from __future__ import annotations

from django_jobs.engine.codes import ScriptCode
from tests.lua.conftest import QUEUE, assert_state, claim, claim_one, complete, new_job, score


def test_released_jobs_go_back_to_waiting_at_their_original_place(engine, r, k, events):
    engine.enqueue(QUEUE, [new_job("a"), new_job("b"), new_job("c")])
    original = {j: score(r, k.wait, j) for j in "abc"}
    a, b = claim(engine, 2)
    r.delete(k.marker)
    events.new()

    assert engine.release(QUEUE, [(a.id, a.token), (b.id, b.token)]) == 2

    assert r.zrange(k.wait, 0, -1) == ["a", "b", "c"]
    for job_id in "ab":
        assert_state(r, k, job_id, "waiting")
        assert score(r, k.wait, job_id) == original[job_id]
        h = r.hgetall(k.job(job_id))
        assert h["a"] == "0"  # the interrupted run is not an attempt
        assert "tok" not in h and "w" not in h
    assert events.new() == [("released", "a"), ("released", "b")]
    assert r.llen(k.marker) == 1


def test_release_is_fenced_by_the_token(engine, r, k, events):
    engine.enqueue(QUEUE, [new_job("a")])
    a = claim_one(engine, "a")
    events.new()

    assert engine.release(QUEUE, [(a.id, "0"), ("unknown", "1")]) == 0

    assert_state(r, k, "a", "active")
    assert r.hget(k.job("a"), "tok") == a.token
    assert events.new() == []


def test_a_replayed_release_changes_nothing(engine, r, k, events):
    engine.enqueue(QUEUE, [new_job("a")])
    a = claim_one(engine, "a")
    assert engine.release(QUEUE, [(a.id, a.token)]) == 1
    snapshot = r.hgetall(k.job("a"))
    events.new()

    assert engine.release(QUEUE, [(a.id, a.token)]) == 0

    assert r.hgetall(k.job("a")) == snapshot
    assert events.new() == []


def test_a_released_job_cannot_be_settled_with_its_old_token(engine, r, k):
    engine.enqueue(QUEUE, [new_job("a")])
    old = claim_one(engine, "a")
    engine.release(QUEUE, [(old.id, old.token)])

    assert engine.settle(QUEUE, [complete(old)]) == [ScriptCode.NOT_OWNER]
    assert_state(r, k, "a", "waiting")

    new = claim_one(engine, "a")
    assert new.attempt == 1
    assert engine.settle(QUEUE, [complete(old), complete(new)]) == [ScriptCode.NOT_OWNER, 1]


def test_releasing_a_job_whose_cancel_was_requested_cancels_it(engine, r, k, events):
    engine.enqueue(QUEUE, [new_job("a")])
    a = claim_one(engine, "a")
    engine.cancel(QUEUE, "a")
    events.new()

    assert engine.release(QUEUE, [(a.id, a.token)]) == 1

    assert_state(r, k, "a", "cancelled")
    assert events.new() == [("cancelled", "a")]


def test_a_job_claimed_by_name_goes_back_to_its_original_place(engine, r, k):
    # claim.lua writes the score it took a waiting job at to "ws", as fetch does, so a release puts
    # it back in line there even when the hash had no "ws" (as the next release writes it).
    engine.enqueue(QUEUE, [new_job("a"), new_job("b"), new_job("c")])
    original = score(r, k.wait, "b")
    r.hdel(k.job("b"), "ws")
    b = engine.claim(QUEUE, "b", lease_ms=60_000, worker_id="w1")
    assert b is not None and int(r.hget(k.job("b"), "ws")) == original

    assert engine.release(QUEUE, [(b.id, b.token)]) == 1

    assert r.zrange(k.wait, 0, -1) == ["a", "b", "c"] and score(r, k.wait, "b") == original
    assert_state(r, k, "b", "waiting")
