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
from django.db import connections
from django.db.models import Q, QuerySet
from django.http import HttpRequest
from django.utils import timezone
from django.utils.html import format_html

from django_jobs.ages import age_label
from django_jobs.mirror.textsearch import has_trigram_indexes
from django_jobs.models import JobRecord

#: The choices of the "finished within" filter: (parameter value, label, length).
RECENT = (("15m", "last 15 minutes", timedelta(minutes=15)), ("1h", "last hour", timedelta(hours=1)),
          ("24h", "last 24 hours", timedelta(days=1)))
#: The error the engine records on a flow parent that a failed child failed.
_CHILD_FAILED = re.compile(r"Child job (\S+) ended (\w+)")
#: Characters of the error shown in the list (the whole line is the cell's tooltip).
ERROR_CHARS = 120


class ErrorFilter(admin.SimpleListFilter):
    """Jobs whose last attempt left an error (failed ones, and retried ones that completed later), or none."""

    title = "error"
    parameter_name = "has_error"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("yes", "has an error"), ("no", "no error")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[JobRecord]) -> QuerySet[JobRecord]:
        if self.value() == "yes":
            return queryset.filter(~Q(error=""))  # the partial index djj_error_enq has this condition
        if self.value() == "no":
            return queryset.filter(error="")
        return queryset


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


#: Without trigram indexes (SQLite; PostgreSQL without pg_trgm), the text search (error message,
#: argument value) reads the newest this many jobs at most.
TEXT_SEARCH_ROWS = 20_000
#: A term the trigram indexes can answer: three letters or digits in a row (a shorter word has no trigram).
_TRIGRAMS = re.compile(r"[^\W_]{3}")


def search(queryset: QuerySet[JobRecord], term: str, *, cap: int = 10_000) -> QuerySet[JobRecord]:
    """Return the jobs of ``queryset`` that ``term`` finds: the first reading that matches wins.

    Every reading reads an index, or a bounded number of rows (none reads the whole table):

    1. a job id (exact); 2. a correlation id (exact);
    3. a job name: the registered jobs whose full name starts with ``term`` or whose short name
       (``charge_card`` for ``shop.jobs.charge_card``) does; when no registered job matches, any
       stored name that starts with ``term`` (a job no longer registered);
    4. an exception class, with or without its module (``PaymentDeclined``,
       ``shop.payments.PaymentDeclined``): the jobs whose last error is of that class (exact, any module);
    5. else a text: any part of the last error (any case) or of the arguments' JSON: on
       PostgreSQL with the trigram indexes (:mod:`django_jobs.mirror.textsearch`, migration 0006)
       in every job when the term has three letters or digits in a row; otherwise among the newest
       :data:`TEXT_SEARCH_ROWS` (20,000) jobs.

    ``cap``: the most rows the list counts (a name search keeps the newest ``cap + 1`` of each name).
    :func:`search_reading` also says which reading it was.
    """
    return search_reading(queryset, term, cap=cap)[0]


#: The readings :func:`search_reading` names.
READINGS = ("job id", "correlation id", "name", "stored name", "error class", "text", "recent text")


def search_reading(queryset: QuerySet[JobRecord], term: str, *, cap: int = 10_000) -> tuple[QuerySet[JobRecord], str]:
    """:func:`search`, and which of :data:`READINGS` found the jobs (``"text"``: every row, through the trigram indexes)."""
    # One indexed lookup at a time (an OR of them makes the database sort every match).
    if JobRecord.objects.filter(pk=term).exists():
        return queryset.filter(pk=term), "job id"
    if JobRecord.objects.filter(correlation_id=term).exists():
        return queryset.filter(correlation_id=term), "correlation id"
    registered = registered_names()
    names = sorted({*(n for n in registered if n.startswith(term)), *short_names(term)})
    if names:  # the registered jobs it names, through the (name, enqueued_at) index
        return _newest_of_names(queryset, names, cap), "name"
    if JobRecord.objects.filter(name__gte=term, name__lt=term + "\U0010ffff").exists():  # a job no longer registered
        return queryset.filter(name__gte=term, name__lt=term + "\U0010ffff"), "stored name"
    cls = term.rsplit(".", 1)[-1]
    if cls and " " not in cls and JobRecord.objects.filter(error_class=cls).exists():
        return queryset.filter(error_class=cls), "error class"
    text = Q(error__icontains=term) | Q(args__icontains=term) | Q(kwargs__icontains=term)
    if _TRIGRAMS.search(term) and has_trigram_indexes(connections[queryset.db]):
        return queryset.filter(text), "text"  # the trigram indexes (PostgreSQL, migration 0006): every row
    oldest = JobRecord.objects.order_by("-enqueued_at").values_list("enqueued_at", flat=True)[TEXT_SEARCH_ROWS - 1 : TEXT_SEARCH_ROWS]
    return (queryset.filter(text, enqueued_at__gte=oldest[0]) if oldest else queryset.filter(text)), "recent text"


def _newest_of_names(queryset: QuerySet[JobRecord], names: list[str], cap: int) -> QuerySet[JobRecord]:
    """``name IN names``, bounded: only rows as new as each name's (cap + 1)th newest (the list shows no more).

    For several names the database cannot read the matches in list order from one index and
    would sort them all; the bound keeps at most cap + 1 rows per name to sort, and never drops
    a row of the newest cap + 1 of the union (each of those is among its own name's newest).
    """
    if len(names) == 1:
        return queryset.filter(name=names[0])
    bounds = [JobRecord.objects.filter(name=name).order_by("-enqueued_at").values_list("enqueued_at", flat=True)[cap : cap + 1]
              for name in names]
    times = [b[0] for b in (list(q) for q in bounds) if b and b[0] is not None]
    matches = queryset.filter(name__in=names)
    return matches.filter(enqueued_at__gte=max(times)) if times else matches
