"""Batch entries of the events stream (lua/includes/emit.lua) as the readers expand them."""

from __future__ import annotations

from django_jobs.engine.streams import entry_before, entry_job_ids, expand_entry, split_event_id
from django_jobs.mirror.consumer import _by_jobs


def test_a_single_job_entry_is_one_event_with_the_entry_id():
    assert expand_entry("7-1", {"e": "failed", "j": "a", "why": "timeout"}) == [("7-1", {"e": "failed", "j": "a", "why": "timeout"})]
    assert entry_job_ids({"e": "x"}) == []  # not a job's event


def test_a_batch_entry_is_one_event_per_job_with_its_own_fields_and_id():
    fields = {"e": "retrying", "js": '["a","b","c"]', "delay": '["0","10","0"]'}
    assert expand_entry("7-1", fields) == [
        ("7-1:0", {"e": "retrying", "delay": "0", "j": "a"}),
        ("7-1:1", {"e": "retrying", "delay": "10", "j": "b"}),
        ("7-1:2", {"e": "retrying", "delay": "0", "j": "c"}),
    ]
    assert [split_event_id(event_id) for event_id, _ in expand_entry("7-1", fields)] == [("7-1", 0), ("7-1", 1), ("7-1", 2)]


def test_the_id_before_an_entry_reads_from_that_entry_included():
    assert entry_before("7-1") == "7-0"
    assert entry_before("7-0") == "6-18446744073709551615"


def test_the_mirror_applies_batch_entries_in_runs_of_about_its_catch_up_jobs_never_splitting_one():
    entries = [("1-0", {"e": "waiting", "js": '["a","b","c"]'}), ("2-0", {"e": "active", "j": "a"}),
               ("3-0", {"e": "completed", "js": '["a","b"]'}), ("4-0", {"e": "waiting", "js": '["d","e","f","g","h"]'})]
    named = [entry_job_ids(fields) for _, fields in entries]
    runs = list(_by_jobs(entries, named, 4))
    assert [[entry_id for entry_id, _ in run] for run, _ in runs] == [["1-0", "2-0"], ["3-0"], ["4-0"]]
    assert [ids for _, ids in runs] == [[["a", "b", "c"], ["a"]], [["a", "b"]], [["d", "e", "f", "g", "h"]]]
    assert list(_by_jobs([], [], 4)) == []


def test_a_sharded_queues_event_id_names_its_shard_and_each_shards_position_and_round_trips():
    import pytest

    from django_jobs.events import Event, join_position, split_position

    positions = ["5-0", "7-1:3", "0-0", "9-2"]
    event_id = join_position(positions, shard=1)
    assert event_id == "1@5-0,7-1:3,0-0,9-2"
    assert split_position(event_id) == (1, positions)
    assert join_position(split_position(event_id)[1], split_position(event_id)[0]) == event_id
    assert split_position(join_position(positions)) == (None, positions)  # a listener's last_id: no shard
    assert Event(event_id, "hot", "completed", "a.1").shard == 1
    assert Event("7-1:3", "default", "completed", "a").shard is None  # unsharded ids are unchanged
    for bad in ("5-0", "1@5-0", "x@5-0,6-0", "4@5-0,6-0", "5-0,abc", "1@5-0,6-0:x", "-1@5-0,6-0"):
        with pytest.raises(ValueError, match="not the id of an event of a sharded queue"):
            split_position(bad)
