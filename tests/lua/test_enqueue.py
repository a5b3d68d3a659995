"""enqueue.lua: new jobs become waiting or scheduled, once per id."""

from __future__ import annotations

import json

from django_jobs.engine.queue import NewJob
from tests.lua.conftest import (
    QUEUE,
    assert_state,
    claim_one,
    complete,
    new_job,
    score,
    server_ms,
    wait_score,
)


def test_a_new_job_is_written_waiting_with_its_fields_and_one_event(engine, r, k, events):
    before = server_ms(r)
    codes = engine.enqueue(QUEUE, [new_job("a", priority=3, correlation_id="req-1", parent_id="p-9")])
    after = server_ms(r)

    assert codes == [1]
    h = r.hgetall(k.job("a"))
    assert json.loads(h["d"]) == {"n": "tests.noop", "a": ["a"]}
    assert (h["s"], h["p"], h.get("a"), h["cid"], h["par"]) == ("waiting", "3", None, "req-1", "p-9")  # 0 attempts: no "a"
    assert before <= int(h["e"]) <= after
    assert_state(r, k, "a", "waiting")
    assert int(h["ws"]) == score(r, k.wait, "a") == wait_score(3, 1)
    assert events.new() == [("waiting", "a")]


def test_bulk_enqueue_writes_every_job_in_one_call_with_one_event_each(engine, r, k, events):
    ids = [f"b{i}" for i in range(5)]
    assert engine.enqueue(QUEUE, [new_job(i) for i in ids]) == [1] * 5
    assert r.zrange(k.wait, 0, -1) == ids
    for job_id in ids:
        assert_state(r, k, job_id, "waiting")
    assert events.new() == [("waiting", i) for i in ids]


def test_enqueue_many_sends_one_call_per_chunk_in_order_and_a_replay_writes_nothing(engine, r, k, events):
    ids = [f"c{i}" for i in range(7)]
    assert engine.enqueue_many(QUEUE, [new_job(i) for i in ids], chunk=3) == [1] * 7
    assert r.zrange(k.wait, 0, -1) == ids
    assert events.new() == [("waiting", i) for i in ids]
    assert engine.enqueue_many(QUEUE, [new_job(i) for i in ids], chunk=3) == [0] * 7
    assert events.new() == []


def test_higher_priority_is_ahead_and_equal_priorities_stay_fifo(engine, r, k):
    priorities = {"m1": 0, "top1": 100, "bottom": -100, "m2": 0, "top2": 100, "five": 5}
    engine.enqueue(QUEUE, [new_job(i, priority=p) for i, p in list(priorities.items())[:3]])
    for job_id, priority in list(priorities.items())[3:]:
        engine.enqueue(QUEUE, [new_job(job_id, priority=priority)])

    assert r.zrange(k.wait, 0, -1) == ["top1", "top2", "five", "m1", "m2", "bottom"]
    # The score is (100 - priority) * 2^44 + a queue-wide sequence number.
    for seq, (job_id, priority) in enumerate(priorities.items(), start=1):
        assert score(r, k.wait, job_id) == wait_score(priority, seq)
    assert r.hget(k.meta, "seq") == "6"


def test_a_delayed_job_is_scheduled_at_now_plus_delay(engine, r, k, events):
    before = server_ms(r)
    assert engine.enqueue(QUEUE, [new_job("d", delay_ms=30_000)]) == [2]
    after = server_ms(r)

    assert_state(r, k, "d", "scheduled")
    due = score(r, k.scheduled, "d")
    assert before + 30_000 <= due <= after + 30_000
    assert int(r.hget(k.job("d"), "run")) == due
    assert events.new() == [("scheduled", "d")]


def test_the_later_of_run_at_and_delay_wins(engine, r, k):
    now = server_ms(r)
    engine.enqueue(QUEUE, [new_job("run-at-later", run_at_ms=now + 90_000, delay_ms=1_000)])
    engine.enqueue(QUEUE, [new_job("delay-later", run_at_ms=now + 1_000, delay_ms=90_000)])

    assert score(r, k.scheduled, "run-at-later") == now + 90_000
    assert score(r, k.scheduled, "delay-later") >= now + 90_000


def test_a_run_at_in_the_past_makes_the_job_waiting_at_once(engine, r, k):
    assert engine.enqueue(QUEUE, [new_job("late", run_at_ms=server_ms(r) - 5_000)]) == [1]
    assert_state(r, k, "late", "waiting")


def test_an_existing_id_is_not_overwritten_and_returns_zero(engine, r, k, events):
    engine.enqueue(QUEUE, [new_job("dup", priority=1)])
    original = r.hgetall(k.job("dup"))
    events.new()

    replay = new_job("dup", priority=50, delay_ms=10_000, correlation_id="other")
    assert engine.enqueue(QUEUE, [replay]) == [0]

    assert r.hgetall(k.job("dup")) == original
    assert_state(r, k, "dup", "waiting")
    assert r.zcard(k.wait) == 1
    assert events.new() == []


