"""The database mirror: every event reflected, idempotent, resumes, resyncs, prunes (real Redis, real DB)."""

from __future__ import annotations

import json
import threading
from contextlib import contextmanager
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from django_jobs import mirror
from django_jobs.engine.keys import MIRROR_GROUP
from django_jobs.engine.queue import NewJob
from django_jobs.engine.streams import entry_job_ids
from django_jobs.models import JobRecord, MirrorCursor

pytestmark = [
    pytest.mark.db, pytest.mark.django_db(transaction=True),
    # Every test also runs against a real Redis Cluster (tests/conftest.py).
    pytest.mark.parametrize("topology", ["server", "cluster"], indirect=True),
]

#: Row fields compared with the Redis hash (everything but bookkeeping).
COMPARED = ("queue", "name", "state", "priority", "attempts", "args", "kwargs", "result", "error", "errors",
            "earlier_errors", "correlation_id", "parent_id", "workers", "raw_payload", "enqueued_at", "started_at", "finished_at")


def expected_rows(engine, queues=("default", "high", "low")) -> dict[str, dict]:
    """The row of every job Redis holds, built from its hash."""
    rows = {}
    for queue in queues:
        for state in ("waiting", "scheduled", "active", "completed", "failed", "cancelled"):
            _, page = engine.list_jobs(queue, state, limit=10_000)
            for job_id, data in page:
                rows[job_id] = {k: v for k, v in mirror.row_from_hash(queue, job_id, data, 0).items() if k in COMPARED}
    return rows


def mirrored_rows() -> dict[str, dict]:
    return {r["job_id"]: {k: r[k] for k in COMPARED} for r in JobRecord.objects.values("job_id", *COMPARED)}


def run_loop(loop: mirror.Mirror, stop: threading.Event) -> None:
    """Thread target: run ``loop`` until ``stop``; then close this thread's database connection.

    Django never closes an in-memory SQLite connection (that would drop the test database),
    so the thread closes its raw connection itself; the main thread's keeps the data.
    """
    from django.db import connections

    try:
        loop.run(stop.is_set)
    finally:
        conn = connections["default"]
        if conn.vendor == "sqlite" and conn.is_in_memory_db() and conn.connection is not None:
            conn.connection.close()


def settled(predicate):
    """Return ``predicate`` wrapped so a query refused by SQLite's shared-cache table lock counts as "not yet"."""
    from django.db import OperationalError

    def check() -> bool:
        try:
            return bool(predicate())
        except OperationalError:
            return False

    return check


def pending(engine, queue="default") -> int:
    info = engine.mirror_group_info(queue, MIRROR_GROUP)
    return int(info["pending"]) if info else 0



@contextmanager
def database_away():
    """The mirror's table renamed away for the block: every write to it fails, then it is back."""
    table = connection.ops.quote_name(JobRecord._meta.db_table)
    with connection.cursor() as cursor:
        cursor.execute(f"ALTER TABLE {table} RENAME TO djj_mirror_away")
    try:
        yield
    finally:
        with connection.cursor() as cursor:
            cursor.execute(f"ALTER TABLE djj_mirror_away RENAME TO {table}")

def test_every_job_of_every_state_is_mirrored_as_redis_holds_it(engine, work, ledger_path):
    from tests.testapp.jobs import add, always_fails, echo, flaky, record, retry_later

    done = add.using(priority=7).enqueue(2, 3)
    failed = always_fails.enqueue()
    retried = flaky.enqueue("t1", 1)
    later = retry_later.enqueue("r")
    echoed = echo.enqueue({"x": [1, 2]})
    work()
    scheduled = record.using(delay=3600).enqueue("later")
    cancelled = record.using(delay=3600).enqueue("cancel me")
    cancelled.cancel()
    waiting = add.using(priority=-3).enqueue(1, 1)

    assert mirror.mirror_once() == 8  # one row per job, however many events it had
    rows = mirrored_rows()
    assert rows == expected_rows(engine)
    assert {rows[r.id]["state"] for r in (done, retried, later, echoed)} == {"completed"}
    assert (rows[failed.id]["state"], rows[scheduled.id]["state"], rows[cancelled.id]["state"], rows[waiting.id]["state"]) == (
        "failed", "scheduled", "cancelled", "waiting")
    row = JobRecord.objects.get(pk=done.id)
    assert (row.name, row.args, row.priority, row.result, row.attempts) == (add.module_path, [2, 3], 7, 5, 1)
    assert row.enqueued_at <= row.started_at <= row.finished_at and row.duration is not None and row.duration >= 0
    assert row.correlation_id and len(row.workers) == 1
    bad = JobRecord.objects.get(pk=failed.id)
    assert bad.attempts == 2 and len(bad.errors) == 2 and "Traceback" in bad.traceback and bad.error
    assert JobRecord.objects.get(pk=retried.id).attempts == 2
    assert JobRecord.objects.get(pk=scheduled.id).scheduled_for is not None
    assert JobRecord.objects.get(pk=echoed.id).queue == "high"
    cursor = MirrorCursor.objects.get(queue="default")
    assert cursor.last_event_id == engine.client.xrevrange(engine.keys("default").events, count=1)[0][0]
    assert pending(engine) == 0


