"""Engine.settle_and_fetch: a settle and the fetch after it in one script call (settle_and_fetch.lua).

The script runs the bodies settle.lua and fetch.lua run (includes/settle_batch, includes/fetch_batch),
with the outcomes packed in one JSON string: the differential test below checks it writes what
the two scripts called one after the other write.
"""

from __future__ import annotations

from dataclasses import replace

import pytest

from django_jobs.engine.codes import ScriptCode
from django_jobs.engine.queue import Outcome
from django_jobs.engine.streams import expand_entry
from tests.lua.conftest import (
    LONG_LEASE_MS,
    QUEUE,
    assert_state,
    cancelled,
    claim,
    complete,
    error_json,
    fail,
    new_job,
    retry,
    score,
)


def _loaded(engine, r, *names: str) -> None:
    """Load scripts into Redis' cache (a call that meets NOSCRIPT is sent again as EVAL: see below)."""
    for name in names:
        r.script_load(engine._scripts[name].script)


def _evalsha_calls(r) -> int:
    return r.info("commandstats").get("cmdstat_evalsha", {}).get("calls", 0)


def test_the_settle_runs_first_and_a_retry_it_writes_is_claimed_by_the_fetch(engine, r, k):
    assert engine.enqueue(QUEUE, [new_job("a"), new_job("b")]) == [1, 1]
    _loaded(engine, r, "settle_and_fetch")
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
    r.script_flush()  # the call meets NOSCRIPT: sent again as EVAL (the settle still first)
    codes, res = engine.settle_and_fetch(QUEUE, [complete(a)], 1, lease_ms=LONG_LEASE_MS, worker_id="w1")
    assert codes == [1] and [j.id for j in res.jobs] == ["b"]
    assert_state(r, k, "a", "completed")
    assert_state(r, k, "b", "active")
    assert engine.enqueue(QUEUE, [new_job("c")]) == [1]
    [b] = res.jobs
    before = _evalsha_calls(r)
    codes, res = engine.settle_and_fetch(QUEUE, [complete(b)], 1, lease_ms=LONG_LEASE_MS, worker_id="w1")
    assert codes == [1] and [j.id for j in res.jobs] == ["c"]
    assert _evalsha_calls(r) - before == 1  # one script call, no reload


#: Values that must cross the packed string byte for byte: quotes, backslashes, escapes, non-ASCII, NUL.
AWKWARD = ['{"x": "a \\"quoted\\" \\\\ back\\\\slash"}', '"caf\u00e9 \u65e5\u672c \U0001f600"', '"\\u00e9 \\n"', '"nul\x00inside"', ""]

#: Hash fields that hold a time (server time differs between the two runs).
TIMES = {"e", "f", "st", "ws", "lh", "la", "run"}


def _world(engine, queue: str) -> list:
    """Jobs a..k in ``queue``, every one claimed, in one fetch: the batch the outcomes below settle."""
    ids = [f"j{i}" for i in range(11)]
    assert engine.enqueue(queue, [new_job(i) for i in ids] + [new_job("n1"), new_job("n2")]) == [1] * 13
    return engine.fetch(queue, 11, lease_ms=LONG_LEASE_MS, worker_id="w1").jobs


def _outcomes(jobs) -> list[Outcome]:
    """One of each kind, kept and not, with awkward values, a stale token and an unknown job."""
    j = jobs
    return [
        complete(j[0], AWKWARD[0], keep_ms=60_000),
        complete(j[1], AWKWARD[1], keep_ms=60_000),
        complete(j[2], AWKWARD[2]),  # the queue's retention
        complete(j[3], AWKWARD[3], keep_ms=-1),  # kept for no time: deleted
        retry(j[4]),  # back to waiting: the fetch claims it again
        retry(j[5], delay_ms=60_000, error=AWKWARD[4] or error_json("later")),
        fail(j[6], AWKWARD[1], keep_ms=60_000),
        cancelled(j[7], error_json("stop")),
        Outcome(j[8].id, j[8].token, "l", "", 30_000),  # rate limited: back to scheduled, not counted
        replace(complete(j[9]), token="9" + j[9].token),  # a stale token: refused
        Outcome("nobody", "1", "c", "1"),  # unknown job
        Outcome(j[10].id, j[10].token, "?", "1"),  # unknown kind: refused, nothing written
    ]


