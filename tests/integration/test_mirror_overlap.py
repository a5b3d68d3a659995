"""Overlapped commits (issue 18): the writer thread commits a batch while the mirror prepares the next.

Real Redis, real PostgreSQL (``DJJ_TEST_DB=postgres``; on SQLite the mirror commits on its own
thread, :func:`~django_jobs.mirror.consumer.commits_overlap`, and these tests are skipped, but
the last one). The database is made to refuse or to hold a commit from another connection.
"""

from __future__ import annotations

import threading

import pytest
from django.db import connection, connections, transaction

from django_jobs import mirror
from django_jobs.engine.keys import MIRROR_GROUP
from django_jobs.engine.streams import entry_job_ids, stream_id_key
from django_jobs.mirror import aggregates
from django_jobs.mirror.consumer import commits_overlap
from django_jobs.models import FinishedTally, JobRecord, RunTimeTally
from tests.integration.test_mirror import expected_rows, mirrored_rows, run_loop
from tests.redis_server import wait_until

pytestmark = [pytest.mark.db, pytest.mark.django_db(transaction=True)]

JOBS = 40
VICTIM = 25  #: the job whose row the database refuses (its batch is neither the first nor the last)


@pytest.fixture
def postgres():
    if connection.vendor != "postgresql":
        pytest.skip("overlapped commits: PostgreSQL (DJJ_TEST_DB=postgres)")


def small_batches(**attrs) -> mirror.Mirror:
    """A mirror of ``default`` whose transactions hold at most 10 jobs (several batches for a few dozen jobs)."""
    loop = mirror.Mirror(["default"], **attrs)
    loop.batch = loop.catch_up = 10
    return loop


def finished_jobs(work, count=JOBS) -> list[str]:
    """``count`` jobs, one stream entry per event, all completed before the mirror reads any."""
    from tests.testapp.jobs import add

    ids = [add.enqueue(i, i).id for i in range(count)]
    work()
    return ids


def pending_entries(engine, queue="default") -> set[str]:
    """The ids of the entries read by the mirror group and not acknowledged (none before the group exists)."""
    if engine.mirror_group_info(queue, MIRROR_GROUP) is None:
        return set()
    return {p["message_id"] for p in engine.client.xpending_range(engine.keys(queue).events, MIRROR_GROUP, "-", "+", 10_000)}


def jobs_of(engine, entry_ids, queue="default") -> set[str]:
    entries = dict(engine.client.xrange(engine.keys(queue).events))
    return {job_id for entry_id in entry_ids for job_id in entry_job_ids(entries[entry_id])}


def all_entries(engine, queue="default") -> list[str]:
    return [entry_id for entry_id, _ in engine.client.xrange(engine.keys(queue).events)]


def acknowledged(engine, queue="default") -> set[str]:
    """The entries the mirror group read and acknowledged (delivered, no longer pending)."""
    pending = pending_entries(engine, queue)  # first: an entry acknowledged after this is not counted
    last = stream_id_key(engine.mirror_group_info(queue, MIRROR_GROUP)["last-delivered-id"])
    return {entry_id for entry_id in all_entries(engine, queue) if stream_id_key(entry_id) <= last} - pending


def tallies() -> tuple[list, list]:
    return (sorted(FinishedTally.objects.values_list("span", "start", "queue", "name", "state", "n")),
            sorted(RunTimeTally.objects.values_list("span", "start", "name", "bucket", "n")))


def assert_exact(engine, ids):
    """Every job has its row as Redis holds it, nothing is pending, the tallies equal a recount from the rows."""
    assert set(mirrored_rows()) == set(ids) and mirrored_rows() == expected_rows(engine, ("default",))
    assert {r["state"] for r in mirrored_rows().values()} == {"completed"}
    assert not pending_entries(engine)
    incremental = tallies()
    aggregates.rebuild()
    assert incremental == tallies() and sum(row[-1] for row in incremental[0] if row[0] == 1) == len(ids)


def refuse(job_id: str):
    """A trigger that makes PostgreSQL refuse any write of ``job_id``'s row (``drop_refusal`` ends it)."""
    table = connection.ops.quote_name(JobRecord._meta.db_table)
    with connection.cursor() as cursor:
        cursor.execute(
            "CREATE FUNCTION djj_refuse() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
            "RAISE EXCEPTION 'refused: %', NEW.job_id; END $$"
        )
        cursor.execute(f"CREATE TRIGGER djj_refuse BEFORE INSERT OR UPDATE ON {table} FOR EACH ROW "
                       f"WHEN (NEW.job_id = '{job_id}') EXECUTE FUNCTION djj_refuse()")


def drop_refusal():
    table = connection.ops.quote_name(JobRecord._meta.db_table)
    with connection.cursor() as cursor:
        cursor.execute(f"DROP TRIGGER IF EXISTS djj_refuse ON {table}")
        cursor.execute("DROP FUNCTION IF EXISTS djj_refuse()")


