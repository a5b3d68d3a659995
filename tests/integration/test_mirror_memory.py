"""The mirror's working set while it catches up (issue 17): chunked transactions, the C heap given back.

Real Redis, real database (SQLite, or PostgreSQL with ``DJJ_TEST_DB=postgres``).
"""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from django_jobs import mirror
from django_jobs.lifeline import libc
from django_jobs.mirror import consumer
from django_jobs.models import JobRecord
from tests.integration.test_mirror import expected_rows, mirrored_rows, pending, run_loop, settled
from tests.redis_server import wait_until

pytestmark = [pytest.mark.db, pytest.mark.django_db(transaction=True)]


class Counting(mirror.Mirror):
    """A mirror that notes each transaction's row count (then commits it as usual)."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.sizes: list[int] = []

    def _commit(self, batch) -> None:
        self.sizes.append(len(batch.rows))
        super()._commit(batch)


def test_the_chunk_is_transaction_jobs_or_batch_if_larger_and_never_more_than_a_read(settings, jobs_settings):
    loop = mirror.Mirror(["default"])
    assert (loop.batch, loop.catch_up, loop.chunk) == (500, 4000, mirror.TRANSACTION_JOBS) == (500, 4000, 1000)
    settings.DJANGO_JOBS = {**jobs_settings, "MIRROR": {"BATCH": 2000}}
    assert mirror.Mirror(["default"]).chunk == 2000
    settings.DJANGO_JOBS = {**jobs_settings, "MIRROR": {"BATCH": 100}}
    assert (mirror.Mirror(["default"]).catch_up, mirror.Mirror(["default"]).chunk) == (800, 800)


def test_a_catching_up_mirror_writes_a_large_read_in_transactions_of_at_most_a_chunk_of_jobs(engine, work):
    from tests.testapp.jobs import add

    ids = [add.enqueue(i, i).id for i in range(30)]  # 90 entries: waiting, active, completed
    work()
    loop = Counting(["default"])
    loop.batch, loop.catch_up, loop.chunk = 40, 120, 10  # reads of 40 then 80 entries, chunks of 10 jobs
    assert loop.drain() == 30
    assert loop.sizes and max(loop.sizes) <= 10  # a read of 40 or 80 entries was never one transaction
    assert sum(loop.sizes) == 30  # each job written once: later chunks skip what earlier ones wrote
    assert mirrored_rows() == expected_rows(engine) and set(mirrored_rows()) == set(ids)
    assert pending(engine) == 0


def _rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


@pytest.mark.skipif(not Path("/proc/self/status").exists() or getattr(libc(), "malloc_trim", None) is None,
                    reason="glibc's malloc_trim on Linux")
def test_release_memory_gives_the_freed_c_heap_back_to_the_system():
    blocks = [bytes(2000) + i.to_bytes(4) for i in range(40_000)]  # ~80 MB of malloc'd objects (> 512 bytes each)
    keep = blocks[-1]  # the heap's top stays in use: free() alone cannot shrink it
    del blocks
    before = _rss_mb()
    assert mirror.release_memory() is True
    after = _rss_mb()
    assert before - after > 40, (before, after)
    assert keep


def test_release_memory_is_a_no_op_without_malloc_trim(monkeypatch):
    monkeypatch.setattr(consumer, "libc", lambda: None)
    assert mirror.release_memory() is False


def test_the_run_loop_releases_memory_and_forgets_old_versions_once_caught_up_after_a_burst(engine, work, monkeypatch):
    from tests.testapp.jobs import add

    monkeypatch.setattr(consumer, "RELEASE_AFTER", 5)
    monkeypatch.setattr(consumer, "WRITTEN_KEPT", 3)
    monkeypatch.setattr(consumer, "release_memory", lambda: True)  # counted by loop.releases
    ids = [add.enqueue(i, i).id for i in range(20)]
    work()
    loop = mirror.Mirror(["default"])
    loop.batch = 10  # reads of 10 then 20 entries: behind, then caught up
    stop = threading.Event()
    thread = threading.Thread(target=run_loop, args=(loop, stop))
    thread.start()
    try:
        wait_until(settled(lambda: JobRecord.objects.filter(state="completed").count() == len(ids)), 20,
                   message="the mirror caught up")
        wait_until(lambda: loop.releases >= 1, 5, message="the mirror released memory")
    finally:
        stop.set()
        thread.join(10)
    assert not thread.is_alive()
    assert loop._unreleased < 5  # what was counted since the last release
    assert 0 < len(loop._written) <= 3  # caught up after a burst: only the newest versions written are kept
    assert mirrored_rows() == expected_rows(engine)


def test_upserts_use_statements_of_powers_of_two_rows_at_most_statement_rows():
    from django_jobs.mirror.rows import MAX_PARAMS, STATEMENT_ROWS, per_statement, statement_sizes

    assert STATEMENT_ROWS == 256 and per_statement(30) == 256 and per_statement(200) == 128  # 30,000 // 200 = 150
    assert per_statement(MAX_PARAMS) == 1
    assert statement_sizes(1000, 256) == [256, 256, 256, 128, 64, 32, 8]
    assert statement_sizes(0, 256) == [] and statement_sizes(1, 256) == [1] and statement_sizes(256, 256) == [256]
    seen: set[int] = set()
    for rows in range(1, 1200):
        sizes = statement_sizes(rows, 256)
        assert sum(sizes) == rows and all(size & (size - 1) == 0 and size <= 256 for size in sizes)
        seen.update(sizes)
    assert seen == {1, 2, 4, 8, 16, 32, 64, 128, 256}  # whatever the batch: 9 statements, each prepared once


def test_a_batch_of_any_size_is_upserted_whole(engine, work):
    from tests.testapp.jobs import add

    ids = [add.enqueue(i, i).id for i in range(300)]
    work()
    loop = Counting(["default"])
    loop.batch = loop.catch_up = loop.chunk = 1000  # one transaction: 300 rows, statements of 256, 32, 8 and 4 rows
    assert loop.drain() == 300 and loop.sizes == [300]
    assert mirrored_rows() == expected_rows(engine) and set(mirrored_rows()) == set(ids)
