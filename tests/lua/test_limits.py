"""fetch under queue limits (includes/queue_limits.lua), settle's rate-limited outcome and the
wake-up when a concurrency slot frees (includes/slot_freed.lua), against the real Redis."""

from __future__ import annotations

import time

import pytest

from django_jobs.engine.queue import NewJob, Outcome
from django_jobs.exceptions import InvalidJob
from django_jobs.limits import (
    QueueLimits,
    Rate,
    parse_rate,
    queue_limits,
    reset_queue_limits,
    set_queue_limits,
)
from tests.lua.conftest import (
    QUEUE,
    assert_state,
    claim,
    complete,
    fail,
    jobs_settings,
    new_job,
    server_ms,
)


def enqueue(engine, n: int) -> list[str]:
    ids = [f"j{i}" for i in range(n)]
    engine.enqueue(QUEUE, [new_job(i) for i in ids])
    return ids


def test_a_rate_limit_lets_at_most_n_jobs_start_per_window_and_says_how_long_to_wait(r, k):
    with jobs_settings(QUEUES={"default": {"RATE_LIMIT": "3/s"}}) as engine:
        enqueue(engine, 10)
        before = server_ms(r)
        first = engine.fetch(QUEUE, 10, lease_ms=60_000, worker_id="w1")
        started_by = server_ms(r)
        assert len(first.jobs) == 3
        time.sleep(0.05)
        held_after = server_ms(r)
        held = engine.fetch(QUEUE, 10, lease_ms=60_000, worker_id="w2")
        after = server_ms(r)
        assert held.jobs == []
        # The hint is the time until the first start leaves the one-second window: the starts
        # were recorded between `before` and `started_by`, the held fetch ran between `held_after`
        # and `after` (Redis' clock in ms; 1 ms for the rounding).
        assert 1000 - (after - before) - 1 <= held.next_due_ms <= 1000 - (held_after - started_by) + 1
        assert r.zcard(k.wait) == 7 and r.zcard(k.rate) == 3
        # Held jobs were not touched: no attempt counted.
        assert (r.hget(k.job("j5"), "a") or "0") == "0"
        r.delete(k.rate)  # the window passed (without sleeping)
        second = engine.fetch(QUEUE, 10, lease_ms=60_000, worker_id="w1").jobs
        assert len(second) == 3
        engine.set_queue_limits(QUEUE, rate=None)  # lifted at run time: the rest start at once
        rest = engine.fetch(QUEUE, 10, lease_ms=60_000, worker_id="w1").jobs
        assert len(rest) == 4
        assert engine.settle(QUEUE, [complete(c) for c in [*first.jobs, *second, *rest]]) == [1] * 10


def test_a_concurrency_limit_holds_and_a_settle_wakes_a_worker_when_a_slot_frees(r, k):
    with jobs_settings(QUEUES={"default": {"CONCURRENCY": 2}}) as engine:
        enqueue(engine, 5)
        got = claim(engine, 5)
        assert len(got) == 2
        r.delete(k.marker)
        held = engine.fetch(QUEUE, 5, lease_ms=60_000, worker_id="w2")
        assert held.jobs == [] and held.next_due_ms == 1000  # a safety poll; the settle wakes sooner
        assert r.hget(k.meta, "cw") == "1" and r.llen(k.marker) == 0
        assert engine.settle(QUEUE, [complete(got[0])]) == [1]
        assert r.llen(k.marker) == 1 and r.hget(k.meta, "cw") is None
        more = claim(engine, 5)
        assert len(more) == 1
        for c in [got[1], *more]:
            engine.settle(QUEUE, [complete(c)])
        rest = claim(engine, 5)
        assert len(rest) == 2
        engine.settle(QUEUE, [complete(c) for c in rest])


