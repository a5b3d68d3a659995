"""Who did what: every operator action recorded as Django admin ``LogEntry`` rows.

The admin (job actions, the Queues and Schedules pages) and ``manage.py jobs`` (its subcommands
that change something) record each action here. A job action writes one entry per job it was
given, on that job (``object_id`` = job id), saying what happened to it: "Retried (admin)", "Not
retried: no longer in Redis (admin)". A queue or schedule action writes one entry naming the
queues or the schedule and its outcome. The job's detail page lists its entries ("History"),
and Django's own admin history shows them. ``manage.py jobs`` records under the Django user
named by ``--user`` (default: the OS user) and logs it in any case (logger ``django_jobs.audit``).

>>> from django_jobs import audit
>>> audit.history("0190f5a3c2b14c0e8d7a6b5c4d3e2f10")  # doctest: +SKIP
[<LogEntry: Changed "..." — Retried (admin)>]

See docs/admin.md#who-did-this.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from django.contrib.admin.models import LogEntry
    from django.contrib.contenttypes.models import ContentType

    from django_jobs.operations import OperationResult

logger = logging.getLogger(__name__)

__all__ = ["CHANGING", "history", "record", "record_command", "record_jobs", "user_named"]

#: The past tense of each job action, as its entries say it.
VERBS = {"retry": "Retried", "cancel": "Cancelled", "delete": "Deleted"}
#: Entries written per INSERT.
BATCH = 1_000


def _content_type() -> ContentType:
    from django.contrib.contenttypes.models import ContentType

    from django_jobs.models import JobRecord

    return ContentType.objects.get_for_model(JobRecord)


def user_named(username: str) -> Any:
    """The Django user called ``username``, or None."""
    from django.contrib.auth import get_user_model

    model = get_user_model()
    return model._default_manager.filter(**{model.USERNAME_FIELD: username}).first()


def record_jobs(user: Any, result: OperationResult, source: str) -> int:
    """Write one entry per job of ``result`` (done, asked to stop, or skipped and why).

    ``source`` says where it came from ("admin", "manage.py jobs"). Returns the entries written.
    """
    from django.contrib.admin.models import CHANGE, DELETION, LogEntry

    action = result.action.value
    verb = VERBS[action]
    flag = DELETION if action == "delete" else CHANGE
    rows: list[tuple[str, str]] = [(job_id, f"{verb} ({source})") for _q, job_id in result.done]
    rows += [(job_id, f"Asked to stop: cancel of a running job ({source})") for _q, job_id in result.requested]
    rows += [(s.job_id, f"Not {verb.lower()}: {s.message} ({source})") for s in result.skipped]
    ct = _content_type()
    entries = [
        LogEntry(user_id=user.pk, content_type=ct, object_id=job_id, object_repr=job_id[:200], action_flag=flag, change_message=text)
        for job_id, text in rows
    ]
    for start in range(0, len(entries), BATCH):
        LogEntry.objects.bulk_create(entries[start : start + BATCH])
    return len(entries)


def record(user: Any, what: str, message: str, *, job_id: str | None = None) -> LogEntry:
    """Write one entry: ``what`` it acted on ("queues default, low", "schedule nightly") and
    ``message`` (the action and its outcome); ``job_id`` ties it to one job."""
    from django.contrib.admin.models import CHANGE, LogEntry

    return LogEntry.objects.create(
        user_id=user.pk, content_type=_content_type(), object_id=job_id, object_repr=what[:200],
        action_flag=CHANGE, change_message=message,
    )


def history(job_id: str, limit: int = 50) -> Sequence[LogEntry]:
    """The operator actions recorded on ``job_id``, newest first."""
    from django.contrib.admin.models import LogEntry

    qs = LogEntry.objects.filter(content_type=_content_type(), object_id=job_id).select_related("user")
    return list(qs.order_by("-action_time", "-id")[:limit])


#: The ``manage.py jobs`` subcommands that change something (``limits`` only with an option).
CHANGING = ("retry", "cancel", "pause", "resume", "purge", "limits")
#: The options of those subcommands an entry lists.
_OPTIONS = ("job_id", "queue", "queues", "failed", "cancel_queue", "cancel_states", "cancel_name", "all", "state", "rate", "concurrency", "reset")


def record_command(options: dict[str, Any], outcome: object, results: Sequence[OperationResult] = ()) -> str | None:
    """Record a ``manage.py jobs`` subcommand that changed something, under ``--user`` (default:
    the OS user), and log it (INFO, logger ``django_jobs.audit``, with the OS user) in any case.

    ``results`` are the bulk operations it ran (``retry --failed``, ``cancel --queue``): each of
    their jobs also gets its own entry, as an admin action writes (:func:`record_jobs`).

    Returns why ``--user``'s record could not be written, or None (a default OS user without a
    Django account, or no database, is only logged).
    """
    import getpass
    import json

    from django.apps import apps
    from django.db import DatabaseError

    action = options.get("action", "")
    if action not in CHANGING or (action == "limits" and not any(options.get(k) for k in ("rate", "concurrency", "reset"))):
        return None

    username = options.get("user") or getpass.getuser()
    given = {k: options[k] for k in _OPTIONS if options.get(k) not in (None, False, [], ())}
    text = f"jobs {action} {json.dumps(given, default=str)} (manage.py jobs, OS user {getpass.getuser()}): {json.dumps(outcome, default=str)}"
    logger.info("Operator action by %s: %s", username, text, extra={"action": "jobs_command"})
    if not apps.is_installed("django.contrib.admin"):
        return None  # no admin, no admin history: the log line is the record
    try:
        user = user_named(username)
    except (DatabaseError, RuntimeError) as exc:  # no database (or no access to it) here
        why = f"Not recorded in the admin history: the database is not available ({exc})."
        return why if options.get("user") else None
    if user is None:
        # Only --user asked for a record under a name; the OS user without an account is only logged.
        return f"Not recorded in the admin history: no Django user {username!r}." if options.get("user") else None
    job_id = options.get("job_id") or None
    queues = [str(v) for k, v in given.items() if k in ("queue", "queues", "failed", "cancel_queue")]
    what = f"job {job_id}" if job_id else f"queues {', '.join(queues)}" if queues else "all queues"
    record(user, what, text, job_id=job_id)
    for result in results:
        record_jobs(user, result, "manage.py jobs")
    return None
