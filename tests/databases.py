"""The DATABASES setting of the test suite (tests/settings.py) and of the admin bench (bench/admin_settings.py).

PostgreSQL on 127.0.0.1:5432 as user ``postgres`` unless ``DJJ_PG_HOST`` / ``DJJ_PG_PORT`` /
``DJJ_PG_USER`` say otherwise, or SQLite.
"""

from __future__ import annotations

import os
from typing import Any


def databases(
    *, postgres: bool, pg_name: str, sqlite_name: str, sqlite_options: dict[str, Any], pg_test_name: str | None = None,
) -> dict[str, Any]:
    """Return a DATABASES setting: database ``pg_name`` on PostgreSQL when ``postgres``, else SQLite file ``sqlite_name``.

    ``pg_test_name``: the name of the test database made from it (Django's ``TEST["NAME"]``;
    pytest-django appends ``_gwN`` under pytest-xdist). Default: Django's, ``test_`` + ``pg_name``.
    """
    if postgres:
        return {
            "default": {
                "ENGINE": "django.db.backends.postgresql",
                "NAME": pg_name,
                "USER": os.environ.get("DJJ_PG_USER", "postgres"),
                "HOST": os.environ.get("DJJ_PG_HOST", "127.0.0.1"),
                "PORT": os.environ.get("DJJ_PG_PORT", "5432"),
                **({"TEST": {"NAME": pg_test_name}} if pg_test_name else {}),
            }
        }
    return {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": sqlite_name, "OPTIONS": sqlite_options}}