def test_a_concurrency_limited_queue_claims_only_what_the_worker_can_start_now(engine, r, k):
    enqueue(engine, 6)
    # No limit: the worker may claim ahead of its free threads (start_now is ignored).
    plain = engine.fetch(QUEUE, 2, lease_ms=60_000, worker_id="w1", start_now=0)
    assert len(plain.jobs) == 2 and not plain.limited
    engine.settle(QUEUE, [complete(c) for c in plain.jobs])
    engine.set_queue_limits(QUEUE, concurrency=3)
    cut = engine.fetch(QUEUE, 4, lease_ms=60_000, worker_id="w1", start_now=1)
    assert len(cut.jobs) == 1 and cut.limited and not cut.paused
    r.delete(k.marker)
    # No free thread here, the limit has room: nothing claimed and another worker is woken
    # (this one waits for a thread of its own: worker/process.py _thread_bound).
    none = engine.fetch(QUEUE, 4, lease_ms=60_000, worker_id="w1", start_now=0)
    assert none.jobs == [] and none.limited and r.llen(k.marker) == 1
    # Enough free threads: the limit alone decides (2 more slots of 3).
    more = engine.fetch(QUEUE, 4, lease_ms=60_000, worker_id="w2", start_now=4)
    assert len(more.jobs) == 2 and not more.limited
    engine.settle(QUEUE, [complete(c) for c in [*cut.jobs, *more.jobs]])
    engine.set_queue_limits(QUEUE, concurrency=0)  # lifted at run time: claim-ahead again
    rest = engine.fetch(QUEUE, 4, lease_ms=60_000, worker_id="w1", start_now=0)
    assert len(rest.jobs) == 1 and not rest.limited
    engine.settle(QUEUE, [complete(c) for c in rest.jobs])


def test_without_limits_fetch_writes_no_limit_keys(engine, r, k):
    enqueue(engine, 3)
    got = claim(engine, 3)
    assert len(got) == 3
    assert not r.exists(k.rate) and r.hget(k.meta, "cw") is None
    engine.settle(QUEUE, [complete(c) for c in got])


def test_run_time_overrides_win_over_the_settings_until_reset(r, k):
    with jobs_settings(QUEUES={"default": {"RATE_LIMIT": "100/m", "CONCURRENCY": 5}}):
        assert queue_limits(QUEUE) == QueueLimits(rate="100/m", concurrency=5, overridden=False)
        assert set_queue_limits(QUEUE, concurrency=1) == QueueLimits(rate="100/m", concurrency=1, overridden=True)
        assert set_queue_limits(QUEUE, rate="2/s") == QueueLimits(rate="2/s", concurrency=1, overridden=True)
        assert set_queue_limits(QUEUE, rate=None, concurrency=None) == QueueLimits(None, None, overridden=True)
        assert reset_queue_limits(QUEUE) == QueueLimits(rate="100/m", concurrency=5, overridden=False)


def test_bad_limits_are_refused_with_a_clear_message(engine):
    with pytest.raises(InvalidJob, match="'ten/s' is not valid"):
        set_queue_limits(QUEUE, rate="ten/s")
    with pytest.raises(InvalidJob, match="at least 1"):
        set_queue_limits(QUEUE, concurrency=0)
    with pytest.raises(InvalidJob, match="'nope' is not configured"):
        set_queue_limits("nope", concurrency=1)
    assert parse_rate("5/10s") == Rate(5, 10_000) and str(Rate(5, 10_000)) == "5/10s"
    assert str(parse_rate(" 100 / h ")) == "100/h"


def test_bad_limit_settings_are_refused():
    from django_jobs.conf import SettingError, parse_queues

    with pytest.raises(SettingError, match="RATE_LIMIT"):
        parse_queues({"emails": {"RATE_LIMIT": "100 per minute"}})
    with pytest.raises(SettingError, match="CONCURRENCY"):
        parse_queues({"emails": {"CONCURRENCY": -1}})
    assert parse_queues({"emails": {"RATE_LIMIT": "100/m", "CONCURRENCY": 5}})["emails"] == {
        "RATE_LIMIT": Rate(100, 60_000), "CONCURRENCY": 5,
    }


def test_a_rate_limited_outcome_reschedules_without_counting_the_attempt(engine, r, k, events):
    enqueue(engine, 2)
    c = claim(engine, 1)[0]
    events.new()
    outcome = Outcome(c.id, c.token, "l", "", 5_000)
    assert engine.settle(QUEUE, [outcome]) == [1]
    assert engine.settle(QUEUE, [outcome]) == [1]  # a replay
    assert_state(r, k, c.id, "scheduled")
    assert (r.hget(k.job(c.id), "a") or "0") == "0" and r.hget(k.job(c.id), "err") is None
    assert events.new() == [("rate_limited", c.id)]
    # Only this job waits: the other one still starts.
    assert [j.id for j in claim(engine, 1)] == ["j1"]


