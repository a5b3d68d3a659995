"""The mirror's CPU per row (issue 17, ninth session): values a batch's rows share are built once.

Real database (SQLite, or PostgreSQL with ``DJJ_TEST_DB=postgres``) for the adapters; the rows
themselves are pure Python.
"""

from __future__ import annotations

import json

import pytest
from django.db import connections

from django_jobs.engine.record import decode_payload
from django_jobs.mirror import rows as mirror_rows
from django_jobs.mirror.rows import row_from_hash
from django_jobs.tasks import ms_to_datetime

pytestmark = [pytest.mark.db, pytest.mark.django_db(transaction=True)]

MS = 1_796_000_000_123


def job_hash(i: int = 0, **fields: str) -> dict[str, str]:
    """A finished job's hash: enqueued by one bulk call, fetched and settled by one call each."""
    return {"s": "completed", "d": '{"v":1,"n":"tests.testapp.jobs.add","a":[1,2]}', "e": str(MS), "a": "1",
            "st": str(MS + 500), "la": str(MS + 500), "f": str(MS + 750), "r": "3", "wk": '["host:1:2"]', **fields}


def test_rows_of_a_batch_share_their_times_and_decoded_payload_and_hold_what_they_held():
    mirror_rows._moments.clear()
    mirror_rows._payloads.clear()
    a, b = (row_from_hash("default", f"job{i}", job_hash(i), 7, texts=True) for i in range(2))
    for name in ("enqueued_at", "started_at", "finished_at"):
        assert a[name] is b[name]  # one datetime for a time the rows share (built once)
    assert a["enqueued_at"] == ms_to_datetime(MS) and a["finished_at"] == ms_to_datetime(MS + 750)
    assert a["args"] is b["args"] and a["args"] == [1, 2] and a["kwargs"] == {} and a["name"] == "tests.testapp.jobs.add"
    assert a["duration"] == 0.25 and a["raw_payload"] == "" and a["error"] == a["error_class"] == a["traceback"] == ""
    # The same values as the decoding path every other caller uses (texts=False), but for the JSON texts.
    plain = row_from_hash("default", "job0", job_hash(0), 7)
    assert {k: v for k, v in a.items() if k not in ("result", "workers")} == {
        k: v for k, v in plain.items() if k not in ("result", "workers")}
    assert json.loads(a["result"]) == plain["result"] == 3 and json.loads(a["workers"]) == plain["workers"]
    # Not shared with the rows others build (texts=False): they may change them.
    assert plain["args"] is not a["args"]


def test_a_long_payload_is_decoded_per_row_and_a_bad_one_is_kept_as_text():
    mirror_rows._payloads.clear()
    long = json.dumps({"v": 1, "n": "tests.testapp.jobs.add", "a": ["x" * mirror_rows.MEMO_PAYLOAD]})
    a, b = (row_from_hash("default", f"job{i}", job_hash(i, d=long), 7, texts=True) for i in range(2))
    assert a["args"] == b["args"] == ["x" * mirror_rows.MEMO_PAYLOAD] and a["args"] is not b["args"]
    assert long not in mirror_rows._payloads
    for bad in ("not json", '{"v":1}', "[1]"):
        for _ in range(2):  # memoized or not, the same row
            row = row_from_hash("default", "job", job_hash(0, d=bad), 7, texts=True)
            assert (row["name"], row["args"], row["kwargs"], row["raw_payload"]) == ("?", [], {}, bad)
            assert decode_payload(bad).problem


def test_an_error_is_read_from_the_hash_and_bad_times_are_empty():
    err = json.dumps([{"exception_class_path": "x.Boom", "traceback": "Traceback\nshop.Boom: no"}])
    row = row_from_hash("default", "job", job_hash(0, s="failed", err=err, eh="[1, {\"a\": 1}]", st="soon", e="0"), 7,
                        texts=True)
    assert (row["error"], row["error_class"], row["traceback"]) == ("shop.Boom: no", "Boom", "Traceback\nshop.Boom: no")
    assert row["errors"] == json.loads(err) and row["earlier_errors"] == [{"a": 1}]
    assert row["started_at"] is None and row["enqueued_at"] is None and row["duration"] == 0.25


