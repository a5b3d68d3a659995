# Written by hand (issue 18): PostgreSQL only; a no-op on every other database.

from typing import Any

from django.db import migrations

from django_jobs.mirror.textsearch import create_trigram_indexes, drop_trigram_indexes


def forwards(apps: Any, schema_editor: Any) -> None:
    """The admin's text search indexes (pg_trgm GIN) on PostgreSQL, skipped with a note when pg_trgm cannot be had."""
    note = create_trigram_indexes(schema_editor.connection)
    if note:
        print(f"\n  django_jobs 0006: {note}")


def backwards(apps: Any, schema_editor: Any) -> None:
    drop_trigram_indexes(schema_editor.connection)


class Migration(migrations.Migration):

    # CREATE EXTENSION may fail (no privilege): each step runs in its own savepoint.
    atomic = True

    dependencies = [
        ('django_jobs', '0005_speed_search_tallies'),
    ]

    operations = [
        migrations.RunPython(forwards, backwards, elidable=False),
    ]
