"""fetch.lua: promote due jobs, then claim waiting jobs with fresh leases."""

from __future__ import annotations

import json

from tests.lua.conftest import (
    LONG_LEASE_MS,
    QUEUE,
    assert_state,
    claim,
    claim_one,
    new_job,
    retry,
    score,
    server_ms,
    wait_score,
)


def test_fetch_claims_up_to_count_in_priority_order_and_returns_payloads(engine, r, k, events):
    engine.enqueue(QUEUE, [new_job(f"j{i}", priority=i) for i in range(5)])
    events.new()

    before = server_ms(r)
    result = engine.fetch(QUEUE, 3, lease_ms=5_000, worker_id="w1")
    after = server_ms(r)

    assert [j.id for j in result.jobs] == ["j4", "j3", "j2"]
    assert result.paused is False
    for claimed in result.jobs:
        assert claimed.queue == QUEUE
        assert json.loads(claimed.data) == {"n": "tests.noop", "a": [claimed.id]}
        assert claimed.attempt == 1
        assert_state(r, k, claimed.id, "active")
        assert before + 5_000 <= score(r, k.active, claimed.id) <= after + 5_000
        h = r.hgetall(k.job(claimed.id))
        assert (h["tok"], h["w"], h["a"]) == (claimed.token, "w1", "1")
        assert before <= int(h["la"]) <= after
        assert before <= int(h["st"]) <= after
    assert r.zrange(k.wait, 0, -1) == ["j1", "j0"]
    assert events.new() == [("active", "j4"), ("active", "j3"), ("active", "j2")]


def test_fetch_returns_what_was_enqueued_with_the_job(engine, r):
    engine.enqueue(QUEUE, [new_job("c", correlation_id="req-7", parent_id="parent-1")])
    enqueued_ms = int(r.hget(engine.keys(QUEUE).job("c"), "e"))

    claimed = claim_one(engine, "c")

    assert (claimed.correlation_id, claimed.parent_id, claimed.enqueued_ms) == ("req-7", "parent-1", enqueued_ms)


def test_fetch_claims_only_what_is_waiting(engine):
    engine.enqueue(QUEUE, [new_job("a"), new_job("b")])
    assert [j.id for j in claim(engine, 10)] == ["a", "b"]
    assert claim(engine, 10) == []


def test_every_claim_gets_a_fresh_strictly_increasing_fencing_token(engine, r, k):
    engine.enqueue(QUEUE, [new_job("a"), new_job("b")])
    first = claim(engine, 2)
    engine.settle(QUEUE, [retry(first[0])])
    again = claim_one(engine, "a")

    tokens = [int(c.token) for c in [*first, again]]
    assert tokens == sorted(set(tokens))
    assert r.hget(k.job("a"), "tok") == again.token


def test_each_claim_counts_an_attempt_and_records_the_worker(engine, r, k):
    engine.enqueue(QUEUE, [new_job("a")])
    first = claim_one(engine, "a", worker_id="host-1:11")
    engine.settle(QUEUE, [retry(first)])
    second = claim_one(engine, "a", worker_id='odd "name"/\\')

    assert (first.attempt, second.attempt) == (1, 2)
    assert r.hget(k.job("a"), "a") == "2"
    assert json.loads(r.hget(k.job("a"), "wk")) == ["host-1:11", 'odd "name"/\\']


def test_due_scheduled_jobs_are_promoted_then_claimed(engine, r, k, events):
    engine.enqueue(QUEUE, [new_job("early"), new_job("due", delay_ms=60_000), new_job("later", delay_ms=60_000)])
    r.zadd(k.scheduled, {"due": server_ms(r) - 1})  # its time has come
    events.new()

    claimed = claim(engine, 5)

    assert [c.id for c in claimed] == ["early", "due"]
    # Promotion put "due" behind "early" with a fresh wait score before claiming it.
    assert int(r.hget(k.job("due"), "ws")) == wait_score(0, 2)
    assert_state(r, k, "due", "active")
    assert_state(r, k, "later", "scheduled")
    assert events.new() == [("waiting", "due"), ("active", "early"), ("active", "due")]