def test_the_memos_are_bounded(monkeypatch):
    monkeypatch.setattr(mirror_rows, "MEMO_MAX", 10)
    for i in range(25):
        row = row_from_hash("default", "job", job_hash(0, e=str(MS + i), d=f'{{"v":1,"n":"t{i}"}}'), 7, texts=True)
        assert row["enqueued_at"] == ms_to_datetime(MS + i) and row["name"] == f"t{i}"
        assert len(mirror_rows._moments) <= 10 and len(mirror_rows._payloads) <= 10


def test_the_upsert_adapts_each_distinct_datetime_once():
    shape = mirror_rows._shape(connections["default"])
    assert len(shape.dates) == 4  # enqueued_at, scheduled_for, started_at, finished_at (updated_at: once a batch)
    calls: list[object] = []
    original = shape.dates

    def counting(adapt):
        def wrapped(value):
            calls.append(value)
            return adapt(value)
        return wrapped

    rows = [row_from_hash("default", f"job{i}", job_hash(i, f=str(MS + 750 + i % 3)), 7, texts=True) for i in range(50)]
    expected = mirror_rows._columns(shape, rows)
    shape.dates = [(i, counting(adapt)) for i, adapt in original]
    try:
        columns = mirror_rows._columns(shape, rows)
    finally:
        shape.dates = original
    assert len(calls) == 5  # one enqueue time, one start time, three finish times
    updated = shape.updated_at
    assert [c for i, c in enumerate(columns) if i != updated] == [c for i, c in enumerate(expected) if i != updated]
    for i, adapt in original:
        assert list(columns[i]) == [None if row[shape.plan[i][0]] is None else adapt(row[shape.plan[i][0]]) for row in rows]


def test_jobs_the_mirror_deferred_are_not_asked_of_the_database_when_their_next_events_come(engine, work, monkeypatch):
    from django_jobs import mirror
    from django_jobs.mirror import consumer
    from django_jobs.models import JobRecord
    from tests.integration.test_mirror import behind_mirror, expected_rows, mirrored_rows, pending
    from tests.testapp.jobs import add

    asked: list[str] = []
    stored_versions = consumer.stored_versions

    def noting(job_ids, **kwargs):
        asked.extend(job_ids)
        return stored_versions(job_ids, **kwargs)

    monkeypatch.setattr(consumer, "stored_versions", noting)
    ids = [add.enqueue(i, i).id for i in range(10)]
    loop = behind_mirror()
    assert isinstance(loop, mirror.Mirror) and loop.step() == 0  # 2 waiting jobs deferred
    deferred = set(loop._deferred["default"])
    assert len(deferred) == 2 and not JobRecord.objects.exists()
    work()
    while True:
        loop.step()
        if not loop._read:
            break
    assert not deferred & set(asked)  # their next events: no query for a row the mirror did not write
    assert mirrored_rows() == expected_rows(engine) and set(mirrored_rows()) == set(ids) and pending(engine) == 0


def test_postgresql_array_literals_write_each_distinct_datetime_once():
    from datetime import UTC, datetime

    made: list[datetime] = []

    class Counted(datetime):
        def isoformat(self, *args, **kwargs):  # type: ignore[override]
            made.append(self)
            return super().isoformat(*args, **kwargs)

    a, b = Counted(2026, 12, 8, 1, 2, 3, 4000, tzinfo=UTC), Counted(2026, 12, 8, 1, 2, 4, tzinfo=UTC)
    literal = mirror_rows._column_literal("datetime", [a, b, None, a, a, b])
    assert literal == ('{"2026-12-08T01:02:03.004000+00:00","2026-12-08T01:02:04+00:00",NULL,'
                       '"2026-12-08T01:02:03.004000+00:00","2026-12-08T01:02:03.004000+00:00","2026-12-08T01:02:04+00:00"}')
    assert len(made) == 2
    assert mirror_rows._column_literal("datetime", [a, None]) == mirror_rows._array_literal([a, None])


def test_the_memos_are_emptied_once_the_mirror_caught_up_after_a_burst():
    from django_jobs import mirror

    row_from_hash("default", "job", job_hash(0), 7, texts=True)
    assert mirror_rows._moments and mirror_rows._payloads
    mirror.Mirror(["default"])._compact()  # what the run loop calls once caught up after a burst
    assert not mirror_rows._moments and not mirror_rows._payloads