def test_a_queue_wide_rate_limited_outcome_holds_the_whole_queue(engine, r, k):
    enqueue(engine, 2)
    c = claim(engine, 1)[0]
    assert engine.settle(QUEUE, [Outcome(c.id, c.token, "l", "queue", 5_000)]) == [1]
    held = engine.fetch(QUEUE, 5, lease_ms=60_000, worker_id="w1")
    assert held.jobs == [] and 4_000 < held.next_due_ms <= 5_000
    r.hset(k.meta, "hold", server_ms(r) - 1)  # the hold ran out
    assert [j.id for j in claim(engine, 5)] == ["j1"]


def test_enqueue_guarded_creates_deduplicates_replaces_and_is_replay_safe(engine, r, k, events):
    from django_jobs.engine.queue import Guard as Unique

    keep = Unique("job:a")
    assert engine.enqueue_guarded(QUEUE, [(new_job("u1"), keep)]) == [(1, "u1")]
    assert engine.enqueue_guarded(QUEUE, [(new_job("u1"), keep)]) == [(1, "u1")]  # a replay
    assert engine.enqueue_guarded(QUEUE, [(new_job("u2"), keep), (new_job("u3"), Unique("job:b"))]) == [(3, "u1"), (1, "u3")]
    assert not r.exists(k.job("u2"))
    assert r.get(k.unique_prefix + "job:a") == "u1" and r.hget(k.job("u1"), "uk") == k.unique_prefix + "job:a"
    replace = Unique("job:a", mode="r")
    assert engine.enqueue_guarded(QUEUE, [(NewJob(id="u4", data='{"n":"x","a":[4]}', delay_ms=60_000), replace)]) == [(4, "u1")]
    assert_state(r, k, "u1", "scheduled")
    assert r.hget(k.job("u1"), "d") == '{"n":"x","a":[4]}'
    assert [e for e, _ in events.new()] == ["waiting", "deduplicated", "waiting", "replaced"]
    assert engine.cancel(QUEUE, "u1") == 1
    assert not r.exists(k.unique_prefix + "job:a")  # released by the cancel
    c = claim(engine, 1)[0]
    assert engine.settle(QUEUE, [complete(c)]) == [1]
    assert not r.exists(k.unique_prefix + "job:b")  # released by the settle


def test_a_retried_unique_job_takes_its_free_key_back_and_releases_it_when_done(engine, r, k):
    from django_jobs.engine.queue import Guard

    lock = k.unique_prefix + "job:r"
    assert engine.enqueue_guarded(QUEUE, [(new_job("r1"), Guard("job:r", until="f"))]) == [(1, "r1")]
    assert engine.settle(QUEUE, [fail(claim(engine, 1)[0])]) == [1]
    assert not r.exists(lock)  # released by the failure
    assert engine.retry(QUEUE, ["r1"]) == [1]
    assert r.get(lock) == "r1"
    assert engine.retry(QUEUE, ["r1"]) == [0]  # a replay finds it waiting; the key stays its own
    assert r.get(lock) == "r1"
    # A new enqueue with the key is deduplicated against the retried job, not a second job.
    assert engine.enqueue_guarded(QUEUE, [(new_job("r2"), Guard("job:r", until="f"))]) == [(3, "r1")]
    assert not r.exists(k.job("r2"))
    assert engine.settle(QUEUE, [complete(claim(engine, 1)[0])]) == [1]
    assert not r.exists(lock)  # released again when the retried job finished: no leak
    # A cancelled unique job takes its key back too.
    assert engine.enqueue_guarded(QUEUE, [(new_job("r3"), Guard("job:r"))]) == [(1, "r3")]
    assert engine.cancel(QUEUE, "r3") == 1
    assert engine.retry_many(QUEUE, ["r3"]) == [1]
    assert r.get(lock) == "r3"
    assert engine.cancel(QUEUE, "r3") == 1
    assert not r.exists(lock)