def test_mirroring_again_writes_nothing_and_changes_nothing(engine, work):
    from tests.testapp.jobs import add

    ids = [add.enqueue(i, i).id for i in range(5)]
    assert mirror.mirror_once() == 5
    before = mirrored_rows()
    assert mirror.mirror_once() == 0
    assert mirror.mirror_once() == 0
    assert mirrored_rows() == before
    work()
    assert mirror.mirror_once() == 5
    assert {r["state"] for r in mirrored_rows().values()} == {"completed"} and set(mirrored_rows()) == set(ids)


def test_a_row_follows_the_job_through_its_states(engine):
    from tests.testapp.jobs import add

    job_id = add.enqueue(1, 2).id
    mirror.mirror_once()
    assert JobRecord.objects.get(pk=job_id).state == "waiting"
    claimed = engine.fetch("default", 1, lease_ms=60_000, worker_id="w:1:aaaaaa").jobs[0]
    mirror.mirror_once()
    row = JobRecord.objects.get(pk=job_id)
    assert (row.state, row.attempts, row.workers) == ("active", 1, ["w:1:aaaaaa"])
    from django_jobs.engine.queue import Outcome

    assert engine.settle("default", [Outcome(claimed.id, claimed.token, "c", "3")]) == [1]
    mirror.mirror_once()
    row = JobRecord.objects.get(pk=job_id)
    assert (row.state, row.result) == ("completed", 3) and row.finished_at is not None


def test_a_retried_job_s_row_keeps_the_errors_of_its_earlier_run(engine, work):
    from django_jobs import operations
    from tests.testapp.jobs import always_fails

    job_id = always_fails.using(attempts=1).enqueue().id
    work()
    mirror.mirror_once()
    row = JobRecord.objects.get(pk=job_id)
    assert (row.state, [e["exception_class_path"] for e in row.errors], row.earlier_errors) == ("failed", ["builtins.ValueError"], [])

    assert operations.retry([("default", job_id)]).done_count == 1
    mirror.mirror_once()
    row = JobRecord.objects.get(pk=job_id)
    assert (row.state, row.errors, row.error) == ("waiting", [], "")
    assert [e["exception_class_path"] for e in row.earlier_errors] == ["builtins.ValueError"]
    assert "this job always fails" in row.earlier_errors[0]["traceback"]
    assert mirrored_rows() == expected_rows(engine)


def test_an_older_snapshot_never_overwrites_a_newer_row(engine):
    base = {"job_id": "j1", "queue": "default", "name": "n", "state": "completed", "version": 100}
    mirror.upsert([base], using="default")
    mirror.upsert([{**base, "state": "active", "version": 99}], using="default")
    assert JobRecord.objects.get(pk="j1").state == "completed"
    mirror.upsert([{**base, "state": "failed", "version": 101}], using="default")
    assert JobRecord.objects.get(pk="j1").state == "failed"


def test_events_read_but_not_acknowledged_before_a_crash_are_mirrored_on_restart(engine):
    from tests.testapp.jobs import add

    ids = [add.enqueue(i, 0).id for i in range(4)]
    first = mirror.Mirror(consumer="host-a")
    first._ensure("default")
    # The first mirror read the entries, then died before writing them: they stay pending.
    read = engine.mirror_read("default", MIRROR_GROUP, "host-a", count=100)
    assert len(read.entries) == 4 and pending(engine) == 4
    assert mirror.Mirror(consumer="host-a").drain() == 4  # the same host restarts: its own pending first
    assert set(mirrored_rows()) == set(ids) and pending(engine) == 0


def test_a_batch_entry_is_mirrored_job_by_job_and_acknowledged_once(engine, work):
    ids = [f"{n:032x}" for n in range(5)]
    data = json.dumps({"n": "tests.testapp.jobs.add", "a": [1, 2]})
    engine.enqueue_many("default", [NewJob(id=job_id, data=data) for job_id in ids])
    (entry,) = engine.client.xrange(engine.keys("default").events)
    assert entry_job_ids(entry[1]) == ids  # one 'waiting' entry naming the five jobs

    assert mirror.mirror_once() == 5
    assert set(mirrored_rows()) == set(ids)
    assert {r["state"] for r in mirrored_rows().values()} == {"waiting"} and pending(engine) == 0
    work()
    assert mirror.mirror_once() == 5  # active and completed batches: each job's row once
    assert {r["state"] for r in mirrored_rows().values()} == {"completed"}
    assert mirrored_rows() == expected_rows(engine) and pending(engine) == 0


