"""settle.lua: fenced, replay-safe outcomes of active jobs, and retention of finished jobs."""

from __future__ import annotations

import json

from django_jobs.engine.codes import ScriptCode
from django_jobs.engine.queue import Outcome
from tests.lua.conftest import (
    QUEUE,
    assert_state,
    cancelled,
    claim,
    claim_one,
    complete,
    error_json,
    fail,
    jobs_settings,
    new_job,
    retry,
    score,
    server_ms,
    wait_score,
)
from tests.redis_server import wait_until

DAY_MS = 24 * 3600 * 1000


def enqueue_and_claim(engine, *ids: str, **claim_kwargs):
    engine.enqueue(QUEUE, [new_job(i) for i in ids])
    claimed = claim(engine, len(ids), **claim_kwargs)
    assert [c.id for c in claimed] == list(ids)
    return claimed


# -- each outcome -------------------------------------------------------------------------


def test_complete_moves_the_job_to_completed_with_its_result(engine, r, k, events):
    (a,) = enqueue_and_claim(engine, "a")
    events.new()

    assert engine.settle(QUEUE, [complete(a, '{"ok": true}')]) == [1]

    assert_state(r, k, "a", "completed")
    h = r.hgetall(k.job("a"))
    assert json.loads(h["r"]) == {"ok": True}
    # Finished jobs are scored by the time they may be deleted: finish + retention.
    keep_ms = engine.settings.keep(QUEUE, "COMPLETED")[0] * 1000
    assert score(r, k.completed, "a") == int(h["f"]) + keep_ms
    assert events.new() == [("completed", "a")]


def test_retry_without_delay_puts_the_job_at_the_back_of_its_priority(engine, r, k, events):
    engine.enqueue(QUEUE, [new_job("a"), new_job("b"), new_job("urgent", priority=10)])
    urgent, a = claim(engine, 2)
    engine.settle(QUEUE, [complete(urgent)])
    r.delete(k.marker)
    events.new()

    assert engine.settle(QUEUE, [retry(a, 0, error_json("boom"))]) == [1]

    assert_state(r, k, "a", "waiting")
    assert r.zrange(k.wait, 0, -1) == ["b", "a"]
    assert score(r, k.wait, "a") == int(r.hget(k.job("a"), "ws")) == wait_score(0, 4)
    assert [e["traceback"] for e in json.loads(r.hget(k.job("a"), "err"))] == ["boom"]
    assert [(f["e"], f["j"], f["delay"]) for f in events.new_fields()] == [("retrying", "a", "0")]
    assert r.llen(k.marker) == 1


def test_retry_with_a_delay_schedules_the_job(engine, r, k, events):
    (a,) = enqueue_and_claim(engine, "a")
    events.new()

    before = server_ms(r)
    assert engine.settle(QUEUE, [retry(a, 7_000)]) == [1]
    after = server_ms(r)

    assert_state(r, k, "a", "scheduled")
    due = score(r, k.scheduled, "a")
    assert before + 7_000 <= due <= after + 7_000
    assert int(r.hget(k.job("a"), "run")) == due
    assert [(f["e"], f["j"], f["delay"]) for f in events.new_fields()] == [("retrying", "a", "7000")]


def test_fail_moves_the_job_to_failed_and_records_the_error(engine, r, k, events):
    (a,) = enqueue_and_claim(engine, "a")
    events.new()

    assert engine.settle(QUEUE, [fail(a, error_json("bad"))]) == [1]

    assert_state(r, k, "a", "failed")
    assert json.loads(r.hget(k.job("a"), "err")) == [json.loads(error_json("bad"))]
    keep_ms = engine.settings.keep(QUEUE, "FAILED")[0] * 1000
    assert score(r, k.failed, "a") == int(r.hget(k.job("a"), "f")) + keep_ms
    assert events.new() == [("failed", "a")]


