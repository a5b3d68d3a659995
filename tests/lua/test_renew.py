"""renew.lua: extend owned leases, report lost and cancel-requested jobs, emit nothing."""

from __future__ import annotations

from tests.lua.conftest import QUEUE, claim, claim_one, complete, new_job, score, server_ms


def test_renew_extends_the_leases_this_worker_owns(engine, r, k, events):
    engine.enqueue(QUEUE, [new_job("a"), new_job("b")])
    a, b = claim(engine, 2, lease_ms=1_000)
    events.new()

    before = server_ms(r)
    lost, cancel = engine.renew(QUEUE, [(a.id, a.token), (b.id, b.token)], lease_ms=90_000)
    after = server_ms(r)

    assert (lost, cancel) == ([], [])
    for job_id in ("a", "b"):
        assert before + 90_000 <= score(r, k.active, job_id) <= after + 90_000
    assert events.new() == []


def test_renew_reports_leases_it_does_not_own_and_leaves_them_alone(engine, r, k):
    engine.enqueue(QUEUE, [new_job("mine"), new_job("stale"), new_job("done")])
    mine, stale, done = claim(engine, 3, lease_ms=1_000)
    engine.settle(QUEUE, [complete(done)])
    stale_deadline = score(r, k.active, "stale")

    lost, cancel = engine.renew(
        QUEUE,
        [(mine.id, mine.token), (stale.id, "0"), (done.id, done.token), ("unknown", "1")],
        lease_ms=90_000,
    )

    assert (lost, cancel) == (["stale", "done", "unknown"], [])
    assert score(r, k.active, "stale") == stale_deadline
    assert r.zscore(k.active, "done") is None
    assert r.zscore(k.active, "unknown") is None


def test_renew_never_puts_a_job_back_into_the_active_set(engine, r, k):
    engine.enqueue(QUEUE, [new_job("a")])
    a = claim_one(engine, "a")
    r.zrem(k.active, "a")  # taken out of active by someone else (ZADD XX must not re-add it)

    engine.renew(QUEUE, [(a.id, a.token)], lease_ms=90_000)

    assert r.zscore(k.active, "a") is None
    r.zadd(k.active, {"a": server_ms(r) + 90_000})  # restore for the teardown consistency check


def test_renew_reports_jobs_whose_cancel_was_requested_and_still_extends_them(engine, r, k, events):
    engine.enqueue(QUEUE, [new_job("keep"), new_job("stop")])
    keep, stop = claim(engine, 2, lease_ms=1_000)
    assert engine.cancel(QUEUE, "stop") == 2
    events.new()

    lost, cancel = engine.renew(QUEUE, [(keep.id, keep.token), (stop.id, stop.token)], lease_ms=90_000)

    assert (lost, cancel) == ([], ["stop"])
    assert score(r, k.active, "stop") > server_ms(r) + 80_000
    assert events.new() == []


def test_renewing_nothing_is_a_no_op(engine):
    assert engine.renew(QUEUE, [], lease_ms=1_000) == ([], [])