def test_a_mirror_killed_after_reading_a_batch_entry_writes_every_job_of_it_once_on_restart(engine):
    ids = [f"{n:032x}" for n in range(6)]
    data = json.dumps({"n": "tests.testapp.jobs.add", "a": [1, 2]})
    engine.enqueue_many("default", [NewJob(id=job_id, data=data) for job_id in ids[:3]])
    engine.enqueue_many("default", [NewJob(id=job_id, data=data) for job_id in ids[3:]])
    first = mirror.Mirror(consumer="host-a")
    first._ensure("default")
    # The first mirror read both batch entries, then died before writing them: they stay pending.
    read = engine.mirror_read("default", MIRROR_GROUP, "host-a", count=1)
    assert [entry_job_ids(f) for _, f in read.entries] == [ids[:3]] and pending(engine) == 1
    restarted = mirror.Mirror(consumer="host-a")
    assert restarted.drain() == 6  # its own pending entry first (3 jobs), then the unread one (3 more)
    assert set(mirrored_rows()) == set(ids) and pending(engine) == 0
    assert restarted.drain() == 0  # nothing written twice


def test_another_mirror_takes_over_what_a_dead_one_left_pending(engine, settings, jobs_settings):
    from tests.testapp.jobs import add

    # Claimed after 1 s idle: the "not yet" below has a second to run in, even on a loaded machine
    # (at 0.05 s a loaded CI run claimed there already).
    settings.DJANGO_JOBS = {**jobs_settings, "MIRROR": {"CLAIM_AFTER": 1.0}}
    from django_jobs.engine import get_engine

    engine = get_engine()  # the settings changed: the fixture's engine is closed (a closed RedisCluster stays closed)
    ids = [add.enqueue(i, 0).id for i in range(3)]
    dead = mirror.Mirror(consumer="host-dead")
    dead._ensure("default")
    assert len(engine.mirror_read("default", MIRROR_GROUP, "host-dead", count=100).entries) == 3
    other = mirror.Mirror(consumer="host-b")
    assert other.drain() == 0  # not idle long enough yet: nothing new, nothing claimed
    threading.Event().wait(1.1)
    other._claim_at = 0.0
    assert other.drain() == 3
    assert set(mirrored_rows()) == set(ids) and pending(engine) == 0


def test_nothing_is_acknowledged_while_the_database_refuses_writes(engine, work):
    from tests.testapp.jobs import add

    ids = [add.enqueue(i, 1).id for i in range(3)]
    work()
    with database_away():
        with pytest.raises(Exception):  # noqa: B017 - whatever the database driver raises
            mirror.mirror_once()
        # 3 jobs x waiting, active, completed, in as many entries as the scripts wrote (a batch
        # entry names several jobs): all read, none acknowledged.
        events = engine.client.xrange(engine.keys("default").events)
        assert sum(len(entry_job_ids(f)) for _, f in events) == 9 and pending(engine) == len(events)
    assert mirror.mirror_once() == 3
    assert {r["state"] for r in mirrored_rows().values()} == {"completed"} and set(mirrored_rows()) == set(ids)
    assert pending(engine) == 0


def test_a_following_mirror_reads_its_own_pending_entries_only_when_it_may_have_some(engine, monkeypatch):
    from django_jobs.engine import get_engine
    from tests.testapp.jobs import add

    engine = get_engine()
    calls: list[str] = []
    real_pending = engine.mirror_pending

    def counted(queue, *args, **kwargs):  # type: ignore[no-untyped-def]
        calls.append(queue)
        return real_pending(queue, *args, **kwargs)

    monkeypatch.setattr(engine, "mirror_pending", counted)
    loop = mirror.Mirror(["default"])
    first = add.enqueue(1, 1).id
    assert loop.step() == 1 and calls == ["default"]  # a new mirror: its own pending entries first (none)
    second = add.enqueue(2, 2).id
    assert loop.step() == 1 and calls == ["default"]  # every entry it read is acknowledged: no such read
    third = add.enqueue(3, 3).id
    with database_away():
        with pytest.raises(Exception):  # noqa: B017 - whatever the database driver raises
            loop.step()  # read, not written, not acknowledged
    assert pending(engine) == 1 and len(calls) == 1
    assert loop.step() == 1 and len(calls) == 2  # after a failed step: its own pending entries, at once
    assert set(mirrored_rows()) == {first, second, third} and pending(engine) == 0


def test_entries_of_a_read_whose_reply_was_lost_are_read_again_at_the_next_step(engine, monkeypatch):
    from django_jobs.engine import get_engine
    from django_jobs.exceptions import RedisUnavailable
    from tests.testapp.jobs import add

    engine = get_engine()
    loop = mirror.Mirror(["default"])
    assert loop.step() == 0
    ids = [add.enqueue(i, i).id for i in range(3)]
    real_read = engine.mirror_read

    def lost(*args, **kwargs):  # type: ignore[no-untyped-def]
        real_read(*args, **kwargs)  # Redis delivered the entries to this consumer...
        raise RedisUnavailable("connection lost")  # ...and the reply never arrived

    monkeypatch.setattr(engine, "mirror_read", lost)
    with pytest.raises(RedisUnavailable):
        loop.step()
    monkeypatch.undo()
    assert pending(engine) == 3 and not JobRecord.objects.exists()
    assert loop.step() == 3  # not after CLAIM_AFTER: its own pending entries are read first
    assert set(mirrored_rows()) == set(ids) and pending(engine) == 0