def test_a_cancelled_outcome_moves_the_job_to_cancelled(engine, r, k, events):
    a, b = enqueue_and_claim(engine, "a", "b")
    events.new()

    assert engine.settle(QUEUE, [cancelled(a, error_json("Cancel")), cancelled(b)]) == [1, 1]

    assert_state(r, k, "a", "cancelled")
    assert_state(r, k, "b", "cancelled")
    assert len(json.loads(r.hget(k.job("a"), "err"))) == 1
    assert r.hget(k.job("b"), "err") is None
    assert events.new() == [("cancelled", "a"), ("cancelled", "b")]


def test_errors_accumulate_as_a_json_list_across_attempts(engine, r, k):
    (a,) = enqueue_and_claim(engine, "a")
    engine.settle(QUEUE, [retry(a, 0, error_json("first"))])
    engine.settle(QUEUE, [retry(claim_one(engine, "a"), 0, error_json("second"))])
    engine.settle(QUEUE, [fail(claim_one(engine, "a"), error_json("third"))])

    errors = json.loads(r.hget(k.job("a"), "err"))
    assert [e["traceback"] for e in errors] == ["first", "second", "third"]


def test_retrying_a_job_whose_cancel_was_requested_cancels_it(engine, r, k, events):
    (a,) = enqueue_and_claim(engine, "a")
    assert engine.cancel(QUEUE, "a") == 2
    events.new()

    assert engine.settle(QUEUE, [retry(a)]) == [1]

    assert_state(r, k, "a", "cancelled")
    assert events.new() == [("cancelled", "a")]
    assert engine.settle(QUEUE, [retry(a)]) == [1]  # replay
    assert events.new() == []


# -- refusals ------------------------------------------------------------------------------


def test_a_stale_token_is_refused_as_not_owner_and_changes_nothing(engine, r, k, events):
    (old,) = enqueue_and_claim(engine, "a")
    engine.release(QUEUE, [(old.id, old.token)])
    new = claim_one(engine, "a")
    before = r.hgetall(k.job("a"))
    events.new()

    for outcome in (complete(old), retry(old), fail(old), cancelled(old)):
        assert engine.settle(QUEUE, [outcome]) == [ScriptCode.NOT_OWNER]

    assert r.hgetall(k.job("a")) == before
    assert_state(r, k, "a", "active")
    assert events.new() == []
    assert engine.settle(QUEUE, [complete(new)]) == [1]


def test_an_unknown_job_is_refused_as_not_found(engine, events):
    assert engine.settle(QUEUE, [Outcome("nope", "1", "c", "1")]) == [ScriptCode.JOB_NOT_FOUND]
    assert events.new() == []


def test_an_unknown_outcome_kind_is_refused_and_writes_nothing(engine, r, k, events):
    (a,) = enqueue_and_claim(engine, "a")
    before = r.hgetall(k.job("a"))
    events.new()

    assert engine.settle(QUEUE, [Outcome(a.id, a.token, "z", "1")]) == [ScriptCode.BAD_REQUEST]

    assert r.hgetall(k.job("a")) == before
    assert_state(r, k, "a", "active")
    assert events.new() == []


def test_a_batch_applies_each_outcome_on_its_own(engine, r, k, events):
    c, rt, f, x, stale = enqueue_and_claim(engine, "c", "r", "f", "x", "stale")
    events.new()

    codes = engine.settle(QUEUE, [
        complete(c), retry(rt), fail(f), cancelled(x),
        Outcome("missing", "1", "c", "1"),
        Outcome(stale.id, "0", "c", "1"),
    ])

    assert codes == [1, 1, 1, 1, -1, -3]
    states = {"c": "completed", "r": "waiting", "f": "failed", "x": "cancelled", "stale": "active"}
    for job_id, state in states.items():
        assert_state(r, k, job_id, state)
    assert events.new() == [("completed", "c"), ("retrying", "r"), ("failed", "f"), ("cancelled", "x")]


# -- replay --------------------------------------------------------------------------------


