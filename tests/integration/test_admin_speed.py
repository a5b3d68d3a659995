"""The admin's fast paths still find the right rows: tallies, search kinds, filters, counts, migrations 0005 and 0006.

Timings are measured by ``python -m bench.admin_pages`` (docs/performance.md), never here.
Every test also runs on PostgreSQL (the ``db`` marker; tests/run.sh).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from django_jobs import admin as jobs_admin
from django_jobs.admin import listing
from django_jobs.mirror import aggregates, mirror_once, textsearch
from django_jobs.mirror.rows import error_class_of, upsert
from django_jobs.models import FinishedTally, JobRecord, RunTimeTally
from django_jobs.testing import work_until_empty
from tests.testapp.jobs import add, always_fails

pytestmark = [pytest.mark.db]

CHANGELIST = "admin:django_jobs_jobrecord_changelist"


def row(job_id: str, **values: object) -> dict[str, object]:
    """A row as the mirror writes it (only what the test cares about; the rest are defaults)."""
    now = timezone.now()
    base: dict[str, object] = {"job_id": job_id, "queue": "default", "name": "app.jobs.charge_card", "state": "completed",
                               "enqueued_at": now - timedelta(seconds=5), "finished_at": now - timedelta(seconds=1),
                               "duration": 0.25, "version": 1}
    base.update(values)
    if base.get("error"):
        base.setdefault("error_class", error_class_of(str(base["error"])))
    return base


def tallied() -> dict[tuple[int, str, str], int]:
    """Finished tallies summed per (span, name, state), zero sums left out."""
    out: dict[tuple[int, str, str], int] = {}
    for t in FinishedTally.objects.all():
        out[(t.span, t.name, t.state)] = out.get((t.span, t.name, t.state), 0) + t.n
    return {k: n for k, n in out.items() if n}


def listed(client, **params: str) -> list[str]:
    response = client.get(reverse(CHANGELIST), params)
    assert response.status_code == 200
    return [r.job_id for r in response.context["cl"].result_list]


# -- the dashboard's tallies ---------------------------------------------------------------------


@pytest.mark.django_db
def test_each_finished_job_is_tallied_once_however_often_its_row_is_written():
    upsert([row("a", state="active", finished_at=None, duration=None)], using="default")
    assert tallied() == {}
    upsert([row("a", version=2), row("b", state="failed", error="shop.PaymentDeclined: no", version=2)], using="default")
    upsert([row("a", version=2)], using="default")  # written again: counted once
    upsert([row("b", state="active", finished_at=None, version=1)], using="default")  # an older snapshot: ignored
    expected = {(span, "app.jobs.charge_card", state): 1 for span in aggregates.SPANS for state in ("completed", "failed")}
    assert tallied() == expected
    # An operator's retry: the failed job runs again and completes later; it moves.
    upsert([row("b", state="waiting", finished_at=None, duration=None, version=3)], using="default")
    upsert([row("b", state="completed", version=4, finished_at=timezone.now())], using="default")
    assert tallied() == {(span, "app.jobs.charge_card", "completed"): 2 for span in aggregates.SPANS}
    assert sum(RunTimeTally.objects.filter(span=1).values_list("n", flat=True)) == 2
    # A recount from the rows gives the same tallies.
    before = tallied()
    aggregates.rebuild()
    assert tallied() == before


@pytest.mark.django_db
def test_the_slots_are_the_charts_half_open_ranges():
    from datetime import UTC, datetime

    assert aggregates.slot_of(datetime(2026, 1, 1, 10, 1, tzinfo=UTC), 1) == datetime(2026, 1, 1, 10, 0, tzinfo=UTC)
    assert aggregates.slot_of(datetime(2026, 1, 1, 10, 0, 0, 1, tzinfo=UTC), 1) == datetime(2026, 1, 1, 10, 0, tzinfo=UTC)
    for seconds in (0.00005, 0.003, 0.25, 1.0, 42.0, 4000.0):
        low, high = aggregates.bucket_bounds(aggregates.bucket_of(seconds))
        assert low < seconds <= high


@pytest.mark.django_db
def test_the_dashboard_counts_what_the_mirror_wrote_from_redis():
    add.enqueue_many([(i, i) for i in range(7)])
    always_fails.using(attempts=1).enqueue_many([() for _ in range(3)])
    work_until_empty()
    mirror_once()
    data = jobs_admin.dashboard_data("hour")
    assert (data["completed"], data["failed"]) == (7, 3)
    assert data["completed"] == JobRecord.objects.filter(state="completed").count()
    names = {n["name"]: (n["count"], n["failed"]) for n in data["names"]}
    assert names == {add.module_path: (7, 0), always_fails.module_path: (3, 3)}
    assert jobs_admin.dashboard_data("day")["failed"] == 3


@pytest.mark.django_db
def test_old_tallies_are_pruned():
    old = timezone.now() - aggregates.KEEP - timedelta(hours=1)
    FinishedTally.objects.create(span=1, start=old, queue="default", name="x", state="completed", n=1)
    RunTimeTally.objects.create(span=1, start=old, name="x", bucket=3, n=1)
    assert aggregates.prune() == 2


# -- search ----------------------------------------------------------------------------------------


@pytest.fixture
def searchable():
    """Rows of three job names, errors of two classes, arguments; returns their ids by role."""
    now = timezone.now()
    rows = [
        row("pay1", name="tests.testapp.jobs.add", args=[1, "user-77"], kwargs={"sku": "SKU-00042"},
            enqueued_at=now - timedelta(minutes=3), correlation_id="req-abc"),
        row("pay2", name="tests.testapp.jobs.always_fails", state="failed", enqueued_at=now - timedelta(minutes=2),
            error="shop.payments.PaymentDeclined: card 4242 declined by issuer"),
        row("pay3", name="tests.testapp.jobs.always_fails", state="failed", enqueued_at=now - timedelta(minutes=1),
            error="requests.exceptions.ConnectionError: max retries exceeded"),
        row("old1", name="gone.module.old_job", enqueued_at=now - timedelta(days=3), args=["user-77"]),
    ]
    upsert(rows, using="default")
    return {r["job_id"]: r for r in rows}


@pytest.mark.django_db
def test_each_search_kind_finds_its_rows(admin_client, searchable):
    assert listed(admin_client, q="pay2") == ["pay2"]  # a job id
    assert listed(admin_client, q="req-abc") == ["pay1"]  # a correlation id
    assert listed(admin_client, q="always_fails") == ["pay3", "pay2"]  # a short name, newest first
    assert listed(admin_client, q="tests.testapp.jobs.a") == ["pay3", "pay2", "pay1"]  # a name prefix: several names
    assert listed(admin_client, q="gone.module") == ["old1"]  # a stored name no longer registered
    assert listed(admin_client, q="PaymentDeclined") == ["pay2"]  # an exception class
    assert listed(admin_client, q="shop.payments.PaymentDeclined") == ["pay2"]  # with its module
    assert listed(admin_client, q="declined by ISSUER") == ["pay2"]  # error text, any case
    assert listed(admin_client, q="SKU-00042") == ["pay1"]  # a keyword argument's value
    assert listed(admin_client, q="user-77") == ["pay1", "old1"]  # a positional one (within the newest rows)
    assert listed(admin_client, q="no-such-thing") == []
    # Search and filters combine.
    assert listed(admin_client, q="always_fails", state__exact="failed", has_error="yes") == ["pay3", "pay2"]
    assert listed(admin_client, q="ConnectionError", state__exact="completed") == []


@pytest.mark.django_db
def test_without_trigram_indexes_the_text_search_reads_only_the_newest_rows(admin_client, searchable, monkeypatch):
    monkeypatch.setattr(listing, "TEXT_SEARCH_ROWS", 3)
    if connection.vendor == "postgresql":  # migration 0006 made them: the search reads every row
        assert textsearch.has_trigram_indexes(connection)
        assert listed(admin_client, q="user-77") == ["pay1", "old1"]
        assert listed(admin_client, q="77") == ["pay1"]  # two characters: no trigram, the bounded scan
        textsearch.drop_trigram_indexes(connection)  # rolled back with the test's transaction
        textsearch._seen.clear()
        assert not textsearch.has_trigram_indexes(connection)
    assert listed(admin_client, q="user-77") == ["pay1"]  # old1 is the fourth newest


@pytest.mark.django_db
@pytest.mark.skipif(connection.vendor != "postgresql", reason="the trigram indexes are PostgreSQL's (SQLite keeps the bounded scan)")
def test_on_postgresql_the_text_search_finds_a_match_older_than_the_newest_20000_rows(admin_client):
    now = timezone.now()
    old = JobRecord(job_id="oldest", queue="default", name="app.jobs.charge_card", state="failed", enqueued_at=now - timedelta(days=30),
                    error="shop.payments.PaymentDeclined: card 4242 declined by issuer (code 51)", error_class="PaymentDeclined",
                    args=[7, "user-31337"], kwargs={"sku": "SKU-04711"})
    newer = [JobRecord(job_id=f"n{i:05d}", queue="default", name="app.jobs.charge_card", state="completed", args=[i, f"user-{i}"],
                       enqueued_at=now - timedelta(seconds=i)) for i in range(listing.TEXT_SEARCH_ROWS)]
    JobRecord.objects.bulk_create([old, *newer], batch_size=5_000)
    with CaptureQueriesContext(connection) as queries:
        assert listed(admin_client, q="Declined By Issuer") == ["oldest"]  # the error line, any case
    assert not any("LIMIT 1 OFFSET 19999" in q["sql"] for q in queries.captured_queries)  # no bound looked up
    assert listed(admin_client, q="user-31337") == ["oldest"]  # a positional argument
    assert listed(admin_client, q="sku-0471") == ["oldest"]  # part of a keyword argument's value
    assert listed(admin_client, q="declined by issuer", state__exact="completed") == []
    plan = "\n".join(r[0] for r in _explain(JobRecord.objects.filter(error__icontains="declined by issuer")))
    assert "djj_error_trgm" in plan, plan


@pytest.mark.django_db
def test_a_text_search_through_the_trigram_indexes_counts_fewer_rows(admin_client, searchable, monkeypatch):
    monkeypatch.setattr(jobs_admin.jobs, "TEXT_COUNT_CAP", 1)
    response = admin_client.get(reverse(CHANGELIST), {"q": "user-77"})
    assert [r.job_id for r in response.context["cl"].result_list] == ["pay1", "old1"]
    if connection.vendor == "postgresql":  # each counted match is a row read: the count stops at TEXT_COUNT_CAP
        assert response.context["cl"].paginator.count_cap == 1
        assert "More than 1 jobs match" in response.content.decode()
    else:  # the bounded scan counts as any list does
        assert response.context["cl"].paginator.count_cap == jobs_admin.jobs.COUNT_CAP
    assert admin_client.get(reverse(CHANGELIST), {"q": "PaymentDeclined"}).context["cl"].paginator.count_cap == jobs_admin.jobs.COUNT_CAP


def _explain(queryset) -> list[tuple[str]]:
    sql, params = queryset.query.sql_with_params()
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL enable_seqscan = off")  # a tiny table: ask whether the index can serve it at all
        cursor.execute(f"EXPLAIN {sql}", params)
        return cursor.fetchall()


@pytest.mark.django_db
def test_a_name_search_over_several_names_keeps_the_newest_of_each(admin_client, monkeypatch):
    monkeypatch.setattr(jobs_admin.jobs, "COUNT_CAP", 2)
    now = timezone.now()
    upsert([row(f"{n}{i}", name=f"tests.testapp.jobs.{n}", enqueued_at=now - timedelta(minutes=i * 2 + (n == "always_fails")))
            for n in ("add", "always_fails") for i in range(5)], using="default")
    shown = listed(admin_client, q="tests.testapp.jobs.a")
    assert shown[:3] == ["add0", "always_fails0", "add1"]  # the newest of the union, in order
    assert "More than 2 jobs match" in admin_client.get(reverse(CHANGELIST), {"q": "tests.testapp.jobs.a"}).content.decode()


# -- filters and counts ------------------------------------------------------------------------------


@pytest.mark.django_db
def test_the_error_filter_and_the_finish_time_filters(admin_client, searchable):
    now = timezone.now()
    upsert([row("late", finished_at=now - timedelta(seconds=10), enqueued_at=now - timedelta(hours=2)),
            row("early", finished_at=now - timedelta(minutes=40), enqueued_at=now - timedelta(minutes=41)),
            row("long", finished_at=now - timedelta(hours=3), enqueued_at=now - timedelta(hours=3, minutes=1))], using="default")
    assert set(listed(admin_client, has_error="yes")) == {"pay2", "pay3"}
    assert "pay2" not in listed(admin_client, has_error="no")
    # Filtered by finish time, the latest finished comes first (not the latest enqueued).
    recent = listed(admin_client, finished_within="1h")
    assert recent.index("late") < recent.index("early") and "long" not in recent
    assert "long" in listed(admin_client, finished_within="24h")
    since = (now - timedelta(minutes=30)).isoformat()
    shown = listed(admin_client, finished_at__gt=since, state__exact="completed")
    assert set(shown) == {"pay1", "old1", "late"} and shown[-1] == "late"
    assert set(listed(admin_client, finished_within="1h", o="-3")) == set(recent)  # a column's ordering still applies


@pytest.mark.django_db
def test_the_count_reads_no_row_and_is_capped(admin_client, searchable, monkeypatch):
    monkeypatch.setattr(jobs_admin.jobs, "COUNT_CAP", 2)
    with CaptureQueriesContext(connection) as queries:
        response = admin_client.get(reverse(CHANGELIST), {"has_error": "yes"})
    counts = [q["sql"] for q in queries.captured_queries if "COUNT(" in q["sql"].upper()]
    assert counts and all("LIMIT 3" in sql and "ORDER BY" not in sql.upper() for sql in counts), counts
    assert response.context["cl"].result_count == 2


# -- migration 0005 ------------------------------------------------------------------------------------


@contextmanager
def all_migrations_applied_after() -> Iterator[None]:
    """However the block ends, every migration of django_jobs is applied again after it.

    The migration tests run outside a transaction (nothing rolls them back) and the worker's later
    tests use the same test database: a failure half-way (a migration, an assertion, a dropped
    connection) must not leave it without a table, a column or the trigram indexes. A connection
    the failure left unusable is replaced first; the trigram indexes are looked up again after.
    """
    try:
        yield
    finally:
        if connection.connection is not None and not connection.is_usable():
            connection.close()
        executor = MigrationExecutor(connection)
        executor.migrate(executor.loader.graph.leaf_nodes("django_jobs"))
        textsearch._seen.clear()


@pytest.mark.django_db(transaction=True)
def test_migration_0005_fills_the_error_class_and_the_tallies():
    with all_migrations_applied_after():
        executor = MigrationExecutor(connection)
        executor.migrate([("django_jobs", "0004_jobrecord_earlier_errors")])
        old = executor.loader.project_state([("django_jobs", "0004_jobrecord_earlier_errors")]).apps.get_model("django_jobs", "JobRecord")
        now = timezone.now()
        old.objects.create(job_id="m1", queue="default", name="app.a", state="failed", finished_at=now, duration=1.5,
                           error="shop.payments.PaymentDeclined: no", enqueued_at=now)
        old.objects.create(job_id="m2", queue="default", name="app.a", state="completed", finished_at=now, duration=0.5, enqueued_at=now)
        executor = MigrationExecutor(connection)
        executor.loader.build_graph()
        executor.migrate(executor.loader.graph.leaf_nodes("django_jobs"))
    assert JobRecord.objects.get(pk="m1").error_class == "PaymentDeclined"
    assert JobRecord.objects.get(pk="m2").error_class == ""
    assert tallied() == {(span, "app.a", state): 1 for span in aggregates.SPANS for state in ("completed", "failed")}
    JobRecord.objects.all().delete()
    FinishedTally.objects.all().delete()
    RunTimeTally.objects.all().delete()


# -- migration 0006 ------------------------------------------------------------------------------------


def _trigram_indexes() -> set[str]:
    if connection.vendor != "postgresql":
        return set()
    with connection.cursor() as cursor:
        cursor.execute("SELECT indexname FROM pg_indexes WHERE tablename = %s AND indexname LIKE %s", [JobRecord._meta.db_table, "%_trgm"])
        return {r[0] for r in cursor.fetchall()}


@pytest.mark.django_db(transaction=True)
def test_migration_0006_applies_and_reverses_on_this_database():
    expected = {name for name, _ in textsearch.TRIGRAM_INDEXES} if connection.vendor == "postgresql" else set()
    with all_migrations_applied_after():
        executor = MigrationExecutor(connection)
        executor.migrate([("django_jobs", "0005_speed_search_tallies")])
        assert _trigram_indexes() == set()
        textsearch._seen.clear()
        assert not textsearch.has_trigram_indexes(connection)
        executor = MigrationExecutor(connection)
        executor.loader.build_graph()
        executor.migrate([("django_jobs", "0006_text_search_trigram")])
        assert _trigram_indexes() == expected
        assert textsearch.has_trigram_indexes(connection) == (connection.vendor == "postgresql")
    assert _trigram_indexes() == expected


@pytest.mark.django_db
@pytest.mark.skipif(connection.vendor != "postgresql", reason="CREATE EXTENSION is PostgreSQL's")
def test_a_user_who_may_not_create_the_extension_still_migrates():
    """No pg_trgm and no right to create it: a note instead of an error, no index, the bounded search."""
    # A role is the cluster's, not the database's: named after this run's (and worker's) test
    # database, so that another test run on the same server never meets it.
    role = connection.ops.quote_name(f"djj_no_ext_{connection.settings_dict['NAME']}"[:63])
    with connection.cursor() as cursor:  # all of it rolled back with the test's transaction
        cursor.execute("DROP EXTENSION pg_trgm CASCADE")  # the indexes go with it
        cursor.execute(f"CREATE ROLE {role} NOLOGIN")
        cursor.execute(f"GRANT ALL ON {JobRecord._meta.db_table} TO {role}")
        cursor.execute(f"SET LOCAL ROLE {role}")
    textsearch._seen.clear()
    try:
        note = textsearch.create_trigram_indexes(connection)
        assert "pg_trgm extension could not be created" in note and "permission denied" in note, note
        assert not textsearch.has_trigram_indexes(connection)
        assert _trigram_indexes() == set()
    finally:
        with connection.cursor() as cursor:
            cursor.execute("RESET ROLE")