def test_a_repeated_id_within_one_bulk_call_is_written_once(engine, r, k, events):
    assert engine.enqueue(QUEUE, [new_job("x"), new_job("x", priority=9), new_job("y")]) == [1, 0, 1]
    assert r.hget(k.job("x"), "p") == "0"
    assert events.new() == [("waiting", "x"), ("waiting", "y")]


def test_a_finished_job_id_cannot_be_enqueued_again_while_it_is_kept(engine, r, k):
    engine.enqueue(QUEUE, [new_job("done")])
    engine.settle(QUEUE, [complete(claim_one(engine, "done"))])

    assert engine.enqueue(QUEUE, [new_job("done")]) == [0]
    assert_state(r, k, "done", "completed")


def test_the_marker_list_never_holds_more_than_one_token(engine, r, k):
    engine.enqueue(QUEUE, [new_job("m1")])
    engine.enqueue(QUEUE, [new_job("m2"), new_job("m3")])
    engine.enqueue(QUEUE, [new_job("m4", delay_ms=5_000)])
    assert r.lrange(k.marker, 0, -1) == ["1"]

    r.lpop(k.marker)  # a blocked worker took the token
    engine.enqueue(QUEUE, [new_job("m5")])
    assert r.llen(k.marker) == 1


def test_a_scheduled_job_also_wakes_a_worker_to_recompute_its_wait(engine, r, k):
    engine.enqueue(QUEUE, [new_job("s", delay_ms=5_000)])
    assert r.llen(k.marker) == 1


def test_a_replayed_enqueue_leaves_no_marker_token_behind(engine, r, k):
    engine.enqueue(QUEUE, [new_job("once")])
    r.delete(k.marker)
    assert engine.enqueue(QUEUE, [new_job("once")]) == [0]
    assert r.llen(k.marker) == 0


def test_each_reply_carries_the_e_stored_and_a_replay_returns_the_first_calls(engine, r, k):
    import time

    first = engine.enqueue(QUEUE, [new_job("e1"), new_job("e2", delay_ms=60_000)])
    assert first == [1, 2]
    assert [c.enqueued_ms for c in first] == [int(r.hget(k.job(i), "e")) for i in ("e1", "e2")]
    time.sleep(0.005)  # Redis' clock moves on: a replay must still answer with the stored value
    replay = engine.enqueue(QUEUE, [new_job("e1"), new_job("e3")])
    assert replay == [0, 1]
    assert replay[0].enqueued_ms == first[0].enqueued_ms < replay[1].enqueued_ms == int(r.hget(k.job("e3"), "e"))
    many = engine.enqueue_many(QUEUE, [new_job(f"m{i}") for i in range(7)] + [new_job("e2")], chunk=3)
    assert many == [1] * 7 + [0]
    assert [c.enqueued_ms for c in many] == [int(r.hget(k.job(f"m{i}"), "e")) for i in range(7)] + [first[1].enqueued_ms]


def test_packed_jobs_are_written_as_each_job_alone_would_be(engine, r, k):
    """enqueue.lua takes its jobs as one JSON string of columns (a shared value or one per job):
    a batch with columns of both kinds writes the same hash fields as each job enqueued alone."""
    from django_jobs.engine.transitions import _pack_jobs

    now = server_ms(r)
    specs = [
        {"priority": -7, "correlation_id": "c-1", "parent_id": ""},
        {"priority": 5, "correlation_id": "", "parent_id": "p-1"},
        {"priority": 0, "correlation_id": "c-é", "parent_id": "p-\\\"2\"", "delay_ms": 60_000},
        {"priority": 100, "run_at_ms": now + 3_600_000},
    ]
    data = ['{"n":"tests.noop","a":["\\u0000",1.5,"é\\n"]}', '{"n":"x"}', json.dumps({"n": "ü", "k": {"q": '"'}}), "{}"]
    alone = [NewJob(id=f"alone{i}", data=d, **spec) for i, (d, spec) in enumerate(zip(data, specs))]
    batch = [NewJob(id=f"batch{i}", data=d, **spec) for i, (d, spec) in enumerate(zip(data, specs))]
    shared = [NewJob(id=f"shared{i}", data=d, priority=3, correlation_id="c", parent_id="p") for i, d in enumerate(data)]
    packed = json.loads(_pack_jobs(batch))
    assert packed["p"] == [-7, 5, 0, 100] and packed["i"] == [j.id for j in batch] and packed["d"] == data
    assert (json.loads(_pack_jobs(shared))["p"], json.loads(_pack_jobs(shared))["c"]) == (3, "c")
    for job in alone:
        engine.enqueue(QUEUE, [job])
    assert engine.enqueue(QUEUE, batch) == [1, 1, 2, 2]
    assert engine.enqueue_many(QUEUE, shared, chunk=3) == [1, 1, 1, 1]

    def fields(job_id: str) -> dict[str, str]:
        h = r.hgetall(k.job(job_id))
        return {f: v for f, v in h.items() if f not in ("e", "ws", "run")}

    for i, spec in enumerate(specs):
        assert fields(f"batch{i}") == fields(f"alone{i}"), spec
        assert r.hget(k.job(f"batch{i}"), "d") == data[i]
        assert r.hexists(k.job(f"batch{i}"), "run") == (i >= 2)
    assert r.hget(k.job("batch3"), "run") == str(now + 3_600_000)
    assert abs(int(r.hget(k.job("batch2"), "run")) - (int(r.hget(k.job("batch2"), "e")) + 60_000)) == 0
    for i in range(4):
        h = r.hgetall(k.job(f"shared{i}"))
        assert (h["p"], h["cid"], h["par"], h["d"]) == ("3", "c", "p", data[i])