def test_a_replayed_outcome_reports_success_and_changes_nothing(engine, r, k, events):
    c, rw, rs, f, x = enqueue_and_claim(engine, "c", "rw", "rs", "f", "x")
    events.new()
    outcomes = [complete(c), retry(rw, 0), retry(rs, 9_000), fail(f), cancelled(x, error_json("stop"))]
    assert engine.settle(QUEUE, outcomes) == [1] * 5
    first_events = events.new()
    snapshot = {j: r.hgetall(k.job(j)) for j in ("c", "rw", "rs", "f", "x")}
    sets = {name: r.zrange(getattr(k, name), 0, -1, withscores=True) for name in k.STATE_SETS}

    assert engine.settle(QUEUE, outcomes) == [1] * 5

    assert len(first_events) == 5
    assert events.new() == []
    assert {j: r.hgetall(k.job(j)) for j in snapshot} == snapshot
    assert {name: r.zrange(getattr(k, name), 0, -1, withscores=True) for name in k.STATE_SETS} == sets
    for job_id in ("rw", "rs", "f", "x"):
        assert len(json.loads(r.hget(k.job(job_id), "err"))) == 1


def test_a_replayed_retry_is_still_accepted_after_its_job_was_promoted(engine, r, k, events):
    (a,) = enqueue_and_claim(engine, "a")
    engine.settle(QUEUE, [retry(a, 60_000)])
    r.zadd(k.scheduled, {"a": 1})
    engine.fetch(QUEUE, 0, lease_ms=1000, worker_id="w")  # promotes only
    assert_state(r, k, "a", "waiting")
    events.new()

    assert engine.settle(QUEUE, [retry(a, 60_000)]) == [1]
    assert_state(r, k, "a", "waiting")
    assert events.new() == []


def test_a_replayed_retry_after_the_job_was_claimed_again_is_refused(engine, r, k, events):
    (first,) = enqueue_and_claim(engine, "a")
    engine.settle(QUEUE, [retry(first)])
    second = claim_one(engine, "a")
    events.new()

    assert engine.settle(QUEUE, [retry(first)]) == [ScriptCode.NOT_OWNER]

    assert_state(r, k, "a", "active")
    assert r.hget(k.job("a"), "tok") == second.token
    assert len(json.loads(r.hget(k.job("a"), "err"))) == 1
    assert events.new() == []


def test_a_different_outcome_with_the_same_token_cannot_overwrite_a_settled_job(engine, r, k, events):
    (a,) = enqueue_and_claim(engine, "a")
    engine.settle(QUEUE, [complete(a, "1")])
    events.new()

    assert engine.settle(QUEUE, [fail(a), retry(a), cancelled(a)]) == [-3, -3, -3]

    assert_state(r, k, "a", "completed")
    assert r.hget(k.job("a"), "r") == "1"
    assert r.hget(k.job("a"), "err") is None
    assert events.new() == []


# -- retention -----------------------------------------------------------------------------


def test_completed_jobs_beyond_the_count_limit_are_deleted_oldest_first(r, k):
    with jobs_settings(KEEP_COMPLETED={"AGE": 3600, "COUNT": 2}) as engine:
        ids = [f"j{i}" for i in range(5)]
        engine.enqueue(QUEUE, [new_job(i) for i in ids])
        for claimed in claim(engine, 5):
            engine.settle(QUEUE, [complete(claimed)])

        assert r.zrange(k.completed, 0, -1) == ["j3", "j4"]
        for gone in ("j0", "j1", "j2"):
            assert not r.exists(k.job(gone))
        assert score(r, k.completed, "j4") == int(r.hget(k.job("j4"), "f")) + 3_600_000


def test_a_count_limit_also_trims_within_one_batch(r, k):
    with jobs_settings(KEEP_COMPLETED={"AGE": 3600, "COUNT": 1}) as engine:
        engine.enqueue(QUEUE, [new_job("a"), new_job("b"), new_job("c")])
        assert engine.settle(QUEUE, [complete(c) for c in claim(engine, 3)]) == [1, 1, 1]
        assert r.zcard(k.completed) == 1
        assert sum(r.exists(k.job(j)) for j in "abc") == 1