def test_a_commit_that_fails_while_the_next_batch_is_prepared_loses_nothing(postgres, engine, work):
    """The batch naming the victim fails in the writer while the next one is prepared: that one is
    dropped unsent, nothing of either is acknowledged, and the mirror, having forgotten what it
    noted, reads its pending entries again once the database takes the row."""
    ids = finished_jobs(work)
    loop = small_batches()
    prepared = []
    real_prepare = loop._prepare

    def prepare(queue, entries, **kwargs):
        batch = real_prepare(queue, entries, **kwargs)
        prepared.append((batch, [entry_id for entry_id, _ in entries]))
        return batch

    loop._prepare = prepare
    refuse(ids[VICTIM])
    try:
        with pytest.raises(Exception, match="refused"):
            loop.drain()
        failed = next(i for i, (batch, _) in enumerate(prepared) if any(r["job_id"] == ids[VICTIM] for r in batch.rows))
        # The next batch was prepared before the failure came back (the writer committed meanwhile) ...
        assert len(prepared) == failed + 2 and loop.overlapped == failed + 1
        dropped = prepared[-1][0]
        assert dropped.rows and not JobRecord.objects.filter(job_id__in=[r["job_id"] for r in dropped.rows]).exists()
        # ... and neither it nor the failed one is acknowledged: every entry acknowledged has its rows.
        assert set(prepared[failed][1]) | set(prepared[-1][1]) <= pending_entries(engine)
        acked = acknowledged(engine)
        assert acked and jobs_of(engine, acked) <= set(JobRecord.objects.values_list("job_id", flat=True))
        # What it noted at preparation is forgotten: the pending entries are read again, from the first.
        assert not loop._written and not loop._pending_after and not loop._no_pending
    finally:
        drop_refusal()
    loop.drain()
    assert_exact(engine, ids)


@pytest.mark.parametrize("topology", ["server", "cluster"], indirect=True)
def test_acknowledgements_follow_commits_held_by_another_connection(postgres, engine, work):
    """While another connection locks the table, the first batch's commit waits in the writer
    thread; the mirror reads and prepares the next batch meanwhile (the overlap), and acknowledges
    nothing until the commit is through."""
    ids = finished_jobs(work, 30)
    loop = small_batches()
    threads = []
    real_commit = loop._commit

    def commit(batch):
        threads.append(threading.current_thread().name)
        real_commit(batch)

    loop._commit = commit
    table = connection.ops.quote_name(JobRecord._meta.db_table)
    done = threading.Event()
    result = []

    def drain():
        try:
            result.append(loop.drain())
        except Exception as exc:  # noqa: BLE001 - shown by the assertion below
            result.append(exc)
        finally:
            connections["default"].close()
            done.set()

    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute(f"LOCK TABLE {table} IN EXCLUSIVE MODE")  # reads go on, writes wait
        worker = threading.Thread(target=drain)
        worker.start()
        # The first batch's 10 entries wait for their commit; the mirror reads the next 10 meanwhile
        # (a mirror that commits before it reads on would stay at 10).
        wait_until(lambda: len(pending_entries(engine)) >= 20, message="the next batch read while the commit waits")
        assert not done.is_set() and threads and threads[0].startswith("djj-mirror-writer")
        delivered = set(all_entries(engine)[: len(pending_entries(engine))])
        assert pending_entries(engine) == delivered  # read, none acknowledged
        assert not JobRecord.objects.exists()
    worker.join(30)
    assert result == [len(ids)]
    assert all(name.startswith("djj-mirror-writer") for name in threads) and loop.overlapped >= 3
    assert_exact(engine, ids)


def test_the_run_loop_backs_off_on_a_failed_commit_and_writes_everything_once_the_database_takes_it(postgres, engine, work):
    """run() keeps a commit in flight across steps: its failure comes back into the backoff path;
    the loop retries from its pending entries, and finishes (acknowledges) before it stops."""
    ids = finished_jobs(work)
    loop = small_batches()
    forgot = []
    real_forget = loop._forget

    def forget():
        forgot.append(threading.current_thread().name)
        real_forget()

    loop._forget = forget
    refuse(ids[VICTIM])
    stop = threading.Event()
    thread = threading.Thread(target=run_loop, args=(loop, stop), name="mirror-run")
    thread.start()
    try:
        try:
            wait_until(lambda: len(forgot) >= 2, timeout=20, message="failed commits, retried")
            assert set(forgot) == {"mirror-run"} and loop.overlapped > 0
            assert not JobRecord.objects.filter(job_id=ids[VICTIM]).exists()
            acked = acknowledged(engine)
            assert jobs_of(engine, acked) <= set(JobRecord.objects.values_list("job_id", flat=True))
        finally:
            drop_refusal()
        wait_until(lambda: JobRecord.objects.count() == len(ids) and not pending_entries(engine), timeout=30,
                   message="every row after the database took them")
    finally:
        stop.set()
        thread.join(30)
    assert_exact(engine, ids)


def test_commits_overlap_only_off_sqlite_and_outside_a_transaction():
    assert commits_overlap("default") is (connection.vendor != "sqlite")
    with transaction.atomic():
        assert not commits_overlap("default")  # the caller's transaction: written in it, as before