def test_a_lingering_mirror_writes_every_job_of_a_drain_it_follows(engine, work, settings, jobs_settings):
    from django_jobs.engine import get_engine
    from tests.redis_server import wait_until
    from tests.testapp.jobs import add

    settings.DJANGO_JOBS = {**jobs_settings, "MIRROR": {"LINGER": 0.3}}
    engine = get_engine()  # the settings changed: the fixture's engine is closed
    loop = mirror.Mirror()
    assert loop.linger == 0.3
    stop = threading.Event()
    thread = threading.Thread(target=run_loop, args=(loop, stop))
    thread.start()
    ids: list[str] = []
    try:
        for round_ in range(5):  # enqueues and runs while the mirror follows and lingers
            ids += [add.using(queue_name=queue).enqueue(round_, i).id for queue in ("default", "high") for i in range(10)]
            ids += [r.id for r in add.enqueue_many([(round_, i) for i in range(10)])]
            work()

        def caught_up() -> bool:
            return JobRecord.objects.filter(state="completed").count() == len(ids) and \
                pending(engine, "default") == pending(engine, "high") == 0

        wait_until(settled(caught_up), 20, message="the lingering mirror caught up")
    finally:
        stop.set()
        thread.join(10)
    assert not thread.is_alive()
    assert set(mirrored_rows()) == set(ids) and mirrored_rows() == expected_rows(engine)


def test_the_run_loop_retries_with_backoff_until_the_database_is_back(engine, caplog):
    from tests.redis_server import wait_until
    from tests.testapp.jobs import add

    stop = threading.Event()
    thread = threading.Thread(target=run_loop, args=(mirror.Mirror(), stop))
    try:
        # The table is back when the block ends, however it ends: a failed check must not leave
        # the worker's later tests without it (their "relation does not exist" errors).
        with database_away():
            job_id = add.enqueue(5, 5).id
            thread.start()
            # Read, written in vain (the table is away), not acknowledged; waited for, not slept
            # for: a loaded machine's mirror thread may not have read it after a fixed pause.
            wait_until(lambda: any("Mirror step failed" in r.getMessage() for r in caplog.records), 20,
                       message="the mirror's first failed write")
            assert pending(engine) == 1
        wait_until(settled(lambda: JobRecord.objects.filter(pk=job_id).exists()), 10, message="the row after the DB came back")
        wait_until(lambda: pending(engine) == 0, 5, message="the entry acknowledged")
    finally:
        stop.set()
        if thread.ident is not None:
            thread.join(10)
    assert not thread.is_alive()


def test_a_job_deleted_before_the_mirror_saw_it_is_written_from_its_final_event(engine, work):
    from tests.testapp.jobs import add

    seen = add.enqueue(1, 1).id
    mirror.mirror_once()
    unseen = add.enqueue(2, 2).id
    work()
    assert engine.purge("default", "completed") == 2  # both hashes gone before the mirror read their events
    mirror.mirror_once()
    rows = {r.job_id: r for r in JobRecord.objects.all()}
    assert rows[seen].state == "completed" and rows[seen].name == "tests.testapp.jobs.add" and rows[seen].finished_at
    assert rows[unseen].state == "completed" and rows[unseen].name == "?" and rows[unseen].finished_at


def test_a_job_deleted_through_the_engine_loses_its_row(engine, work):
    from tests.testapp.jobs import add

    kept, deleted = add.enqueue(1, 1).id, add.enqueue(2, 2).id
    work()
    mirror.mirror_once()
    assert set(JobRecord.objects.values_list("job_id", flat=True)) == {kept, deleted}
    assert engine.delete_jobs("default", [deleted]) == [1]
    assert mirror.mirror_once() == 1
    assert set(JobRecord.objects.values_list("job_id", flat=True)) == {kept}


def test_a_payload_that_does_not_decode_is_kept_raw_and_the_mirror_goes_on(engine):
    from tests.testapp.jobs import add

    bad_id = "b" * 32
    assert engine.enqueue("default", [NewJob(id=bad_id, data="{not json")]) == [1]
    weird_id = "c" * 32
    assert engine.enqueue("default", [NewJob(id=weird_id, data=json.dumps({"v": 1, "n": 5}))]) == [1]
    good = add.enqueue(1, 2).id
    assert mirror.mirror_once() == 3
    bad = JobRecord.objects.get(pk=bad_id)
    assert (bad.raw_payload, bad.name, bad.args, bad.state) == ("{not json", "?", [], "waiting")
    assert JobRecord.objects.get(pk=weird_id).raw_payload == json.dumps({"v": 1, "n": 5})
    assert JobRecord.objects.get(pk=good).raw_payload == ""


