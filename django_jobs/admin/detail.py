"""The job detail page's data: the row, the live job in Redis, its flow and relatives."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from django.urls import reverse

from django_jobs.admin.common import _engine, _ms, _pretty, progress_html
from django_jobs.admin.listing import _CHILD_FAILED, error_line
from django_jobs.admin.redaction import redact_arguments, redact_text
from django_jobs.engine.record import JobView
from django_jobs.models import JobRecord

logger = logging.getLogger(__name__)


def job_detail(obj: JobRecord) -> dict[str, Any]:
    """Return what the detail page shows of ``obj``: the row, the live job in Redis, relatives."""
    from django_jobs.exceptions import EngineError

    live: dict[str, str] | None = None
    live_error = ""
    try:
        live = _engine().get_job(obj.queue, obj.job_id)
    except EngineError as exc:
        live_error = str(exc)
    args, kwargs = redact_arguments(obj.name, obj.args, obj.kwargs)
    errors = obj.errors or []
    earlier = obj.earlier_errors or []
    workers = obj.workers or []
    result = obj.result
    state, attempts = obj.state, obj.attempts
    live_row: dict[str, Any] = {}
    if live:
        # The live hash decoded as the mirror decodes it (one reading of a job hash).
        from django_jobs.mirror import row_from_hash

        live_row = row_from_hash(obj.queue, obj.job_id, live, 0)
        if not obj.args and not obj.kwargs:
            args, kwargs = redact_arguments(obj.name, live_row["args"], live_row["kwargs"])
        errors, workers, result = live_row["errors"], live_row["workers"], live_row["result"]
        earlier = live_row["earlier_errors"]
        state, attempts = live_row["state"] or state, live_row["attempts"]
    timeline = attempts_timeline(obj, errors, workers, state, live or {}, earlier=earlier)
    live_rows = []
    view = JobView.from_hash(obj.queue, obj.job_id, live or {})
    if live:
        for label, ms in (("enqueued", view.enqueued_ms), ("first started", view.started_ms),
                          ("last claimed", view.last_started_ms), ("finished", view.finished_ms), ("due", view.due_ms)):
            if ms:
                live_rows.append((label, _ms(ms)))
    parent = JobRecord.objects.filter(pk=obj.parent_id).first() if obj.parent_id else None
    children = list(JobRecord.objects.filter(parent_id=obj.job_id).order_by("-enqueued_at")[:50])
    return {
        **_flow_context(obj, live, live_error, related=bool(parent or obj.parent_id or children)),
        "progress_html": progress_html(obj.progress),
        "live_progress_html": progress_html(live_row["progress"]) if live_row.get("progress") is not None else "",
        "live": live,
        "live_error": live_error,
        "live_state": state if live else "",
        "live_attempts": attempts,
        "live_rows": live_rows,
        "live_cancel_requested": bool(live and view.cancel_requested),
        "live_why": view.reason if live else "",
        "in_sync": live is None or view.state == obj.state,
        "args_json": _pretty(args),
        "kwargs_json": _pretty(kwargs),
        "result_json": _pretty(result) if result is not None else "",
        "raw_payload": redact_text(obj.raw_payload),
        "timeline": timeline,
        "last_error": error_line(obj.error) if obj.error else "",
        "failed_child": failed_child(obj, errors) if state == "failed" else None,
        "parent": parent,
        "children": children,
        "siblings": list(JobRecord.objects.filter(correlation_id=obj.correlation_id).exclude(pk=obj.pk).order_by("-enqueued_at")[:20])
        if obj.correlation_id else [],
        "changelist_url": reverse("admin:django_jobs_jobrecord_changelist"),
    }


#: Most jobs of one flow the detail page lists (a flow may have 10,000).
FLOW_ROWS = 500


def _flow_context(obj: JobRecord, live: dict[str, str] | None, live_error: str, *, related: bool) -> dict[str, Any]:
    """Return the flow ``obj`` belongs to as rows for the detail page (empty outside flows).

    ``flow_rows``: the tree from its root, parents before children, each with its ``depth``,
    its live state in Redis and the url of its admin page; ``flow_note``: why the flow is not
    shown whole (gone from Redis, too big, Redis unreachable). ``related``: the mirror knows a
    parent or children of the job (a note is shown if its flow cannot be read).
    """
    from django_jobs.exceptions import EngineError
    from django_jobs.flows import flow_tree

    empty: dict[str, Any] = {"flow_rows": [], "flow_note": "", "flow_more": 0}
    if live_error:
        return {**empty, "flow_note": f"The flow cannot be read: {live_error}"} if related else empty
    if live is None:
        note = "This job is no longer in Redis, so its flow cannot be shown; the parent and children below come from the mirror."
        return {**empty, "flow_note": note} if related else empty
    try:
        tree = flow_tree(obj.job_id, queues=_queue_names_with(obj.queue))
    except EngineError as exc:
        return {**empty, "flow_note": f"The flow cannot be read: {exc}"}
    view = JobView.from_hash(obj.queue, obj.job_id, live)
    in_flow = view.in_flow
    if tree is None or not in_flow:
        return empty
    rows: list[dict[str, Any]] = []
    more = 0
    stack = [(tree, 0)]
    while stack:
        node, depth = stack.pop()
        if len(rows) >= FLOW_ROWS:
            more += 1
            continue
        rows.append({
            "id": node.id, "name": node.name, "queue": node.queue, "state": node.state or "deleted",
            "failure": node.failure if node.failure not in ("", "fail") else "",
            "depth": depth, "indent": depth * 2, "here": node.id == obj.job_id,
            "url": reverse("admin:django_jobs_jobrecord_change", args=[node.id]),
        })
        stack.extend((child, depth + 1) for child in reversed(node.children))
    note = ""
    if tree.id == obj.job_id and view.parent_base:
        note = f"Its parent {view.parent_id} is no longer in Redis: the flow is shown from this job down."
    return {"flow_rows": rows, "flow_note": note, "flow_more": more}


def _queue_names_with(queue: str) -> list[str]:
    from django_jobs.conf import get_settings

    names = list(get_settings().queue_names)
    return names if queue in names else [queue, *names]


def attempts_timeline(
    obj: JobRecord, errors: list[Any], workers: list[Any], state: str, live: dict[str, str], *, earlier: Sequence[Any] = (),
) -> list[dict[str, Any]]:
    """One row per attempt: its worker, when it ended, how long it ran, and its error.

    The failed attempts of earlier runs (``earlier``: the errors an operator's retry kept,
    oldest first) come first, each marked ``before_retry`` (their workers are not kept); then
    the attempts of the current run. A failed attempt's error carries its end (``at``) and run
    time (``ms``); the last attempt of a completed job takes them from the job (finished time
    and run time), a running one says since when it runs.
    """
    rows = [
        {**_attempt(n, error if isinstance(error, dict) else {}, ""), "before_retry": True}
        for n, error in enumerate(earlier, 1)
    ]
    count = max(len(errors), len(workers))
    for i in range(count):
        error = errors[i] if i < len(errors) and isinstance(errors[i], dict) else {}
        row = _attempt(i + 1, error, workers[i] if i < len(workers) else "")
        if error and row["ended"] is None and i == count - 1 and state == "failed":
            row["ended"] = obj.finished_at  # an error the engine recorded (a child failed the flow parent)
        if not error and i == count - 1:
            if state == "completed":
                row.update(ended=obj.finished_at, seconds=obj.duration, outcome="completed")
            elif state == "active":
                row.update(ended=None, outcome="running", since=_ms(live.get("la")))
            elif state == "cancelled":
                row.update(ended=obj.finished_at, outcome="cancelled")
        rows.append(row)
    return rows


def _attempt(number: int, error: dict[str, Any], worker: Any) -> dict[str, Any]:
    """One row of the attempts timeline from the error an attempt recorded (``{}``: none)."""
    tb = str(error.get("traceback", ""))
    lines = tb.rstrip().splitlines()
    return {
        "attempt": number,
        "worker": worker,
        "error": error.get("exception_class_path", ""),
        "message": error_line(lines[-1]) if lines else "",
        "traceback": tb,
        "ended": _ms(error.get("at")),
        "seconds": error["ms"] / 1000 if isinstance(error.get("ms"), (int, float)) else None,
        "outcome": "failed" if error else "",
        "before_retry": False,
    }


def failed_child(obj: JobRecord, errors: list[Any]) -> dict[str, Any] | None:
    """Return the child that failed flow parent ``obj`` (its id, state, error, url), or None."""
    from django_jobs.exceptions import EngineError

    last = errors[-1] if errors and isinstance(errors[-1], dict) else {}
    found = _CHILD_FAILED.search(str(last.get("traceback", ""))) if str(last.get("exception_class_path", "")).endswith("ChildFailed") else None
    if found is None:
        return None
    child_id, child_state = found.group(1), found.group(2)
    row = JobRecord.objects.filter(pk=child_id).first()
    error, name = (row.error, row.name) if row is not None else ("", "")
    if row is None or not error:
        try:
            hit = _engine().find_job(child_id, _queue_names_with(obj.queue))
        except EngineError:
            hit = None
        if hit is not None:
            from django_jobs.mirror import row_from_hash

            live = row_from_hash(hit[0], child_id, hit[1], 0)
            error, name = live["error"], live["name"]
    return {
        "id": child_id, "state": child_state, "name": name, "error": error_line(error) if error else "",
        "url": reverse("admin:django_jobs_jobrecord_change", args=[child_id]),
    }
