"""Jobs used by the jobs_chaos tests."""

from __future__ import annotations

from django_jobs import job  # noqa: F401
