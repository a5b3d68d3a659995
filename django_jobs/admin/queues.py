"""The Queues page: live counts per queue; pause, resume, limits and purge."""

from __future__ import annotations

import logging
from typing import Any

from django.contrib import messages
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect

from django_jobs.admin.common import _engine, _need, _page
from django_jobs.admin.health import queue_health, serving_workers
from django_jobs.ages import age_label
from django_jobs.models import JobState

logger = logging.getLogger(__name__)


#: Most jobs ``purge`` deletes in one click (it calls the engine 1,000 at a time).
PURGE_LIMIT = 100_000


#: The job states the queues page counts, in column order.
QUEUE_STATES = (
    JobState.WAITING, JobState.SCHEDULED, JobState.WAITING_CHILDREN, JobState.ACTIVE,
    JobState.COMPLETED, JobState.FAILED, JobState.CANCELLED,
)


def queues_view(request: HttpRequest) -> HttpResponse:
    """Every configured queue with live counts from Redis; POST pauses, resumes or purges one."""
    from django_jobs import operations
    from django_jobs.conf import get_settings

    names = get_settings().queue_names
    engine = _engine()
    if request.method == "POST":
        _need(request, "view_jobrecord")
        _need(request, "manage_queues")
        queue, op = request.POST.get("queue", ""), request.POST.get("op", "")
        if op == "pause-all" and request.POST.get("confirm") != "yes":
            return _queues_page(request, engine, names, confirm_pause_all=names)  # asks first, like purge
        before = len(_queued(request))
        if op in ("pause-all", "resume-all"):
            done = (operations.pause if op == "pause-all" else operations.resume)(None).queues
            messages.success(request, f"{'Paused' if op == 'pause-all' else 'Resumed'} every queue: {', '.join(done)}.")
        elif queue not in names:
            messages.error(request, f"Unknown queue {queue!r}.")
        elif op == "pause":
            operations.pause(queue)
            messages.success(request, f"Queue {queue!r} is paused: workers take no new jobs from it (running jobs finish, enqueue still works).")
        elif op == "resume":
            operations.resume(queue)
            messages.success(request, f"Queue {queue!r} is running again.")
        elif op == "limits":
            _set_limits(request, queue)
        elif op == "reset-limits":
            from django_jobs.limits import reset_queue_limits

            now = reset_queue_limits(queue)
            messages.success(request, f"Queue {queue!r} uses the limits of its settings again: {_limits_text(now)}.")
        elif op.startswith("purge-") and op[6:] in operations.PURGEABLE:
            state = op[6:]
            deleted = operations.purge(queue, state, limit=PURGE_LIMIT).deleted
            left = engine.counts(queue)[state]
            text = f"Purged {deleted} {state} jobs of queue {queue!r}."
            messages.success(request, text + (f" {left} are left: purge again." if left else ""))
        else:
            messages.error(request, f"Unknown queue operation {op!r}.")
        logger.info("Admin queue %s %s", op, queue, extra={"action": "admin_queue"})
        _record(request, op, names if op.endswith("-all") else [queue], before)
        return HttpResponseRedirect(request.path)
    return _queues_page(request, engine, names)


def _queued(request: HttpRequest) -> list[Any]:
    """The messages this request has sent so far."""
    return list(getattr(getattr(request, "_messages", None), "_queued_messages", []))


def _record(request: HttpRequest, op: str, queues: list[str], before: int) -> None:
    """Record the operation and the messages it sent (its outcome) in the admin history."""
    from django_jobs import audit

    sent = [str(m) for m in _queued(request)[before:]]
    audit.record(request.user, f"queues {', '.join(queues)}"[:200], f"Queue {op} (admin): {' '.join(sent) or 'no outcome'}")


def _queues_page(request: HttpRequest, engine: Any, names: list[str], confirm_pause_all: list[str] | None = None) -> HttpResponse:
    from django_jobs import operations
    from django_jobs.limits import queue_limits

    rows = []
    serving = serving_workers(engine.workers())
    lags = _mirror_lags(names)
    for queue in names:
        counts = engine.counts(queue)
        paused = engine.is_paused(queue)
        health = queue_health(engine, queue, counts, paused=paused, workers=serving.get(queue, 0))
        rows.append({
            "name": queue,
            "counts": counts,
            "cells": [(state, counts.get(state, 0)) for state in QUEUE_STATES],
            "paused": paused,
            "limits": queue_limits(queue),
            "shards": engine.shard_count(queue),  # SHARDS (docs/scaling.md#sharded-queues): no limits form
            "health": health,
            "oldest": age_label(health["oldest_age"]),
            "mirror": lags.get(queue),
        })
    return _page(request, "admin/django_jobs/queues.html", "Queues", {
        "rows": rows,
        "states": QUEUE_STATES,
        "purgeable": operations.PURGEABLE,
        "can_manage": request.user.has_perm("django_jobs.manage_queues"),
        "confirm_pause_all": confirm_pause_all,
        "mirrored": bool(lags),
    })


def _mirror_lags(names: list[str]) -> dict[str, dict[str, Any]]:
    """The database mirror's lag per queue, for the page ({} when the mirror is off)."""
    from django_jobs.conf import get_settings
    from django_jobs.mirror import mirror_lag

    if not get_settings().mirror["ENABLED"]:
        return {}
    return {
        queue: {"behind": lag.behind, "age": age_label(lag.age) if lag.behind else "", "unrecorded": lag.unrecorded,
                "lost": lag.lost, "held": lag.held}
        for queue, lag in mirror_lag(names).items()
    }


def _limits_text(limits: Any) -> str:
    rate = f"at most {limits.rate} starts" if limits.rate else "no rate limit"
    conc = f"at most {limits.concurrency} running" if limits.concurrency else "no concurrency limit"
    return f"{rate}, {conc}"


def _set_limits(request: HttpRequest, queue: str) -> None:
    """Apply the limits form of ``queue`` (empty field: no limit) or say what is wrong with it."""
    from django_jobs.exceptions import ConfigurationError, InvalidJob
    from django_jobs.limits import set_queue_limits

    rate_text = request.POST.get("rate", "").strip()
    conc_text = request.POST.get("concurrency", "").strip()
    concurrency: int | None = None
    if conc_text:
        try:
            concurrency = int(conc_text)
        except ValueError:
            messages.error(request, f"Concurrency {conc_text!r} of queue {queue!r} is not valid: use a whole number of at least 1, or leave it empty for no limit. Nothing was changed.")
            return
    try:
        now = set_queue_limits(queue, rate=rate_text or None, concurrency=concurrency)
    except (InvalidJob, ConfigurationError) as exc:  # ConfigurationError: a sharded queue (docs/scaling.md)
        messages.error(request, f"{exc} Nothing was changed.")
        return
    messages.success(request, f"Queue {queue!r} now has {_limits_text(now)}, on every worker, until the limits are reset to the settings.")