def test_single_enqueues_trim_the_events_stream_on_one_call_in_32_and_stay_bounded(engine, r, k, monkeypatch):
    """A lone waiting job's event is written untrimmed but on every 32nd sequence number
    (includes/emit emit_untrimmed): without a mirror the stream stays within its cap, plus one
    stream node (MAXLEN ~), plus the 31 untrimmed entries between trims."""
    monkeypatch.setattr(engine, "maxlen", 10)
    lengths = []
    for i in range(600):
        engine.enqueue("default", [new_job(f"t{i}")])
        lengths.append(r.xlen(k.events))
    node = int(r.config_get("stream-node-max-entries")["stream-node-max-entries"])
    assert max(lengths) <= 10 + node + 32
    assert lengths[-1] < 600  # it was trimmed: the bound is not the count of calls


def test_single_enqueues_never_trim_below_the_mirrors_cap_while_it_holds_the_queue(engine, r, k, monkeypatch):
    """The trims single enqueues still make read the mirror's hold: nothing it has not read leaves."""
    monkeypatch.setattr(engine, "maxlen", 10)
    engine.mirror_hold(["default"], cap=1_000, hold_ms=60_000)
    for i in range(600):
        engine.enqueue("default", [new_job(f"m{i}")])
    assert r.xlen(k.events) == 600


def test_lean_job_hash_leaves_p_at_0_and_ws_out_and_the_job_keeps_its_place_in_line(r, k, events):
    """LEAN_JOB_HASH: a waiting job's hash has no 'p' at 0 and no 'ws' (one job and packed alike);
    a job at another priority keeps 'p'; a scheduled job at 0 has no 'p'. The jobs still run in
    priority and FIFO order, a claim writes 'ws', and a released job goes back to its place."""
    from tests.lua.conftest import claim, jobs_settings

    with jobs_settings(LEAN_JOB_HASH=True) as engine:
        assert engine.enqueue(QUEUE, [new_job("one")]) == [1]
        assert engine.enqueue(QUEUE, [new_job("b1"), new_job("b2"), new_job("high", priority=5)]) == [1, 1, 1]
        assert engine.enqueue_many(QUEUE, [new_job(f"m{i}") for i in range(3)], chunk=2) == [1, 1, 1]
        assert engine.enqueue(QUEUE, [new_job("later", delay_ms=60_000)]) == [2]
        for job_id in ("one", "b1", "b2", "m0", "m1", "m2"):
            assert sorted(r.hgetall(k.job(job_id))) == ["d", "e", "s"], job_id
        h = r.hgetall(k.job("high"))
        assert (sorted(h), h["p"]) == (["d", "e", "p", "s"], "5")
        assert sorted(r.hgetall(k.job("later"))) == ["d", "e", "run", "s"]
        assert engine.enqueue(QUEUE, [new_job("one")]) == [0]  # a replay by id still writes nothing

        first = claim(engine, 2)
        assert [c.id for c in first] == ["high", "one"]
        assert int(r.hget(k.job("one"), "ws")) == wait_score(0, 1)
        assert engine.release(QUEUE, [(first[1].id, first[1].token)]) == 1
        assert_state(r, k, "one", "waiting")
        assert [c.id for c in claim(engine, 10)] == ["one", "b1", "b2", "m0", "m1", "m2"]
    assert events.new()[:3] == [("waiting", "one"), ("waiting", "b1"), ("waiting", "b2")]


def test_without_lean_job_hash_a_new_job_keeps_p_at_0_and_ws_for_the_previous_releases_workers(engine, r, k):
    """The default (LEAN_JOB_HASH False): 'p' at 0 and 'ws' are written, one job and packed alike,
    since release 0.1.0's workers promote only a job with 'p' and do not write 'ws' at the claim."""
    from django_jobs.conf import get_settings

    assert get_settings().lean_job_hash is False
    engine.enqueue(QUEUE, [new_job("one")])
    engine.enqueue(QUEUE, [new_job("b1"), new_job("b2")])
    engine.enqueue(QUEUE, [new_job("later", delay_ms=60_000)])
    for job_id in ("one", "b1", "b2"):
        h = r.hgetall(k.job(job_id))
        assert (sorted(h), h["p"], int(h["ws"])) == (["d", "e", "p", "s", "ws"], "0", score(r, k.wait, job_id))
    assert r.hget(k.job("later"), "p") == "0"