def test_a_paused_queue_claims_nothing_until_resumed(engine, r, k, events):
    engine.enqueue(QUEUE, [new_job("p")])
    engine.pause(QUEUE)
    events.new()

    result = engine.fetch(QUEUE, 5, lease_ms=LONG_LEASE_MS, worker_id="w1")

    assert (result.jobs, result.paused) == ([], True)
    assert_state(r, k, "p", "waiting")
    assert events.new() == []

    engine.resume(QUEUE)
    assert [j.id for j in claim(engine)] == ["p"]


def test_next_due_ms_tells_how_long_until_the_next_scheduled_job(engine, r):
    assert engine.fetch(QUEUE, 1, lease_ms=1000, worker_id="w").next_due_ms == -1

    engine.enqueue(QUEUE, [new_job("soon", delay_ms=40_000), new_job("never", delay_ms=900_000)])
    next_due = engine.fetch(QUEUE, 1, lease_ms=1000, worker_id="w").next_due_ms
    assert 39_000 < next_due <= 40_000

    engine.enqueue(QUEUE, [new_job("now-1"), new_job("now-2")])
    assert engine.fetch(QUEUE, 1, lease_ms=1000, worker_id="w").next_due_ms == 0


def test_fetch_wakes_another_worker_only_when_work_remains(engine, r, k):
    engine.enqueue(QUEUE, [new_job(f"j{i}") for i in range(3)])
    r.delete(k.marker)

    claim(engine, 1)
    assert r.llen(k.marker) == 1

    r.delete(k.marker)
    claim(engine, 5)
    assert r.llen(k.marker) == 0


def test_a_job_id_in_wait_without_a_hash_is_dropped_not_claimed(engine, r, k):
    engine.enqueue(QUEUE, [new_job("ok")])
    r.zadd(k.wait, {"ghost": 0})

    assert [j.id for j in claim(engine, 5)] == ["ok"]
    assert r.zscore(k.wait, "ghost") is None and r.zscore(k.active, "ghost") is None


def test_jobs_without_p_or_ws_are_promoted_and_claimed_in_line_and_the_claim_writes_ws(engine, r, k):
    # The next release leaves 'p' (priority 0) and 'ws' (the score is in wait) out of a new job's
    # hash: promotion reads a missing 'p' as 0 (an older promote dropped such a job), and the claim
    # writes the score it popped to "ws" for a release or recovery.
    engine.enqueue(QUEUE, [new_job("first"), new_job("later", delay_ms=60_000), new_job("high", priority=5)])
    for job_id in ("first", "later"):
        r.hdel(k.job(job_id), "p", "ws")
    r.zadd(k.scheduled, {"later": server_ms(r) - 1})

    claimed = claim(engine, 3)

    assert [c.id for c in claimed] == ["high", "first", "later"]
    assert int(r.hget(k.job("later"), "ws")) == wait_score(0, 3)  # promoted behind "first" (seq 1; "high" seq 2)
    assert int(r.hget(k.job("first"), "ws")) == wait_score(0, 1)


def test_a_fetch_that_empties_wait_knows_it_without_counting(engine, r, k):
    # A pop that came back short emptied wait: no ZCARD; a full pop counts what is left (and
    # wakes another worker when jobs remain), and so does a fetch that pops nothing.
    def zcards(fetch) -> tuple[int, object]:
        before = r.info("commandstats").get("cmdstat_zcard", {}).get("calls", 0)
        result = fetch()
        return r.info("commandstats").get("cmdstat_zcard", {}).get("calls", 0) - before, result

    engine.enqueue(QUEUE, [new_job(f"j{i}") for i in range(3)])
    r.delete(k.marker)
    used, got = zcards(lambda: claim(engine, 2))
    assert (used, len(got), r.llen(k.marker)) == (1, 2, 1)
    r.delete(k.marker)
    used, got = zcards(lambda: claim(engine, 5))
    assert (used, len(got), r.llen(k.marker)) == (0, 1, 0)
    used, result = zcards(lambda: engine.fetch(QUEUE, 5, lease_ms=1000, worker_id="w"))
    assert (used, result.jobs, result.next_due_ms) == (0, [], -1)
    used, result = zcards(lambda: engine.fetch(QUEUE, 0, lease_ms=1000, worker_id="w"))
    assert (used, result.jobs) == (1, [])


