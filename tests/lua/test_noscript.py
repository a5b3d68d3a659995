"""A flushed script cache (restart, failover, SCRIPT FLUSH) never surfaces to callers."""

from __future__ import annotations

from tests.lua.conftest import QUEUE, assert_state, claim, complete, new_job, server_ms


def test_every_engine_method_works_after_script_flush(engine, r, k):
    def after_flush(script: str):
        r.script_flush()
        assert r.script_exists(engine._scripts[script].sha) == [False]
        return engine

    assert after_flush("enqueue").enqueue(QUEUE, [new_job(i) for i in "abcd"]) == [1, 1, 1, 1]
    a, b, c, d = after_flush("fetch").fetch(QUEUE, 4, lease_ms=60_000, worker_id="w").jobs
    assert after_flush("renew").renew(QUEUE, [(a.id, a.token)], lease_ms=60_000) == ([], [])
    assert after_flush("settle").settle(QUEUE, [complete(a)]) == [1]
    assert after_flush("release").release(QUEUE, [(b.id, b.token)]) == 1
    assert after_flush("cancel").cancel(QUEUE, "b") == 1
    assert after_flush("recover").recover(QUEUE, now_ms=server_ms(r) + 3_600_000) == (2, 0)

    assert_state(r, k, "a", "completed")
    assert_state(r, k, "b", "cancelled")
    assert {j.id for j in claim(engine, 5)} == {"c", "d"}
    # Each call reloaded its script (EVALSHA failed with NOSCRIPT, then it was loaded and rerun).
    assert r.script_exists(engine._scripts["fetch"].sha) == [True]


def test_a_pipelined_bulk_call_works_after_script_flush(engine, r, k):
    # enqueue_many of more than one chunk sends its script calls pipelined on one connection:
    # each call that meets NOSCRIPT is sent again (EVAL), in order, and every job is created once.
    r.script_flush()
    ids = [f"j{i}" for i in range(25)]
    assert engine.enqueue_many(QUEUE, [new_job(i) for i in ids], chunk=10) == [1] * 25
    assert r.zrange(k.wait, 0, -1) == ids
    assert engine.enqueue_many(QUEUE, [new_job(i) for i in ids], chunk=10) == [0] * 25  # a replay creates nothing
    assert r.script_exists(engine._scripts["enqueue"].sha) == [True]