def test_text_the_database_cannot_store_is_cleaned_not_fatal(engine):
    from tests.testapp.jobs import echo

    job = echo.enqueue("nul\x00char")
    assert mirror.mirror_once() == 1
    row = JobRecord.objects.get(pk=job.id)
    assert row.name == echo.module_path and "nul" in json.dumps(row.args)


def test_json_fields_are_written_as_their_text_and_bad_text_is_left_empty(engine, r):
    """The mirror writes a hash's result, progress and workers as the JSON text it holds (not
    decoded and encoded again): the database checks it, and text that is not JSON is left empty."""
    from django_jobs.testing import work_until_empty
    from tests.testapp.jobs import add, echo

    good = echo.enqueue({"k": [1, "\u00e9", None], "n": 2.5}).id
    bad = add.enqueue(1, 2).id
    nul = echo.enqueue("nul\x00char").id
    work_until_empty()
    r.hset(engine.keys("default").job(bad), mapping={"r": "{not json", "pg": "[1,", "wk": "[oops"})
    r.xadd(engine.keys("default").events, {"e": "completed", "j": bad})
    assert mirror.mirror_once() == 3
    row = JobRecord.objects.get(pk=good)
    assert row.result == {"k": [1, "\u00e9", None], "n": 2.5} and row.progress is None and len(row.workers) == 1
    assert JobRecord.objects.filter(pk=good, result__k__1="\u00e9").exists()  # stored as JSON, queryable
    row = JobRecord.objects.get(pk=bad)
    assert (row.state, row.result, row.progress, row.args) == ("completed", None, None, [1, 2])
    assert JobRecord.objects.get(pk=nul).result in ("nul\ufffdchar", "nul\x00char")  # cleaned where refused


def test_events_trimmed_before_the_mirror_read_them_trigger_a_resync(engine, r):
    from tests.testapp.jobs import add

    first = add.enqueue(0, 0).id
    assert mirror.mirror_once() == 1
    ids = [add.enqueue(i, 1).id for i in range(5)]
    r.xtrim(engine.keys("default").events, maxlen=1, approximate=False)  # 4 unread events are lost
    loop = mirror.Mirror()
    loop.drain()
    assert loop.resyncs == 1
    assert set(mirrored_rows()) == {first, *ids}
    assert mirrored_rows() == expected_rows(engine)
    loop.drain()
    assert loop.resyncs == 1  # the gap is handled once


def test_a_first_mirror_on_an_already_trimmed_stream_resyncs_the_queue(engine, r):
    from tests.testapp.jobs import add

    ids = [add.enqueue(i, 1).id for i in range(4)]
    r.xtrim(engine.keys("default").events, maxlen=2, approximate=False)
    loop = mirror.Mirror(["default"])
    loop.drain()
    assert loop.resyncs == 1 and set(mirrored_rows()) == set(ids)


def test_a_lost_stream_is_recreated_and_the_queue_resynced(engine, r):
    from tests.testapp.jobs import add

    add.enqueue(1, 1)
    loop = mirror.Mirror(["default"])
    loop.drain()
    r.delete(engine.keys("default").events)  # as after a Redis restart without persistence
    later = add.enqueue(2, 2).id
    loop.drain()
    assert loop.resyncs == 1 and JobRecord.objects.filter(pk=later).exists()
    assert engine.mirror_group_info("default", MIRROR_GROUP) is not None


def test_resync_rebuilds_the_mirror_from_redis_with_progress(engine, work):
    from tests.testapp.jobs import add, always_fails, record

    [add.enqueue(i, i) for i in range(7)]
    always_fails.enqueue()
    work()
    record.using(delay=3600).enqueue("later")
    record.enqueue("now")
    JobRecord.objects.create(job_id="f" * 32, queue="default", name="gone", state="active")  # Redis has no such job
    seen = []
    written = mirror.resync(["default"], progress=lambda *args: seen.append(args))
    assert written == 10
    assert mirrored_rows() == expected_rows(engine)
    assert not JobRecord.objects.filter(pk="f" * 32).exists()
    assert ("default", "completed", 7, 7) in seen and ("default", "waiting", 1, 1) in seen


def test_resync_includes_flow_parents_waiting_for_their_children(engine):
    from django_jobs.flows import Flow
    from tests.testapp import jobs_flows as jf

    handle = Flow(jf.gather.s("p"), children=[jf.value.s(1)]).enqueue()
    written = mirror.resync([handle.result.queue])
    assert written >= 1
    assert JobRecord.objects.get(pk=handle.id).state == "waiting_children"


def test_resync_refuses_unknown_queues():
    from django_jobs.exceptions import ConfigurationError

    with pytest.raises(ConfigurationError, match="Unknown queue"):
        mirror.resync(["nope"])


