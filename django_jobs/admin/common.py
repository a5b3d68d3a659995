"""What every admin page shares: the engine, the page frame and navigation, progress bars."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from typing import Any, TypeGuard

from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.html import format_html

from django_jobs.admin.redaction import _redact_value
from django_jobs.models import JobRecord

logger = logging.getLogger(__name__)


def _engine() -> Any:
    from django_jobs.engine import get_engine

    return get_engine()


def _ms(value: Any) -> datetime | None:
    try:
        return datetime.fromtimestamp(int(value) / 1000, UTC) if value not in (None, "") else None
    except (TypeError, ValueError):
        return None


def _pretty(value: Any) -> str:
    return json.dumps(value, indent=2, sort_keys=True, default=str)


def progress_html(value: Any) -> str:
    """Return the progress a job reported (``context.set_progress``) as HTML for the admin.

    ``{"done": 40, "total": 100}`` shows as a bar and "40 / 100 (40%)"; anything else as
    compact JSON (at most 80 characters), with secret keys redacted; ``None`` as "-".
    """
    from django_jobs.conf import get_settings

    if value is None:
        return "-"
    if isinstance(value, dict):
        done, total = value.get("done"), value.get("total")
        if _number(done) and _number(total) and total > 0:
            percent = max(0.0, min(100.0, done / total * 100))
            return format_html(
                '<span class="djj-progress"><progress value="{}" max="{}"></progress> {} / {} ({}%)</span>',
                min(max(done, 0), total), total, done, total, f"{percent:.0f}",
            )
    text = json.dumps(_redact_value(value, get_settings().redact_arguments), sort_keys=True, default=str)
    if len(text) > 80:
        text = text[:79] + "\u2026"
    return format_html('<span class="djj-progress">{}</span>', text)


def _number(value: Any) -> TypeGuard[int | float]:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def pages_context(request: HttpRequest) -> dict[str, Any]:
    """Links to the control-plane pages, for the templates' navigation."""
    return {
        "djj_pages": [
            ("Jobs", reverse("admin:django_jobs_jobrecord_changelist")),
            ("Dashboard", reverse("admin:django_jobs_dashboard")),
            ("Queues", reverse("admin:django_jobs_queues")),
            ("Workers", reverse("admin:django_jobs_workers")),
            ("Schedules", reverse("admin:django_jobs_schedules")),
        ]
    }


def _page(request: HttpRequest, template: str, title: str, context: dict[str, Any]) -> TemplateResponse:
    if not request.user.has_perm("django_jobs.view_jobrecord"):
        raise PermissionDenied
    return TemplateResponse(request, template, {
        **admin.site.each_context(request),
        **pages_context(request),
        **live_context(request),
        "opts": JobRecord._meta,
        "title": title,
        **context,
    })


def _need(request: HttpRequest, perm: str) -> None:
    if not request.user.has_perm(f"django_jobs.{perm}"):
        raise PermissionDenied


#: How often the live pages refresh themselves, seconds (the "Live" toggle turns it off).
LIVE_SECONDS = 5


def live_context(request: HttpRequest) -> dict[str, Any]:
    """What every django_jobs page adds to the admin's context: refreshing, and the full width.

    The admin's app sidebar is off on these pages (they have their own navigation), so a
    1024 px screen keeps its width for the data.
    """
    return {"is_nav_sidebar_enabled": False, "djj_live_seconds": LIVE_SECONDS}