def test_a_unique_job_is_not_retried_while_another_job_guards_its_key(engine, r, k, events):
    from django_jobs.engine.queue import Guard

    lock = k.unique_prefix + "job:h"
    assert engine.enqueue_guarded(QUEUE, [(new_job("h1"), Guard("job:h"))]) == [(1, "h1")]
    assert engine.settle(QUEUE, [fail(claim(engine, 1)[0])]) == [1]
    assert engine.enqueue_guarded(QUEUE, [(new_job("h2"), Guard("job:h"))]) == [(1, "h2")]
    events.new()
    assert engine.retry(QUEUE, ["h1", "nope"]) == [2, -1]  # h2 guards the key: h1 stays failed
    assert_state(r, k, "h1", "failed")
    assert r.get(lock) == "h2" and events.new() == []
    # Once h2 no longer guards the key (it started, guarding only until then), h1 retries and
    # takes the key; h2 finishing does not drop h1's lock.
    h2 = claim(engine, 1)[0]
    assert engine.retry(QUEUE, ["h1"]) == [1]
    assert r.get(lock) == "h1"
    assert engine.settle(QUEUE, [complete(h2)]) == [1]
    assert r.get(lock) == "h1"
    assert engine.settle(QUEUE, [complete(claim(engine, 1)[0])]) == [1]
    assert not r.exists(lock)


def flow_job(engine, job_id: str, key: str, **limits):
    from django_jobs.engine.queue import Guard

    return engine.enqueue_guarded(QUEUE, [(new_job(job_id), Guard(limit_key=key, **limits))])


def test_jobs_over_their_keys_concurrency_are_parked_and_a_freed_slot_brings_the_next_back(engine, r, k, events):
    for job_id in ("a1", "a2", "a3"):
        flow_job(engine, job_id, "cust:a", limit_concurrency=1)
    flow_job(engine, "b1", "cust:b", limit_concurrency=1)
    a2_score = r.zscore(k.wait, "a2")
    events.new()
    got = claim(engine, 4)
    assert [c.id for c in got] == ["a1", "b1"]  # the other key is not held up
    assert_state(r, k, "a2", "scheduled")
    assert_state(r, k, "a3", "scheduled")
    assert (r.hget(k.job("a2"), "a") or "0") == "0"  # parking is not an attempt
    assert ("limited", "a2") in events.new()
    base = k.limit_prefix + "cust:a:"
    assert r.zrange(base + "a", 0, -1) == ["a1"] and r.zrange(base + "p", 0, -1) == ["a2", "a3"]
    r.delete(k.marker)
    assert engine.settle(QUEUE, [complete(got[0])]) == [1]
    # The freed slot moved the key's next job back to its old place in line, and woke a worker.
    assert_state(r, k, "a2", "waiting")
    assert r.zscore(k.wait, "a2") == a2_score and r.llen(k.marker) == 1
    [a2] = claim(engine, 4)
    assert a2.id == "a2"
    engine.settle(QUEUE, [complete(a2), complete(got[1])])
    [a3] = claim(engine, 4)
    assert a3.id == "a3"
    engine.settle(QUEUE, [complete(a3)])
    assert not r.exists(base + "a") and not r.exists(base + "p")


def test_a_slot_held_by_a_job_that_left_active_without_a_release_is_not_leaked(engine, r, k):
    flow_job(engine, "a1", "cust:a", limit_concurrency=1)
    flow_job(engine, "a2", "cust:a", limit_concurrency=1)
    claim(engine, 1)
    base = k.limit_prefix + "cust:a:"
    r.zrem(k.active, "a1")  # as if its release was lost: the key's count must not trust it
    r.zadd(k.completed, {"a1": server_ms(r) + 60_000})
    r.hset(k.job("a1"), "s", "completed")
    # A slot entry scored this very ms counts as claimed by the same fetch (includes/key_limits):
    # the next fetch must come at least a ms later, as any real one does.
    time.sleep(0.002)
    assert next(c.id for c in claim(engine, 1)) == "a2"
    assert r.zrange(base + "a", 0, -1) == ["a2"]
    a2 = _claimed_of(r, k, "a2")
    assert engine.settle(QUEUE, [complete(a2)]) == [1]


def _claimed_of(r, k, job_id):
    from django_jobs.engine.queue import Claimed

    return Claimed(QUEUE, job_id, r.hget(k.job(job_id), "tok"), "", 1, 0, "", "")


def test_jobs_over_their_keys_rate_are_parked_until_the_window_frees(engine, r, k):
    for job_id in ("c1", "c2", "c3"):
        flow_job(engine, job_id, "api:x", limit_rate=2, limit_period_ms=1000)
    before = server_ms(r)
    got = claim(engine, 3)
    assert [c.id for c in got] == ["c1", "c2"]
    assert_state(r, k, "c3", "scheduled")
    assert 0 < int(r.hget(k.job("c3"), "run")) - before <= 1000 + 50
    engine.settle(QUEUE, [complete(c) for c in got])
    engine.cancel(QUEUE, "c3")