def test_prune_deletes_only_finished_rows_older_than_the_retention(engine):
    now = timezone.now()
    old, recent = now - timedelta(days=8), now - timedelta(days=1)
    for job_id, state, finished in [
        ("a", "completed", old), ("b", "failed", old), ("c", "cancelled", old),
        ("d", "completed", recent), ("e", "active", None), ("f", "waiting", None),
    ]:
        JobRecord.objects.create(job_id=job_id, queue="default", name="n", state=state, finished_at=finished)
    assert mirror.prune() == 3  # the default RETENTION: 7 days
    assert set(JobRecord.objects.values_list("pk", flat=True)) == {"d", "e", "f"}
    assert mirror.prune(3600) == 1
    assert set(JobRecord.objects.values_list("pk", flat=True)) == {"e", "f"}


def test_prune_keeps_everything_when_retention_is_none(settings, jobs_settings):
    settings.DJANGO_JOBS = {**jobs_settings, "MIRROR": {"RETENTION": None}}
    JobRecord.objects.create(job_id="a", queue="default", name="n", state="completed",
                             finished_at=timezone.now() - timedelta(days=365))
    assert mirror.prune() == 0 and JobRecord.objects.count() == 1


def test_two_mirrors_racing_end_with_every_row_in_its_final_state(engine, work):
    from tests.testapp.jobs import add

    ids = [add.enqueue(i, i).id for i in range(200)]
    stop = threading.Event()
    loops = [mirror.Mirror(consumer=f"racer-{n}") for n in range(2)]
    threads = [threading.Thread(target=run_loop, args=(loop, stop)) for loop in loops]
    for thread in threads:
        thread.start()
    try:
        work()
        from tests.redis_server import wait_until

        def caught_up() -> bool:
            return JobRecord.objects.filter(state="completed").count() == 200 and pending(engine) == 0

        wait_until(settled(caught_up), 20, message="both mirrors caught up")
    finally:
        stop.set()
        for thread in threads:
            thread.join(10)
    assert set(JobRecord.objects.values_list("pk", flat=True)) == set(ids)
    assert mirrored_rows() == expected_rows(engine)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ({"BATCH": 0}, "DJANGO_JOBS['MIRROR']['BATCH'] is 0; it must be a whole number >= 1. Use e.g. 500 (the default)."),
        ({"BATCH": 20_000}, "DJANGO_JOBS['MIRROR']['BATCH'] is 20000; it must be at most 10000."),
        ({"RETENTION": -1}, "DJANGO_JOBS['MIRROR']['RETENTION'] is -1; it must be a number of seconds > 0 or None."),
        ({"ENABLED": "yes"}, "DJANGO_JOBS['MIRROR']['ENABLED'] is 'yes'; it must be True or False."),
        ({"BATCHES": 10}, "Unknown key 'BATCHES' in DJANGO_JOBS['MIRROR']. Did you mean 'BATCH'?"),
        ([1], "DJANGO_JOBS['MIRROR'] is [1]; it must be a dict."),
        ({"NICE": 25}, "DJANGO_JOBS['MIRROR']['NICE'] is 25; it must be a whole number from 0 to 19."),
        ({"LINGER": -0.1}, ("DJANGO_JOBS['MIRROR']['LINGER'] is -0.1; it must be a number of seconds from 0 to 1. "
                            "Use e.g. 0.1 (the default")),
        ({"LINGER": 5}, "DJANGO_JOBS['MIRROR']['LINGER'] is 5; it must be a number of seconds from 0 to 1."),
        ({"LINGER": True}, "DJANGO_JOBS['MIRROR']['LINGER'] is True; it must be a number of seconds from 0 to 1."),
        ({"LINGER": "soon"}, "DJANGO_JOBS['MIRROR']['LINGER'] is 'soon'; it must be a number of seconds from 0 to 1."),
        ({"LINGERS": 0.2}, "Unknown key 'LINGERS' in DJANGO_JOBS['MIRROR']. Did you mean 'LINGER'?"),
    ],
)
def test_bad_mirror_settings_are_refused_with_a_clear_message_and_a_check_error(settings, jobs_settings, value, message):
    from django.core.checks import run_checks

    from django_jobs.conf import SettingError, get_settings

    settings.DJANGO_JOBS = {**jobs_settings, "MIRROR": value}
    with pytest.raises(SettingError) as caught:
        get_settings()
    assert str(caught.value).startswith(message)
    errors = [m for m in run_checks(tags=["django_jobs"]) if m.id == "django_jobs.E005"]
    assert [m.msg for m in errors] == [caught.value.problem]


