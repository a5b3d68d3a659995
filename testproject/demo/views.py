"""The demo page: buttons that enqueue jobs, and the live state of the last ones enqueued.

The ids of the jobs this browser enqueued are kept in its session; their state is read
from Redis on every refresh with ``task.get_result(id)``.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django.contrib import messages
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.tasks import TaskResultStatus
from django.tasks.exceptions import TaskResultDoesNotExist
from django.utils import timezone
from django.views.decorators.http import require_GET, require_POST

from demo import jobs

logger = logging.getLogger(__name__)

#: The session key holding the last enqueued jobs, newest first.
SESSION_KEY = "demo_jobs"
#: How many enqueue clicks the page remembers.
MAX_ENTRIES = 12
#: Jobs in the bulk button.
BULK_SIZE = 100
#: Seconds the delayed job waits before it may run.
DELAY_SECONDS = 10


@dataclass(frozen=True, slots=True)
class Action:
    """One button: what it says, which job it enqueues, and how."""

    label: str
    help: str
    task: Any
    enqueue: Callable[[], list[Any]]


ACTIONS: dict[str, Action] = {
    "fast": Action("Fast job", "@job fast(n): squares a number.", jobs.fast,
                   lambda: [jobs.fast.enqueue(7)]),
    "slow": Action("Slow job", "@job(queue='low') slow(5): sleeps 5 s.", jobs.slow,
                   lambda: [jobs.slow.enqueue(5)]),
    "flaky": Action("Failing job", "@job(attempts=3, backoff=exponential): fails, retried after 1 s and 2 s.",
                    jobs.flaky, lambda: [jobs.flaky.enqueue(reason="demo button")]),
    "async": Action("Async job", "@job async def fetch_async(): awaits 0.5 s on the worker's event loop.",
                    jobs.fetch_async, lambda: [jobs.fetch_async.enqueue("demo")]),
    "bulk": Action(f"{BULK_SIZE} jobs", f"fast.enqueue_many(): {BULK_SIZE} jobs in one round trip.", jobs.fast,
                   lambda: jobs.fast.enqueue_many([(i,) for i in range(BULK_SIZE)])),
    "delayed": Action("Delayed job", f"fast.using(delay={DELAY_SECONDS}): runs in {DELAY_SECONDS} s.", jobs.fast,
                      lambda: [jobs.fast.using(delay=DELAY_SECONDS).enqueue(12)]),
    "plain": Action("Plain @task", "@django.tasks.task(queue_name='high', priority=10) shout().", jobs.shout,
                    lambda: [jobs.shout.enqueue("hello from django.tasks")]),
    "order": Action("Job with a child", "place_order(7) logs and enqueues send_receipt(7): both log the request's id.",
                    jobs.place_order, lambda: [jobs.place_order.enqueue(7)]),
}


@require_GET
def index(request: HttpRequest) -> HttpResponse:
    """Show the buttons and the last enqueued jobs."""
    return render(request, "demo/index.html", {"actions": ACTIONS, "entries": _entries(request)})


@require_GET
def job_list(request: HttpRequest) -> HttpResponse:
    """Return just the table of the last enqueued jobs (the page polls this every second)."""
    return render(request, "demo/_jobs.html", {"entries": _entries(request)})


@require_POST
def enqueue(request: HttpRequest, kind: str) -> HttpResponse:
    """Enqueue the job of button ``kind`` and remember its id(s) in the session."""
    action = ACTIONS.get(kind)
    if action is None:
        raise Http404(f"No demo job {kind!r}.")
    results = action.enqueue()
    ids = [result.id for result in results]
    entries = [{"kind": kind, "ids": ids, "at": timezone.now().isoformat()}, *request.session.get(SESSION_KEY, [])]
    request.session[SESSION_KEY] = entries[:MAX_ENTRIES]
    logger.info("Enqueued %s: %d job(s), first id %s", kind, len(ids), ids[0])
    messages.success(request, f"Enqueued {action.label.lower()}: {len(ids)} job(s).")
    return redirect("demo:index")


@require_POST
def clear(request: HttpRequest) -> HttpResponse:
    """Forget the remembered jobs (they keep running)."""
    request.session.pop(SESSION_KEY, None)
    return redirect("demo:index")


def _entries(request: HttpRequest) -> list[dict[str, Any]]:
    """Read the live state of every remembered job from Redis."""
    rows = []
    for entry in request.session.get(SESSION_KEY, []):
        action = ACTIONS.get(entry.get("kind"))
        if action is None:
            continue
        results = [_result(action.task, job_id) for job_id in entry["ids"]]
        found = [r for r in results if r is not None]
        states = Counter(r.state for r in found)
        if len(results) > len(found):
            states["gone"] = len(results) - len(found)
        row: dict[str, Any] = {
            "kind": entry["kind"],
            "label": action.label,
            "ids": entry["ids"],
            "count": len(entry["ids"]),
            "at": entry["at"],
            "states": sorted(states.items()),
            "finished": all(r.is_finished for r in found),
        }
        if len(results) == 1 and found:
            row.update(_details(found[0]))
        rows.append(row)
    return rows


def _result(task: Any, job_id: str) -> Any:
    try:
        return task.get_result(job_id)
    except TaskResultDoesNotExist:
        return None


def _details(result: Any) -> dict[str, Any]:
    details: dict[str, Any] = {
        "id": result.id,
        "queue": result.queue,
        "state": result.state,
        "status": result.status,
        "attempts": result.attempts,
        "outcome": "",
    }
    if result.status == TaskResultStatus.SUCCESSFUL:
        details["outcome"] = f"→ {result.return_value!r}"
    elif result.errors:
        last_line = result.errors[-1].traceback.strip().splitlines()[-1:] or [""]
        details["outcome"] = f"{len(result.errors)} error(s), last: {last_line[0]}"
    return details