def _snapshot(r, engine, queue: str) -> dict:
    k = engine.keys(queue)
    jobs = {}
    for key in r.scan_iter(match=k.job_prefix + "*"):
        fields = r.hgetall(key)
        jobs[key[len(k.job_prefix):]] = {f: v for f, v in fields.items() if f not in TIMES}
    sets = {name: sorted(r.zrange(getattr(k, name), 0, -1)) for name in ("wait", "scheduled", "active", "completed", "failed", "cancelled")}
    meta = {f: v for f, v in r.hgetall(k.meta).items() if f not in TIMES}
    events = [(f["e"], f["j"]) for entry_id, entry in r.xrange(k.events) for _, f in expand_entry(entry_id, entry)]
    return {"jobs": jobs, "sets": sets, "meta": meta, "events": events, "marker": r.llen(k.marker)}


@pytest.mark.parametrize("topology", ["server", "cluster"], indirect=True)
def test_one_call_writes_what_settle_then_fetch_write(engine, r):
    apart, together = "default", "high"
    a_jobs, t_jobs = _world(engine, apart), _world(engine, together)
    a_codes = engine.settle(apart, _outcomes(a_jobs))
    a_res = engine.fetch(apart, 5, lease_ms=LONG_LEASE_MS, worker_id="w1")
    t_codes, t_res = engine.settle_and_fetch(together, _outcomes(t_jobs), 5, lease_ms=LONG_LEASE_MS, worker_id="w1")
    assert t_codes == a_codes == [1] * 9 + [ScriptCode.NOT_OWNER, ScriptCode.JOB_NOT_FOUND, ScriptCode.BAD_REQUEST]
    # The retry without delay is claimed again by the fetch after the settle, with the waiting jobs.
    assert [(c.id, c.attempt) for c in t_res.jobs] == [(c.id, c.attempt) for c in a_res.jobs]
    assert {c.id for c in t_res.jobs} == {"j4", "n1", "n2"}
    assert (t_res.next_due_ms >= 0, t_res.paused, t_res.limited) == (a_res.next_due_ms >= 0, a_res.paused, a_res.limited)
    assert _snapshot(r, engine, together) == _snapshot(r, engine, apart)
    # The values crossed the packed string byte for byte.
    k = engine.keys(together)
    assert [r.hget(k.job(f"j{i}"), "r") for i in range(3)] == AWKWARD[:3]
    assert not r.exists(k.job("j3"))


@pytest.mark.parametrize("topology", ["server", "cluster"], indirect=True)
def test_a_replayed_call_settles_nothing_twice_and_claims_anew(engine, r, k, events):
    # A lost reply: the engine sends the same call again. The settle's part reports success without
    # a second outcome; the fetch's part claims other jobs (the first claim is recovered after its lease).
    assert engine.enqueue(QUEUE, [new_job(i) for i in "abcd"]) == [1] * 4
    a, b = claim(engine, 2)
    events.new()
    args = ([complete(a), retry(b, delay_ms=60_000)], 1)
    first_codes, first = engine.settle_and_fetch(QUEUE, *args, lease_ms=LONG_LEASE_MS, worker_id="w1")
    again_codes, again = engine.settle_and_fetch(QUEUE, *args, lease_ms=LONG_LEASE_MS, worker_id="w1")
    assert first_codes == again_codes == [1, 1]
    assert [j.id for j in first.jobs] == ["c"] and [j.id for j in again.jobs] == ["d"]
    assert r.hget(k.job("b"), "a") == "1" and score(r, k.scheduled, "b") > 0
    assert [e for e in events.new() if e[0] in ("completed", "retrying")] == [("completed", "a"), ("retrying", "b")]