def test_a_partial_mirror_setting_keeps_the_other_defaults(settings, jobs_settings):
    from django_jobs.conf import get_settings

    settings.DJANGO_JOBS = {**jobs_settings, "MIRROR": {"RETENTION": None, "BATCH": "50"}}
    assert get_settings().mirror == {"ENABLED": True, "RETENTION": None, "BATCH": 50, "PRUNE_INTERVAL": 3600.0, "CLAIM_AFTER": 30.0, "NICE": 10,
                                    "MAX_LAG": 1_000_000, "HOLD": 600.0, "LINGER": 0.1}


@pytest.mark.parametrize(("value", "expected"), [(0, 0.0), ("0.25", 0.25), (1, 1.0)])
def test_the_linger_setting_takes_seconds_from_0_to_1_and_reaches_the_mirror(settings, jobs_settings, value, expected):
    from django_jobs.conf import get_settings

    settings.DJANGO_JOBS = {**jobs_settings, "MIRROR": {"LINGER": value}}
    assert get_settings().mirror["LINGER"] == expected
    assert mirror.Mirror(["default"]).linger == expected


def test_the_run_loop_prunes_old_rows_by_itself(engine):
    from tests.redis_server import wait_until

    JobRecord.objects.create(job_id="old", queue="default", name="n", state="completed",
                             finished_at=timezone.now() - timedelta(days=30))
    JobRecord.objects.create(job_id="new", queue="default", name="n", state="completed", finished_at=timezone.now())
    stop = threading.Event()
    thread = threading.Thread(target=run_loop, args=(mirror.Mirror(), stop))
    thread.start()
    try:
        # ~1 s here; 30 s for a loaded machine (a fresh-clone run at load 17 overran 10 s).
        wait_until(settled(lambda: not JobRecord.objects.filter(pk="old").exists()), 30, message="the old row pruned")
    finally:
        stop.set()
        thread.join(10)
    assert list(JobRecord.objects.values_list("pk", flat=True)) == ["new"]


def test_a_resync_that_fails_is_retried_until_it_succeeds(engine, r):
    from tests.testapp.jobs import add

    add.enqueue(0, 0)
    loop = mirror.Mirror(["default"])
    loop.drain()
    ids = [add.enqueue(i, 1).id for i in range(3)]
    r.xtrim(engine.keys("default").events, maxlen=1, approximate=False)
    with database_away():
        with pytest.raises(Exception):  # noqa: B017 - whatever the database driver raises
            loop.drain()  # the gap is seen, the resync fails: the database is away
    loop.drain()
    assert loop.resyncs == 1 and set(ids) <= set(mirrored_rows())


def test_pending_entries_trimmed_before_they_were_written_trigger_a_resync(engine, r):
    from tests.testapp.jobs import add

    ids = [add.enqueue(i, 2).id for i in range(3)]
    crashed = mirror.Mirror(["default"], consumer="host-a")
    crashed._ensure("default")
    assert len(engine.mirror_read("default", MIRROR_GROUP, "host-a", count=100).entries) == 3  # then it died
    add.enqueue(9, 9)
    r.xtrim(engine.keys("default").events, maxlen=1, approximate=False)  # its pending entries are gone
    restarted = mirror.Mirror(["default"], consumer="host-a")
    restarted.drain()
    assert restarted.resyncs == 1
    assert set(ids) <= set(mirrored_rows()) and len(mirrored_rows()) == 4
    assert pending(engine) == 0


# -- deferring the rows of waiting jobs while behind (mirror.DEFER_MAX) ---------------------


def behind_mirror(**attrs) -> mirror.Mirror:
    """A mirror whose reads of 2 entries come back full at once (it is "behind" from its first read)."""
    loop = mirror.Mirror(["default"])
    loop.batch = 2
    for name, value in attrs.items():
        setattr(loop, name, value)
    return loop


def test_while_behind_a_waiting_job_s_row_waits_for_its_next_event_and_each_job_is_written_once(engine, work):
    from tests.testapp.jobs import add

    ids = [add.enqueue(i, i).id for i in range(10)]  # 10 entries of one job each
    loop = behind_mirror()
    assert loop.step() == 0  # a full read of 2 waiting jobs: deferred, not acknowledged
    assert loop.deferred == 2 and pending(engine) == 2 and not JobRecord.objects.exists()
    work()  # they start and finish
    written = 0
    while True:
        written += loop.step()
        if not loop._read:
            break
    assert written == 10  # one row write per job: no waiting row rewritten moments later
    assert mirrored_rows() == expected_rows(engine) and set(mirrored_rows()) == set(ids)
    assert {r["state"] for r in mirrored_rows().values()} == {"completed"}
    assert pending(engine) == 0 and not loop._deferred["default"] and not loop._defer_counts["default"]


def test_deferred_rows_are_written_once_the_queue_is_caught_up(engine):
    from tests.testapp.jobs import add

    ids = [add.enqueue(i, i).id for i in range(10)]
    loop = behind_mirror()
    assert loop.drain() == 10  # the last read is not full: every deferred job is written then
    assert loop.deferred > 0 and set(mirrored_rows()) == set(ids)
    assert {r["state"] for r in mirrored_rows().values()} == {"waiting"} and pending(engine) == 0


