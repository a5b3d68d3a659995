"""Engine.settle_and_fetch: a settle and the fetch after it, pipelined in one round trip (settle.lua, fetch.lua)."""

from __future__ import annotations

from dataclasses import replace

from django_jobs.engine.codes import ScriptCode
from tests.lua.conftest import (
    LONG_LEASE_MS,
    QUEUE,
    assert_state,
    claim,
    complete,
    new_job,
    retry,
)


def _loaded(engine, r, *names: str) -> None:
    """Load scripts into Redis' cache (a call that meets NOSCRIPT is sent again after the others: see below)."""
    for name in names:
        r.script_load(engine._scripts[name].script)


def test_the_settle_runs_first_and_a_retry_it_writes_is_claimed_by_the_fetch(engine, r, k):
    assert engine.enqueue(QUEUE, [new_job("a"), new_job("b")]) == [1, 1]
    _loaded(engine, r, "settle", "fetch")
    a, b = claim(engine, 2)
    codes, res = engine.settle_and_fetch(QUEUE, [complete(a), retry(b)], 5, lease_ms=LONG_LEASE_MS, worker_id="w1")
    assert codes == [1, 1]
    assert_state(r, k, "a", "completed")
    # b went back to waiting (no delay) before the fetch ran: claimed again, attempt 2, a new token.
    [again] = res.jobs
    assert (again.id, again.attempt) == ("b", 2) and again.token != b.token
    assert_state(r, k, "b", "active")
    assert res.next_due_ms == -1 and not res.paused


def test_a_fenced_outcome_is_refused_and_the_fetch_still_claims(engine, r, k):
    assert engine.enqueue(QUEUE, [new_job("a"), new_job("b")]) == [1, 1]
    [a] = claim(engine, 1)
    stale = replace(complete(a), token="1" + a.token)
    codes, res = engine.settle_and_fetch(QUEUE, [stale], 1, lease_ms=LONG_LEASE_MS, worker_id="w1")
    assert codes == [ScriptCode.NOT_OWNER]
    assert [j.id for j in res.jobs] == ["b"]
    assert_state(r, k, "a", "active")


def test_one_round_trip_and_it_works_after_a_script_flush(engine, r, k):
    assert engine.enqueue(QUEUE, [new_job("a"), new_job("b")]) == [1, 1]
    [a] = claim(engine, 1)
    r.script_flush()  # both calls meet NOSCRIPT: each is sent again as EVAL, the settle still first
    # (Only the settle meeting NOSCRIPT would run it after the fetch: harmless, a retry it writes
    # is claimed by the next fetch instead.)
    codes, res = engine.settle_and_fetch(QUEUE, [complete(a)], 1, lease_ms=LONG_LEASE_MS, worker_id="w1")
    assert codes == [1] and [j.id for j in res.jobs] == ["b"]
    assert_state(r, k, "a", "completed")
    assert_state(r, k, "b", "active")
    assert engine.enqueue(QUEUE, [new_job("c")]) == [1]
    [b] = res.jobs
    before = r.info("commandstats").get("cmdstat_evalsha", {}).get("calls", 0)
    codes, res = engine.settle_and_fetch(QUEUE, [complete(b)], 1, lease_ms=LONG_LEASE_MS, worker_id="w1")
    assert codes == [1] and [j.id for j in res.jobs] == ["c"]
    assert r.info("commandstats")["cmdstat_evalsha"]["calls"] - before == 2  # two script calls, no reload