def test_completed_jobs_past_their_age_are_deleted_by_the_next_settle(engine, r, k):
    a, b = enqueue_and_claim(engine, "a", "b")
    engine.settle(QUEUE, [complete(a)])
    r.zadd(k.completed, {"a": server_ms(r) - 1})  # its retention ran out

    engine.settle(QUEUE, [complete(b)])

    assert r.zrange(k.completed, 0, -1) == ["b"]
    assert not r.exists(k.job("a"))


def test_completed_jobs_older_than_the_keep_age_setting_are_deleted(r, k):
    with jobs_settings(KEEP_COMPLETED={"AGE": 1, "COUNT": 0}) as engine:
        old, new = enqueue_and_claim(engine, "old", "new")
        engine.settle(QUEUE, [complete(old)])
        finished = int(r.hget(k.job("old"), "f"))
        assert score(r, k.completed, "old") == finished + 1_000

        wait_until(lambda: server_ms(r) > finished + 1_000, timeout=3, message="the 1 s keep age to pass")
        engine.settle(QUEUE, [complete(new)])

        assert r.zrange(k.completed, 0, -1) == ["new"]
        assert not r.exists(k.job("old"))


def test_a_queue_age_of_zero_deletes_completed_jobs_at_once(r, k):
    with jobs_settings(KEEP_COMPLETED={"AGE": 0, "COUNT": 0}) as engine:
        engine.enqueue(QUEUE, [new_job("a")])
        assert engine.settle(QUEUE, [complete(claim_one(engine, "a"))]) == [1]
        assert r.zcard(k.completed) == 0
        assert not r.exists(k.job("a"))


def test_completions_kept_for_no_time_are_deleted_with_their_events_written_and_replays_find_nothing(r, k, events):
    # Fire-and-forget (AGE 0, or keep_result=0): the hash is never rewritten, one DEL for the batch.
    with jobs_settings(KEEP_COMPLETED={"AGE": 0}) as engine:
        engine.enqueue(QUEUE, [new_job(i) for i in ("a", "b", "kept")])
        a, b, kept = claim(engine, 3)
        events.new()
        outcomes = [complete(a), complete(b, keep_ms=-1), complete(kept, keep_ms=DAY_MS)]
        assert engine.settle(QUEUE, outcomes) == [1, 1, 1]
        assert events.new() == [("completed", "a"), ("completed", "b"), ("completed", "kept")]
        assert not r.exists(k.job("a")) and not r.exists(k.job("b"))
        assert r.zrange(k.completed, 0, -1) == ["kept"] and r.zcard(k.active) == 0
        # A resent settle (its reply lost) finds nothing to change and writes no event.
        assert engine.settle(QUEUE, [complete(a)]) == [ScriptCode.JOB_NOT_FOUND]
        assert events.new() == []


def _calls(r) -> dict[str, int]:
    """Calls per command so far on this server (INFO commandstats), scripts' commands included."""
    return {name.removeprefix("cmdstat_"): stat["calls"] for name, stat in r.info("commandstats").items()}


def test_completions_kept_for_no_time_into_an_empty_completed_set_read_no_clock_and_meta_once(r, k):
    # Fire-and-forget settles: no TIME, no look at the completed set they add nothing to (no ZCARD
    # unless a settled token is a multiple of 32: includes/trim TRIM_EVERY), and one HMGET of
    # meta for both its flows and cw fields (was HEXISTS + HGET).
    with jobs_settings(KEEP_COMPLETED={"AGE": 0, "COUNT": 100}) as engine:
        claimed = enqueue_and_claim(engine, "a", "b", "c")
        assert [int(c.token) for c in claimed] == [1, 2, 3]
        before = _calls(r)
        assert engine.settle(QUEUE, [complete(c) for c in claimed]) == [1, 1, 1]
        after = _calls(r)
    used = {name: after.get(name, 0) - before.get(name, 0) for name in after}
    used = {name: n for name, n in used.items() if n and name not in ("info", "evalsha", "eval")}
    assert used == {"hmget": 1 + 3, "zrem": 1, "del": 1, "xadd": 1, "get": 1}
    assert not any(r.exists(k.job(j)) for j in "abc") and r.zcard(k.active) == 0


