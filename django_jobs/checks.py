"""Django system checks for DJANGO_JOBS (ids django_jobs.E0xx / W0xx)."""

from __future__ import annotations

import difflib
from typing import Any

from django.core import checks

from django_jobs.conf import DEFAULTS, QUEUE_OPTION_KEYS, user_settings


@checks.register("django_jobs")
def check_settings(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    """Check the DJANGO_JOBS dict (no network I/O)."""
    from django.conf import settings

    errors: list[checks.CheckMessage] = []
    raw_value = getattr(settings, "DJANGO_JOBS", None)
    if raw_value is not None and not isinstance(raw_value, dict):
        return [checks.Error("DJANGO_JOBS must be a dict.", hint="DJANGO_JOBS = {'QUEUES': {'default': {}}}", id="django_jobs.E000")]
    raw = user_settings()
    for key in raw:
        if key not in DEFAULTS:
            close = difflib.get_close_matches(key, DEFAULTS, n=1)
            errors.append(checks.Error(
                f"Unknown DJANGO_JOBS key {key!r}.",
                hint=f"Did you mean {close[0]!r}?" if close else f"Valid keys: {', '.join(sorted(DEFAULTS))}.",
                id="django_jobs.E001",
            ))
    return errors
