"""lua/includes/emit.lua: enqueue, fetch and settle write one events entry per event kind per call.

A batch entry names its jobs in ``js`` (a JSON list) and holds per-job field values as JSON
lists; every reader expands it into one event per job (engine/streams.py ``expand_entry``).
"""

from __future__ import annotations

import json

from django_jobs.engine.streams import entry_job_ids, expand_entry
from tests.lua.conftest import QUEUE, claim, complete, error_json, fail, new_job, retry, server_ms


def test_a_bulk_enqueue_writes_one_entry_per_event_kind_naming_every_job(engine, r, k, events):
    later = server_ms(r) + 60_000
    engine.enqueue(QUEUE, [new_job("a"), new_job("b"), new_job("s", run_at_ms=later), new_job("c")])

    entries = events.new_entries()
    assert [(f["e"], entry_job_ids(f)) for _, f in entries] == [("waiting", ["a", "b", "c"]), ("scheduled", ["s"])]
    # A group of one job is written as the single-job entry every reader knows.
    assert entries[1][1] == {"e": "scheduled", "j": "s"}
    assert [f for _, f in expand_entry(*entries[0])] == [{"e": "waiting", "j": j} for j in "abc"]


def test_fetch_writes_one_active_entry_for_the_claimed_batch(engine, r, k, events):
    engine.enqueue(QUEUE, [new_job(i) for i in "abcde"])
    events.new()

    claimed = claim(engine, 5)

    entries = events.new_entries()
    assert len(entries) == 1
    assert entries[0][1]["e"] == "active" and entry_job_ids(entries[0][1]) == [c.id for c in claimed]


def test_settle_writes_one_entry_per_outcome_kind_with_each_jobs_own_fields(engine, r, k, events):
    engine.enqueue(QUEUE, [new_job(i) for i in "abcdef"])
    a, b, c, d, e, f = claim(engine, 6)
    events.new()

    assert engine.settle(QUEUE, [complete(a), retry(b, 5000), complete(c), fail(d, error_json("x")),
                                 retry(e, 0), complete(f)]) == [1] * 6

    entries = events.new_entries()
    assert [(fields["e"], entry_job_ids(fields)) for _, fields in entries] == [
        ("completed", ["a", "c", "f"]), ("retrying", ["b", "e"]), ("failed", ["d"]),
    ]
    retrying = entries[1][1]
    assert json.loads(retrying["delay"]) == ["5000", "0"]
    entry_id = entries[1][0]
    assert expand_entry(entry_id, retrying) == [
        (f"{entry_id}:0", {"e": "retrying", "delay": "5000", "j": "b"}),
        (f"{entry_id}:1", {"e": "retrying", "delay": "0", "j": "e"}),
    ]
    # Expanded, the events are what one entry per job wrote before (same fields per job).
    assert events.all()[-6:] == [("completed", "a"), ("completed", "c"), ("completed", "f"),
                                 ("retrying", "b"), ("retrying", "e"), ("failed", "d")]


def test_a_replayed_settle_writes_no_entry(engine, r, k, events):
    engine.enqueue(QUEUE, [new_job("a"), new_job("b")])
    a, b = claim(engine, 2)
    outcomes = [complete(a), complete(b)]
    engine.settle(QUEUE, outcomes)
    events.new()

    assert engine.settle(QUEUE, outcomes) == [1, 1]  # a resent call after a dropped reply

    assert events.new_entries() == []


def test_a_jobs_own_events_keep_their_order_within_one_call(engine, r, k, events):
    # Promoted (waiting) then claimed (active) in the same fetch: waiting is written first.
    later = server_ms(r) + 60_000
    engine.enqueue(QUEUE, [new_job("a", run_at_ms=later), new_job("b", run_at_ms=later)])
    r.zadd(k.scheduled, {"a": 0, "b": 0})  # due now
    events.new()

    claim(engine, 2)

    assert events.new() == [("waiting", "a"), ("waiting", "b"), ("active", "a"), ("active", "b")]


def test_one_job_per_call_still_writes_the_single_job_entry(engine, r, k, events):
    engine.enqueue(QUEUE, [new_job("a")])
    (a,) = claim(engine, 1)
    engine.settle(QUEUE, [complete(a)])

    assert [f for _, f in events.new_entries()] == [
        {"e": "waiting", "j": "a"}, {"e": "active", "j": "a"}, {"e": "completed", "j": "a"},
    ]


def test_an_entry_names_at_most_32_jobs_so_the_capped_stream_stays_bounded(engine, r, k, events):
    ids = [f"j{n:03d}" for n in range(70)]
    engine.enqueue(QUEUE, [new_job(i) for i in ids])

    entries = events.new_entries()
    assert [len(entry_job_ids(f)) for _, f in entries] == [32, 32, 6]
    assert [job_id for _, f in entries for job_id in entry_job_ids(f)] == ids