def test_deferred_rows_wait_through_a_short_read_and_are_written_when_the_queue_goes_quiet(engine):
    from tests.testapp.jobs import add

    ids = [add.enqueue(i, i).id for i in range(3)]
    loop = behind_mirror()
    loop.step()  # a full read of 2: deferred
    loop.step()  # a short read (1 of 4): no longer behind, the new job is written; the 2 deferred stay
    assert list(loop._deferred["default"]) == ids[:2] and set(mirrored_rows()) == {ids[2]}
    assert loop.step() == 2  # a read that finds nothing new: the deferred jobs are written
    assert set(mirrored_rows()) == set(ids) and pending(engine) == 0 and not loop._deferred["default"]


def test_deferred_rows_kept_back_longer_than_defer_for_are_written_once_caught_up(engine):
    from tests.testapp.jobs import add

    ids = [add.enqueue(i, i).id for i in range(3)]
    loop = behind_mirror(defer_for=3600.0)
    loop.step()  # 2 deferred
    loop.step()  # a short read: kept back (their first entry is younger than DEFER_FOR)
    assert list(loop._deferred["default"]) == ids[:2]
    ids.append(add.enqueue(3, 3).id)
    loop.defer_for = -1.0  # as if they had waited long (any age): at the next short read they are written
    assert loop.step() == 3
    assert set(mirrored_rows()) == set(ids) and not loop._deferred["default"] and pending(engine) == 0


def test_a_mirror_at_its_cap_on_deferred_jobs_writes_the_newest_at_once(engine):
    from tests.testapp.jobs import add

    ids = [add.enqueue(i, i).id for i in range(12)]
    loop = behind_mirror(defer_max=3)
    loop.step()  # 2 deferred
    loop.step()  # 4 more: 1 deferred (the cap, 3), the 3 newest written now; the oldest start first
    assert list(loop._deferred["default"]) == ids[:3] and loop.deferred == 3
    assert set(mirrored_rows()) == set(ids[3:6]) and {r["state"] for r in mirrored_rows().values()} == {"waiting"}
    loop.drain()
    assert set(mirrored_rows()) == set(ids) and pending(engine) == 0


def test_deferred_entries_stay_well_inside_max_lag(engine):
    from tests.testapp.jobs import add

    ids = [add.enqueue(i, i).id for i in range(8)]  # an entry each
    loop = behind_mirror(max_lag=4)
    loop.step()  # 2 entries kept back: half of MAX_LAG
    loop.step()  # no more: the 4 read now are written (Redis' cap on the stream must not trim what is kept back)
    assert list(loop._deferred["default"]) == ids[:2] and len(loop._defer_counts["default"]) == 2
    assert set(mirrored_rows()) == set(ids[2:6])
    loop.drain()
    assert set(mirrored_rows()) == set(ids) and pending(engine) == 0


def test_the_cap_on_deferred_jobs_counts_every_queue(engine):
    from tests.testapp.jobs import add

    ids = [add.using(queue_name=queue).enqueue(i, i).id for queue in ("default", "high") for i in range(6)]
    loop = mirror.Mirror(["default", "high"])
    loop.batch, loop.defer_max = 2, 3
    loop.step()  # 2 deferred on default, then 2 on high: 4, past 3 (high writes its own)
    assert sum(len(jobs) for jobs in loop._deferred.values()) <= 3
    loop.drain()
    assert set(mirrored_rows()) == set(ids) and pending(engine, "default") == pending(engine, "high") == 0


def test_a_mirror_killed_while_deferring_rows_writes_them_on_restart(engine):
    from tests.testapp.jobs import add

    ids = [add.enqueue(i, i).id for i in range(4)]
    loop = behind_mirror(consumer="host-a")
    loop.step()
    assert loop.deferred == 2 and pending(engine) == 2 and not JobRecord.objects.exists()
    # It dies; the same host starts again: its own pending entries first, then the rest.
    assert mirror.Mirror(["default"], consumer="host-a").drain() == 4
    assert set(mirrored_rows()) == set(ids) and pending(engine) == 0


def test_a_failed_write_while_deferring_rows_loses_no_entry(engine, work):
    from tests.testapp.jobs import add

    ids = [add.enqueue(i, 1).id for i in range(6)]
    loop = behind_mirror()
    loop.step()  # 2 deferred
    work()
    with database_away():
        with pytest.raises(Exception):  # noqa: B017 - whatever the database driver raises
            loop.step()  # would write the deferred jobs (they finished): refused, nothing acknowledged
    loop.drain()
    assert mirrored_rows() == expected_rows(engine) and set(mirrored_rows()) == set(ids)
    assert {r["state"] for r in mirrored_rows().values()} == {"completed"}
    assert pending(engine) == 0 and not loop._deferred["default"] and not loop._defer_counts["default"]