def test_a_key_wide_rate_limited_outcome_holds_only_that_keys_jobs(engine, r, k):
    flow_job(engine, "k1", "api:x", limit_concurrency=5)
    flow_job(engine, "k2", "api:x", limit_concurrency=5)
    flow_job(engine, "o1", "api:y", limit_concurrency=5)
    [k1] = claim(engine, 1)
    assert engine.settle(QUEUE, [Outcome(k1.id, k1.token, "l", "key", 5_000)]) == [1]
    assert 0 < r.pttl(k.limit_prefix + "api:x:h") <= 5_000
    got = claim(engine, 5)
    assert [c.id for c in got] == ["o1"]  # api:y runs; api:x's other job is parked
    assert_state(r, k, "k2", "scheduled")
    assert 4_000 < int(r.hget(k.job("k2"), "run")) - server_ms(r) <= 5_000
    engine.settle(QUEUE, [complete(c) for c in got])
    engine.cancel(QUEUE, "k1")
    engine.cancel(QUEUE, "k2")


def test_a_deep_backlog_of_one_key_is_parked_with_spread_fallback_times(engine, r, k):
    for i in range(6):
        flow_job(engine, f"d{i}", "cust:d", limit_concurrency=1)
    got = claim(engine, 6)
    assert [c.id for c in got] == ["d0"]
    runs = [int(r.hget(k.job(f"d{i}"), "run")) for i in range(1, 6)]
    assert runs == sorted(runs) and runs[-1] - runs[0] >= 4 * 1000 - 50
    engine.settle(QUEUE, [complete(got[0])])
    for i in range(1, 6):
        engine.cancel(QUEUE, f"d{i}")


def test_debounce_with_a_window_never_makes_a_second_job_inside_the_window(engine, r, k):
    from django_jobs.engine.queue import Guard

    debounce = Guard("job:w", mode="r", window_ms=60_000)
    assert engine.enqueue_guarded(QUEUE, [(new_job("w1"), debounce)]) == [(1, "w1")]
    assert engine.enqueue_guarded(QUEUE, [(new_job("w2"), debounce)]) == [(4, "w1")]  # replaced while waiting
    [c] = claim(engine, 1)
    assert engine.enqueue_guarded(QUEUE, [(new_job("w3"), debounce)]) == [(3, "w1")]  # running: the window holds
    engine.settle(QUEUE, [complete(c)])
    assert engine.enqueue_guarded(QUEUE, [(new_job("w4"), debounce)]) == [(3, "w1")]  # finished, same window
    r.delete(k.unique_prefix + "job:w")  # the window passed
    assert engine.enqueue_guarded(QUEUE, [(new_job("w5"), debounce)]) == [(1, "w5")]
    engine.cancel(QUEUE, "w5")


def test_enqueue_guarded_replies_carry_the_e_of_the_job_each_id_names(engine, r, k):
    from django_jobs.engine.queue import Guard

    keep, debounce = Guard("job:k"), Guard("job:d", mode="r")
    created = engine.enqueue_guarded(QUEUE, [(new_job("k1"), keep), (new_job("d1"), debounce)])
    assert created == [(1, "k1"), (1, "d1")]
    stored = {i: int(r.hget(k.job(i), "e")) for i in ("k1", "d1")}
    assert [code.enqueued_ms for code, _ in created] == [stored["k1"], stored["d1"]]
    time.sleep(0.005)  # Redis' clock moves on: every reply below must still be the stored value
    again = engine.enqueue_guarded(QUEUE, [(new_job("k1"), keep), (new_job("k2"), keep), (new_job("d2"), debounce),
                                           (new_job("n1"), Guard("job:n"))])
    assert again == [(1, "k1"), (3, "k1"), (4, "d1"), (1, "n1")]  # a replay, kept, replaced, created
    assert [code.enqueued_ms for code, _ in again] == [stored["k1"], stored["k1"], stored["d1"], int(r.hget(k.job("n1"), "e"))]
    assert again[3][0].enqueued_ms > stored["k1"]
