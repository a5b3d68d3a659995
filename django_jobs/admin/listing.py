"""The job list's columns, its "recent" filter and its search (what failed lately, and why).

The list answers "what failed in the last hour, and why?" in one click: the error column
(exception class and first line of its message), the *finished within* filter (15 minutes,
an hour, a day) and a search that finds an error text, an argument value or a job by its
short name (``charge_card`` for ``shop.jobs.charge_card``).
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from typing import Any

from django.contrib import admin
from django.db.models import Q, QuerySet
from django.http import HttpRequest
from django.utils import timezone
from django.utils.html import format_html

from django_jobs.ages import age_label
from django_jobs.models import JobRecord

#: The choices of the "finished within" filter: (parameter value, label, length).
RECENT = (("15m", "last 15 minutes", timedelta(minutes=15)), ("1h", "last hour", timedelta(hours=1)),
          ("24h", "last 24 hours", timedelta(days=1)))
#: The error the engine records on a flow parent that a failed child failed.
_CHILD_FAILED = re.compile(r"Child job (\S+) ended (\w+)")
#: Characters of the error shown in the list (the whole line is the cell's tooltip).
ERROR_CHARS = 120


class RecentFilter(admin.SimpleListFilter):
    """Jobs that finished (completed, failed or were cancelled) in the last 15 minutes, hour or day."""

    title = "finished within"
    parameter_name = "finished_within"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [(key, label) for key, label, _ in RECENT]

    def queryset(self, request: HttpRequest, queryset: QuerySet[JobRecord]) -> QuerySet[JobRecord]:
        for key, _, length in RECENT:
            if self.value() == key:
                return queryset.filter(finished_at__gte=timezone.now() - length)
        return queryset


def error_line(error: str) -> str:
    """Return ``"PaymentDeclined: card declined"`` from a stored error line.

    The mirror stores the traceback's last line (``"shop.jobs.PaymentDeclined: card declined"``):
    the class is shown without its module, and the message up to its first line break.

    >>> error_line("shop.jobs.PaymentDeclined: card declined")
    'PaymentDeclined: card declined'
    """
    text = (error or "").strip().splitlines()[0] if (error or "").strip() else ""
    child = _CHILD_FAILED.match(text)
    if child:  # the engine's note on a flow parent: say which child, briefly
        return f"ChildFailed: child \u2026{child.group(1)[-8:]} ended {child.group(2)}"
    head, sep, message = text.partition(": ")
    if " " not in head:
        head = head.rsplit(".", 1)[-1]
    return f"{head}{sep}{message}"


def error_html(obj: JobRecord) -> str:
    """The list's error cell: the short error line, the whole one as its tooltip."""
    if not obj.error:
        return ""
    line = error_line(obj.error)
    short = line if len(line) <= ERROR_CHARS else line[: ERROR_CHARS - 1] + "\u2026"
    return format_html('<span class="djj-error" title="{}">{}</span>', obj.error, short)


def age_text(when: datetime | None, now: datetime | None = None) -> str:
    """Return how long ago ``when`` was, compactly (:func:`django_jobs.ages.age_label`): ``"42.0 s"``, ``"5.0 min"``."""
    if when is None:
        return "-"
    return age_label(((now or timezone.now()) - when).total_seconds())


def age_html(when: datetime | None) -> str:
    """An age cell: ``"5 min"`` with the exact time as its tooltip."""
    if when is None:
        return "-"
    return format_html('<span title="{}">{}</span>', timezone.localtime(when).strftime("%Y-%m-%d %H:%M:%S"), age_text(when))


def registered_names() -> list[str]:
    """The registered job names, the apps' job modules imported first (a web process may not have yet)."""
    from django_jobs import registry

    registry.autodiscover()
    return sorted(registry.all_jobs())


def short_names(term: str) -> list[str]:
    """Registered job names whose last part (after the module) is ``term`` or starts with it."""
    return [n for n in registered_names() if n.rsplit(".", 1)[-1].startswith(term)]


def search(queryset: QuerySet[JobRecord], term: str) -> QuerySet[JobRecord]:
    """Return the jobs of ``queryset`` that ``term`` finds, trying the cheap readings first.

    1. a job id, 2. a correlation id (exact, indexed); 3. a job name: the full name, its start,
    or a registered job's short name (``charge_card``), read through the name index; 4. else an
    error text (any part, any case) or an argument value (any part of the JSON of ``args`` or
    ``kwargs``), which reads every row the filters leave.
    """
    # One indexed lookup at a time (an OR of them makes the database sort every match).
    if JobRecord.objects.filter(pk=term).exists():
        return queryset.filter(pk=term)
    if JobRecord.objects.filter(correlation_id=term).exists():
        return queryset.filter(correlation_id=term)
    registered = registered_names()
    names = sorted({*(n for n in registered if n.startswith(term)), *short_names(term)})
    if names:
        if names == [term] or set(names) <= set(short_names(term)):
            return queryset.filter(name__in=names)
        # A name prefix as a range, not LIKE: LIKE cannot use the name index on every database.
        return queryset.filter(Q(name__gte=term, name__lt=term + "\U0010ffff") | Q(name__in=names))
    if JobRecord.objects.filter(name__gte=term, name__lt=term + "\U0010ffff").exists():
        return queryset.filter(name__gte=term, name__lt=term + "\U0010ffff")  # a job no longer registered
    return queryset.filter(Q(error__icontains=term) | Q(args__icontains=term) | Q(kwargs__icontains=term))