def test_fetches_trim_the_events_stream_on_one_call_in_32_tokens_and_stay_bounded(engine, r, k, monkeypatch):
    """A fetch's events are written untrimmed (no MAXLEN, no read of the mirror's hold) unless
    the lease tokens it drew cross a multiple of 32 (includes/emit emit_untrimmed_call): without a
    mirror the stream stays within its cap, plus one stream node (MAXLEN ~), plus the untrimmed
    entries between trims; no event is lost to a skipped trim."""
    monkeypatch.setattr(engine, "maxlen", 10)
    engine.enqueue_many(QUEUE, [new_job(f"f{i}") for i in range(640)], chunk=100)
    r.delete(k.events)

    def gets(fetch):
        before = r.info("commandstats").get("cmdstat_get", {}).get("calls", 0)
        result = fetch()
        return r.info("commandstats").get("cmdstat_get", {}).get("calls", 0) - before, result

    lengths, reads = [], []
    for _ in range(320):
        used, got = gets(lambda: claim(engine, 2))
        assert len(got) == 2
        reads.append((used, any(int(c.token) % 32 == 0 for c in got)))
        lengths.append(r.xlen(k.events))
    # The mirror's hold is read exactly by the calls that trim: those whose tokens hold a multiple of 32.
    assert [used for used, _ in reads] == [1 if turn else 0 for _, turn in reads]
    assert sum(used for used, _ in reads) == 20
    node = int(r.config_get("stream-node-max-entries")["stream-node-max-entries"])
    assert max(lengths) <= 10 + node + 16
    assert lengths[-1] < 320  # it was trimmed: the bound is not the count of calls


def test_fetches_never_trim_below_the_mirrors_cap_while_it_holds_the_queue(engine, r, k, monkeypatch):
    """The trims fetches still make read the mirror's hold: nothing it has not read leaves."""
    monkeypatch.setattr(engine, "maxlen", 10)
    engine.enqueue_many(QUEUE, [new_job(f"m{i}") for i in range(200)], chunk=100)
    r.delete(k.events)
    engine.mirror_hold([QUEUE], cap=1_000, hold_ms=60_000)
    for _ in range(100):
        assert len(claim(engine, 2)) == 2
    assert r.xlen(k.events) == 100


def test_a_queue_without_active_events_claims_alike_and_writes_its_other_events(r, k, events):
    """ACTIVE_EVENTS False: the claim (token, lease, hash) is the same, no "active" event is
    written (nor the XADD made), and the outcome's event still is (wait() and QueueEvents' final
    events)."""
    from django.conf import settings

    from tests.lua.conftest import complete, jobs_settings

    queues = {**settings.DJANGO_JOBS["QUEUES"], QUEUE: {"ACTIVE_EVENTS": False}}
    with jobs_settings(QUEUES=queues) as engine:
        engine.enqueue(QUEUE, [new_job("a"), new_job("b")])
        events.new()
        before = r.info("commandstats").get("cmdstat_xadd", {}).get("calls", 0)
        a, b = claim(engine, 2, worker_id="w1")
        assert r.info("commandstats").get("cmdstat_xadd", {}).get("calls", 0) == before
        assert events.new() == []
        assert_state(r, k, "a", "active")
        assert r.hget(k.job("a"), "tok") == str(a.token) and r.zscore(k.active, "b") is not None
        assert engine.settle(QUEUE, [complete(a), complete(b)]) == [1, 1]
        assert events.new() == [("completed", "a"), ("completed", "b")]


def test_a_queue_without_active_events_still_writes_them_while_a_mirror_holds_it(r, k, events):
    """The database mirror records every state: while it holds the queue, fetches write "active"."""
    from django.conf import settings

    from tests.lua.conftest import jobs_settings

    queues = {**settings.DJANGO_JOBS["QUEUES"], QUEUE: {"ACTIVE_EVENTS": False}}
    with jobs_settings(QUEUES=queues) as engine:
        engine.enqueue(QUEUE, [new_job("a"), new_job("b")])
        engine.mirror_hold([QUEUE], cap=1_000, hold_ms=60_000)
        events.new()
        assert [c.id for c in claim(engine, 2)] == ["a", "b"]
        assert events.new() == [("active", "a"), ("active", "b")]