def test_jobs_kept_earlier_are_still_trimmed_by_settles_that_keep_nothing(r, k):
    # A set that holds jobs (kept under an earlier setting or a per-job keep) is trimmed by age
    # and by count when the settle itself adds nothing to it: by the settle of token 32.
    with jobs_settings(KEEP_COMPLETED={"AGE": 3600, "COUNT": 0}) as engine:
        claimed = enqueue_and_claim(engine, "old", "k1", "k2", "k3")
        engine.settle(QUEUE, [complete(claimed[0], keep_ms=5), *[complete(c) for c in claimed[1:]]])
        finished = int(r.hget(k.job("old"), "f"))
    wait_until(lambda: server_ms(r) > finished + 5, timeout=2, message="5 ms of server time")
    with jobs_settings(KEEP_COMPLETED={"AGE": 0, "COUNT": 2}) as engine:
        # Tokens 5..31: settles that add nothing to the set leave it alone (one in 32 trims it).
        gone = enqueue_and_claim(engine, *(f"g{i}" for i in range(5, 33)))
        assert [int(c.token) for c in gone] == list(range(5, 33))
        assert engine.settle(QUEUE, [complete(c) for c in gone[:-1]]) == [1] * 27
        assert r.zrange(k.completed, 0, -1) == ["old", "k1", "k2", "k3"]
        # Token 32: this settle trims. "old" past its age; then one of the three others beyond
        # COUNT 2, the oldest.
        assert engine.settle(QUEUE, [complete(gone[-1])]) == [1]
        assert r.zrange(k.completed, 0, -1) == ["k2", "k3"]
        assert not any(r.exists(k.job(j)) for j in ("old", "k1", "g5", "g32"))


def test_a_per_job_keep_overrides_the_queue_retention(engine, r, k):
    short, default = enqueue_and_claim(engine, "short", "default")
    engine.settle(QUEUE, [complete(short, keep_ms=5), complete(default)])

    finished = int(r.hget(k.job("short"), "f"))
    assert score(r, k.completed, "short") == finished + 5
    assert score(r, k.completed, "default") == int(r.hget(k.job("default"), "f")) + DAY_MS

    wait_until(lambda: server_ms(r) > finished + 5, timeout=2, message="5 ms of server time")
    engine.enqueue(QUEUE, [new_job("next")])
    engine.settle(QUEUE, [complete(claim_one(engine, "next"))])
    assert set(r.zrange(k.completed, 0, -1)) == {"next", "default"}
    assert not r.exists(k.job("short"))


def test_failed_and_cancelled_jobs_are_trimmed_by_the_failed_count(r, k):
    with jobs_settings(KEEP_FAILED={"AGE": 3600, "COUNT": 1}) as engine:
        f1, f2, x1, x2 = enqueue_and_claim(engine, "f1", "f2", "x1", "x2")
        engine.settle(QUEUE, [fail(f1)])
        engine.settle(QUEUE, [fail(f2)])
        engine.settle(QUEUE, [cancelled(x1)])
        engine.settle(QUEUE, [cancelled(x2)])

        assert r.zrange(k.failed, 0, -1) == ["f2"]
        assert r.zrange(k.cancelled, 0, -1) == ["x2"]
        assert not r.exists(k.job("f1")) and not r.exists(k.job("x1"))


def test_queue_specific_retention_overrides_the_global_one(r, k):
    from django.conf import settings

    queues = {**settings.DJANGO_JOBS["QUEUES"], QUEUE: {"KEEP_COMPLETED": {"COUNT": 1}}}
    with jobs_settings(QUEUES=queues, KEEP_COMPLETED={"AGE": 60, "COUNT": 100}) as engine:
        a, b = enqueue_and_claim(engine, "a", "b")
        engine.settle(QUEUE, [complete(a)])
        engine.settle(QUEUE, [complete(b)])
        assert r.zrange(k.completed, 0, -1) == ["b"]
        assert score(r, k.completed, "b") == int(r.hget(k.job("b"), "f")) + 60_000
