"""Jobs used by the jobs_lua tests."""

from __future__ import annotations

from django_jobs import job  # noqa: F401
