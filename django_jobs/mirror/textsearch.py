"""The text search's indexes on PostgreSQL: ``pg_trgm`` GIN indexes on the error line and the arguments.

The admin's search for "anything else" (an error message fragment, an argument value) is a
substring match in any case: ``UPPER(col) LIKE UPPER('%term%')``, as Django writes
``icontains``. A B-tree cannot answer it; a trigram GIN index on the same expression can, for
any row however old. Migration 0006 creates three of them on PostgreSQL when the ``pg_trgm``
extension exists or can be created (:func:`create_trigram_indexes`); without them (SQLite,
another database, or a PostgreSQL user who may not create the extension) the search reads the
newest rows only (:data:`django_jobs.admin.listing.TEXT_SEARCH_ROWS`).

To add them later (say a superuser ran ``CREATE EXTENSION pg_trgm`` after the migration)::

    python manage.py shell -c "from django.db import connection; from django_jobs.mirror.textsearch import create_trigram_indexes; print(create_trigram_indexes(connection) or 'created')"
"""

from __future__ import annotations

from typing import Any

from django.db import DatabaseError, transaction

from django_jobs.models import JobRecord

#: (index name, indexed expression): the expressions are Django's ``icontains`` left-hand sides.
#: None is partial (not even the error's, though most rows have none): ANALYZE then keeps statistics of each whole expression, so the planner knows a
#: common text (it walks the enqueue-time index until a page is full) from a rare one (it reads
#: the index's few matches); a partial index's statistics are not used for that estimate.
TRIGRAM_INDEXES = (
    ("djj_error_trgm", 'UPPER("error")'),
    ("djj_args_trgm", 'UPPER(("args")::text)'),
    ("djj_kwargs_trgm", 'UPPER(("kwargs")::text)'),
)
#: Database aliases whose trigram indexes were seen (they are not dropped while a process runs).
_seen: set[str] = set()


def create_trigram_indexes(connection: Any) -> str:
    """Create ``pg_trgm`` (if missing) and the three trigram indexes; return ``""``, or why they were not created.

    Does nothing on a database other than PostgreSQL. A user without the right to create the
    extension (``pg_trgm`` is a trusted extension since PostgreSQL 13: the database's owner, or
    anyone with CREATE on it, may) gets the reason back instead of an error, and the search keeps
    its bounded scan. Building the indexes on a million rows takes about 25 s, during which the
    mirror's writes to the table wait (they are not lost: the mirror catches up).

    >>> from django.db import connection
    >>> create_trigram_indexes(connection)  # on PostgreSQL with pg_trgm available  # doctest: +SKIP
    ''
    """
    if connection.vendor != "postgresql":
        return ""
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1 FROM pg_extension WHERE extname = 'pg_trgm'")
        have = cursor.fetchone() is not None
    if not have:
        try:
            with transaction.atomic(using=connection.alias), connection.cursor() as cursor:
                cursor.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
        except DatabaseError as exc:
            return (f"the pg_trgm extension could not be created ({str(exc).strip().splitlines()[0]}); the admin's text "
                    "search reads the newest 20,000 jobs only. A superuser can run CREATE EXTENSION pg_trgm; then "
                    "django_jobs.mirror.textsearch.create_trigram_indexes(connection) adds the indexes.")
    table = connection.ops.quote_name(JobRecord._meta.db_table)
    try:
        with transaction.atomic(using=connection.alias), connection.cursor() as cursor:
            for name, expression in TRIGRAM_INDEXES:
                cursor.execute(f"CREATE INDEX IF NOT EXISTS {name} ON {table} USING gin (({expression}) gin_trgm_ops)")
            cursor.execute(f"ANALYZE {table}")  # the expressions' statistics, now
    except DatabaseError as exc:
        return f"the trigram indexes could not be created ({str(exc).strip().splitlines()[0]}); the text search stays bounded."
    return ""


def drop_trigram_indexes(connection: Any) -> None:
    """Drop the trigram indexes (migration 0006 reversed); the extension stays (other tables may use it)."""
    if connection.vendor != "postgresql":
        return
    with connection.cursor() as cursor:
        for name, _ in TRIGRAM_INDEXES:
            cursor.execute(f"DROP INDEX IF EXISTS {name}")
    _seen.discard(connection.alias)


def has_trigram_indexes(connection: Any) -> bool:
    """Whether the database has every valid trigram index (PostgreSQL with migration 0006 fully applied)."""
    if connection.vendor != "postgresql":
        return False
    if connection.alias in _seen:
        return True
    names = [name for name, _ in TRIGRAM_INDEXES]
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
                       "WHERE c.relname = ANY(%s) AND i.indisvalid AND pg_catalog.pg_table_is_visible(c.oid)", [names])
        row = cursor.fetchone()
    if row is not None and row[0] == len(names):
        _seen.add(connection.alias)
        return True
    return False
