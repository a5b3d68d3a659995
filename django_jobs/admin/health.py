"""Is a queue stuck? Per queue: the oldest waiting job's age, done and failed per minute, warnings.

Everything is read live through the engine (never Redis directly): the waiting line's heads
(:meth:`oldest_waiting_age`), the events of the last minute (:meth:`throughput`) and the
workers' heartbeats (:meth:`workers`).
"""

from __future__ import annotations

from typing import Any

#: The window of the per-minute rates, seconds (the engine reads the events stream back this far).
RATE_SECONDS = 60.0
#: A queue whose oldest waiting job is older than this while nothing finished in the window is stuck.
STUCK_SECONDS = 60.0


def serving_workers(workers: dict[str, dict[str, Any]]) -> dict[str, int]:
    """Return how many live worker processes serve each queue (from their heartbeats)."""
    serving: dict[str, int] = {}
    for info in workers.values():
        for queue in info.get("queues") or []:
            serving[queue] = serving.get(queue, 0) + 1
    return serving


def queue_health(engine: Any, queue: str, counts: dict[str, int], *, paused: bool, workers: int) -> dict[str, Any]:
    """Return the "is it stuck?" numbers of ``queue`` and the warnings they call for.

    ``oldest_age``: seconds the oldest waiting job has waited (None: nothing waits);
    ``done_per_min`` / ``failed_per_min``: jobs that completed / failed in the last minute;
    ``workers``: live worker processes serving the queue; ``warnings``: sentences for the operator.
    """
    waiting = counts.get("waiting", 0)
    oldest = engine.oldest_waiting_age(queue) if waiting else None
    rates = engine.throughput(queue, seconds=RATE_SECONDS)
    per_min = 60.0 / RATE_SECONDS
    done, failed = rates["completed"] * per_min, rates["failed"] * per_min
    warnings = []
    if waiting and not workers:
        warnings.append(f"No live worker serves this queue: {waiting} job{'s' if waiting != 1 else ''} wait. Start one with manage.py runworkers.")
    elif waiting and paused:
        warnings.append(f"Paused with {waiting} job{'s' if waiting != 1 else ''} waiting: resume it to run them.")
    elif waiting and oldest is not None and oldest > STUCK_SECONDS and not (rates["completed"] or rates["failed"] or rates["retrying"]):
        warnings.append(f"Nothing finished in the last {RATE_SECONDS:.0f} s although {waiting} job{'s' if waiting != 1 else ''} wait"
                        f" (the oldest for {oldest:.0f} s): are its workers busy with long jobs, or blocked by a limit?")
    return {
        "oldest_age": oldest, "done_per_min": done, "failed_per_min": failed, "retrying": rates["retrying"],
        "workers": workers, "warnings": warnings, "stuck": bool(warnings),
    }
