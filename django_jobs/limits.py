"""Flow control (docs/flow-control.md): limits, unique jobs, pause of all queues, bulk actions.

- Queue rate and concurrency limits, enforced inside the engine's ``fetch`` script
  (``lua/includes/queue_limits.lua``), so they hold across every worker process and machine.
  Settings give each queue its default (``DJANGO_JOBS["QUEUES"][name]["RATE_LIMIT"]`` and
  ``["CONCURRENCY"]``); an override stored in Redis with :func:`set_queue_limits` wins over the
  settings until :func:`reset_queue_limits`.
- The unique and per-key limit options of ``@job`` (checked when the job is declared, turned
  into an :class:`~django_jobs.engine.queue.Guard` at each enqueue: ``enqueue_guarded.lua``).
- :func:`pause_queues`, :func:`resume_queues`, :func:`cancel_jobs`, :func:`retry_jobs`.

>>> set_queue_limits("emails", rate="100/m", concurrency=5)  # doctest: +SKIP
>>> queue_limits("emails")  # doctest: +SKIP
QueueLimits(rate='100/m', concurrency=5, overridden=True)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django_jobs.engine.protocol import GuardMode, GuardUntil, JobState

# The limit values are defined below conf and the engine (django_jobs.rates); offered here too.
from django_jobs.rates import (
    MAX_RATE,
    PERIOD_NAMES,
    PERIODS_MS,
    UNSET,
    Rate,
    parse_concurrency,
    parse_rate,
)

__all__ = [
    "CANCELLABLE",
    "MAX_RATE",
    "MAX_UNIQUE_KEY",
    "PERIODS_MS",
    "PERIOD_NAMES",
    "UNIQUE_MODES",
    "UNIQUE_UNTIL",
    "UNSET",
    "QueueLimits",
    "Rate",
    "cancel_jobs",
    "guard_for_call",
    "has_guard",
    "is_unique",
    "parse_concurrency",
    "parse_rate",
    "pause_queues",
    "queue_limits",
    "reset_queue_limits",
    "resume_queues",
    "retry_jobs",
    "set_queue_limits",
    "shard_key_for_call",
    "shard_problem",
    "validate_limit_options",
    "validate_unique_options",
]


@dataclass(frozen=True, slots=True)
class QueueLimits:
    """The limits in force on one queue (``None``: no limit)."""

    #: At most this many starts per period across all workers, e.g. ``"100/m"``.
    rate: str | None
    #: At most this many jobs running at once across all workers.
    concurrency: int | None
    #: True when a run-time override (:func:`set_queue_limits`) is in force instead of the settings.
    overridden: bool = False


def set_queue_limits(queue: str, *, rate: Any = UNSET, concurrency: Any = UNSET) -> QueueLimits:
    """Change the limits of ``queue`` for every worker at once, until :func:`reset_queue_limits`.

    ``rate`` is ``"N/s"``, ``"N/m"`` or ``"N/h"``; ``concurrency`` a whole number. ``None``
    lifts that limit (whatever the settings say); a limit not given is left as it is.
    Returns the limits now in force.

    Raises:
        InvalidJob: ``queue`` is not configured, or a value is not valid.
    """
    from django_jobs.engine import get_engine

    engine = get_engine()
    _check_queue(engine, queue)
    try:
        rate_value = UNSET if rate is UNSET else (None if rate is None else parse_rate(rate))
        conc_value = UNSET if concurrency is UNSET else (None if concurrency is None else parse_concurrency(concurrency))
    except ValueError as exc:
        from django_jobs.exceptions import InvalidJob

        raise InvalidJob(f"{exc} (queue {queue!r})") from exc
    engine.set_queue_limits(queue, rate=rate_value, concurrency=conc_value)
    return queue_limits(queue)


def reset_queue_limits(queue: str) -> QueueLimits:
    """Drop the run-time overrides of ``queue``: the settings' limits apply again."""
    from django_jobs.engine import get_engine

    engine = get_engine()
    _check_queue(engine, queue)
    engine.reset_queue_limits(queue)
    return queue_limits(queue)


def queue_limits(queue: str) -> QueueLimits:
    """Return the limits in force on ``queue`` (override, else settings)."""
    from django_jobs.engine import get_engine

    engine = get_engine()
    _check_queue(engine, queue)
    rate, concurrency, overridden = engine.queue_limits(queue)
    return QueueLimits(rate=None if rate is None else str(rate), concurrency=concurrency, overridden=overridden)


def _check_queue(engine: Any, queue: str) -> None:
    if queue not in engine.settings.queues:
        from django_jobs.exceptions import InvalidJob

        raise InvalidJob(f"Queue {queue!r} is not configured. Add it to DJANGO_JOBS['QUEUES'].")


# -- unique jobs and debounce (enqueue_unique.lua) ------------------------------------------

#: What ``unique_mode`` may be: keep the guarded job (deduplicate) or replace it (debounce).
UNIQUE_MODES = {"keep": GuardMode.KEEP, "replace": GuardMode.REPLACE}
#: What ``unique_until`` may be: the key is held until the job starts, or until it finishes.
UNIQUE_UNTIL = {"start": GuardUntil.START, "finish": GuardUntil.FINISH}
#: Longer rendered keys are replaced by their SHA-1 (Redis key names stay short).
MAX_UNIQUE_KEY = 200


def is_unique(task: Any) -> bool:
    """Return True when ``task`` declares a unique key, a throttle window or debounce."""
    return bool(getattr(task, "unique", False) or getattr(task, "unique_key", None) or getattr(task, "unique_for", None)
                or getattr(task, "unique_mode", "keep") != "keep")


def validate_unique_options(task: Any) -> None:
    """Check a job's unique options when it is declared.

    Raises:
        InvalidJob: an option has a wrong value, or a key template names no argument of the job.
    """
    from django_jobs.exceptions import InvalidJob

    name = task.module_path
    if task.unique_mode not in UNIQUE_MODES:
        raise InvalidJob(f"{name}: unique_mode={task.unique_mode!r} is not valid; use 'keep' (deduplicate) or 'replace' (debounce).")
    if task.unique_until not in UNIQUE_UNTIL:
        raise InvalidJob(f"{name}: unique_until={task.unique_until!r} is not valid; use 'start' or 'finish'.")
    window = task.unique_for
    if window is not None and (isinstance(window, bool) or not isinstance(window, (int, float)) or not 0 < window < float("inf")):
        raise InvalidJob(f"{name}: unique_for={window!r} must be a positive number of seconds.")
    _check_template(task, "unique_key", task.unique_key)


def _parameters(task: Any) -> list[str]:
    import inspect

    params = list(inspect.signature(task.func).parameters)
    return params[1:] if task.takes_context else params


def has_guard(task: Any) -> bool:
    """Return True when ``task`` declares a unique key (or throttle, debounce) or a limit key."""
    return is_unique(task) or bool(getattr(task, "limit_key", None))


def validate_limit_options(task: Any) -> None:
    """Check a job's per-key limit options when it is declared.

    Raises:
        InvalidJob: a value is wrong, the key template names no argument, or no limit is given.
    """
    from django_jobs.exceptions import InvalidJob

    name = task.module_path
    if task.limit_concurrency is None and task.limit_rate is None:
        raise InvalidJob(f"{name}: limit_key={task.limit_key!r} needs limit_concurrency=N and/or limit_rate='N/s'.")
    try:
        if task.limit_concurrency is not None:
            parse_concurrency(task.limit_concurrency)
        if task.limit_rate is not None:
            parse_rate(task.limit_rate)
    except ValueError as exc:
        raise InvalidJob(f"{name}: {exc}") from None
    _check_template(task, "limit_key", task.limit_key)


def _check_template(task: Any, option: str, key: Any) -> None:
    import string

    from django_jobs.exceptions import InvalidJob

    name = task.module_path
    if key is None or callable(key):
        return
    if not isinstance(key, str) or not key:
        raise InvalidJob(f"{name}: {option}={key!r} must be a template string like 'customer:{{customer_id}}' or a callable.")
    params = _parameters(task)
    try:
        fields = [field for _, field, _, _ in string.Formatter().parse(key) if field is not None]
    except ValueError as exc:
        raise InvalidJob(f"{name}: {option}={key!r} is not a valid template: {exc}.") from None
    for field in fields:
        root = field.split(".")[0].split("[")[0]
        if root not in params:
            raise InvalidJob(
                f"{name}: {option}={key!r} names {{{root}}}, which is not an argument of the job. "
                f"Arguments: {', '.join(params) or 'none'}."
            )


def _render(task: Any, option: str, key: Any, args: Any, kwargs: Any) -> str:
    """Return ``key`` (a template, a callable or None: a digest of all arguments) for one call."""
    import hashlib
    import inspect
    import json

    from django_jobs.exceptions import InvalidJob

    name = task.module_path
    if callable(key):
        try:
            rendered = key(*args, **kwargs)
        except TypeError as exc:
            raise InvalidJob(f"{name}: {option}({', '.join(map(repr, args))}) failed: {exc}. It gets the job's arguments.") from None
        if not isinstance(rendered, (str, int)) or rendered == "":
            raise InvalidJob(f"{name}: {option} returned {rendered!r}; it must return a non-empty string.")
        rendered = str(rendered)
    else:
        signature = inspect.signature(task.func)
        try:
            bound = signature.bind(None, *args, **kwargs) if task.takes_context else signature.bind(*args, **kwargs)
        except TypeError as exc:
            raise InvalidJob(f"{name}: {exc}") from None
        bound.apply_defaults()
        arguments = dict(bound.arguments)
        if task.takes_context:
            arguments.pop(next(iter(signature.parameters)))
        if key is None:
            canonical = json.dumps(arguments, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
            rendered = hashlib.sha1(canonical.encode(), usedforsecurity=False).hexdigest()
        else:
            rendered = str(key.format_map(arguments))
    if len(rendered) > MAX_UNIQUE_KEY:
        rendered = "sha1:" + hashlib.sha1(rendered.encode(), usedforsecurity=False).hexdigest()
    return rendered


def guard_for_call(task: Any, args: Any, kwargs: Any) -> Any:
    """Return the :class:`~django_jobs.engine.queue.Guard` of one enqueue of ``task`` (None: none)."""
    from django_jobs.engine.queue import Guard

    options: dict[str, Any] = {}
    if is_unique(task):
        options.update(
            key=f"{task.module_path}:{_render(task, 'unique_key', task.unique_key, args, kwargs)}",
            mode=UNIQUE_MODES[task.unique_mode], until=UNIQUE_UNTIL[task.unique_until],
            window_ms=int(task.unique_for * 1000) if task.unique_for else 0,
        )
    if getattr(task, "limit_key", None):
        rate = parse_rate(task.limit_rate) if task.limit_rate is not None else None
        options.update(
            limit_key=_render(task, "limit_key", task.limit_key, args, kwargs),
            limit_concurrency=task.limit_concurrency or 0,
            limit_rate=rate.count if rate else 0, limit_period_ms=rate.period_ms if rate else 1000,
        )
    return Guard(**options) if options else None


# -- sharded queues (docs/scaling.md#sharded-queues) -----------------------------------------


def shard_problem(task: Any, shards: int) -> str | None:
    """Return why ``task`` cannot run on a queue of ``shards`` shards as declared (None: it can).

    On a sharded queue a unique key or a limit key holds only if that key decides the shard,
    so it is the placement key, and a job cannot have two different ones.
    """
    if shards <= 1:
        return None
    name, queue = task.module_path, task.queue_name
    unique, limit = is_unique(task), bool(getattr(task, "limit_key", None))
    if unique and limit and task.unique_key != task.limit_key:
        return (
            f"Job {name!r} has a unique key and a per-key limit on queue {queue!r}, which has SHARDS={shards}: "
            "each needs its key to decide the shard, and the two keys differ, so one of them could not hold."
        )
    if (unique or limit) and getattr(task, "shard_key", None) is not None:
        which = "unique key" if unique else "limit key"
        return (
            f"Job {name!r} sets shard_key on queue {queue!r} (SHARDS={shards}), but its {which} decides the shard "
            f"there (so that it holds across the shards)."
        )
    return None


def shard_key_for_call(task: Any, args: Any, kwargs: Any) -> str | None:
    """Return the key that places one enqueue of ``task`` on a sharded queue (None: round robin).

    The limit key when the job has one (equal to its unique key if it has both), else the unique
    key, else ``shard_key``.
    """
    if getattr(task, "limit_key", None):
        return "l:" + _render(task, "limit_key", task.limit_key, args, kwargs)
    if is_unique(task):
        return "u:" + _render(task, "unique_key", task.unique_key, args, kwargs)
    key = getattr(task, "shard_key", None)
    return None if key is None else "s:" + _render(task, "shard_key", key, args, kwargs)


# -- pause, resume and bulk actions ---------------------------------------------------------

#: States a bulk cancel may target (finished jobs cannot be cancelled).
CANCELLABLE = (JobState.WAITING, JobState.SCHEDULED, JobState.WAITING_CHILDREN, JobState.ACTIVE)


def pause_queues(queues: str | list[str] | None = None) -> list[str]:
    """Stop every worker taking jobs from ``queues`` (``None``: every configured queue).

    Enqueues keep working; running jobs finish. Returns the queues paused.

    >>> pause_queues()  # doctest: +SKIP
    ['default', 'emails']
    """
    from django_jobs import operations

    return list(operations.pause(queues).queues)


def resume_queues(queues: str | list[str] | None = None) -> list[str]:
    """Let workers take jobs from ``queues`` again (``None``: every configured queue)."""
    from django_jobs import operations

    return list(operations.resume(queues).queues)


def cancel_jobs(queue: str, *, states: tuple[str, ...] = ("waiting", "scheduled"), name: str | None = None) -> dict[str, int]:
    """Cancel every job of ``queue`` in ``states`` (optionally only those of job ``name``).

    Waiting and scheduled jobs are cancelled; active ones (``states`` including ``"active"``)
    are asked to stop. Each job is its own atomic ``cancel`` call (pipelined), so a job that
    finished meanwhile is left alone. Returns ``{"cancelled": n, "requested": n, "finished": n}``.

    >>> cancel_jobs("emails", name="myapp.jobs.send_digest")  # doctest: +SKIP
    {'cancelled': 120, 'requested': 0, 'finished': 0}
    """
    from django_jobs import operations
    from django_jobs.exceptions import InvalidJob

    for state in states:
        if state not in CANCELLABLE:
            raise InvalidJob(f"Cannot cancel {state!r} jobs; states: {', '.join(CANCELLABLE)}.")
    result = operations.cancel(operations.JobFilter(queue, tuple(states), name))
    finished = result.skip_counts().get(operations.SkipReason.ALREADY_FINISHED, 0)
    return {"cancelled": result.done_count, "requested": result.requested_count, "finished": finished}


def retry_jobs(queue: str, *, states: tuple[str, ...] = ("failed",), name: str | None = None) -> int:
    """Move every failed (and/or cancelled) job of ``queue`` back to waiting; returns how many.

    ``name`` keeps only the jobs of that job name. Attempts and errors start over. A job whose
    unique key another job now guards is left as it is (not counted).
    """
    from django_jobs import operations
    from django_jobs.exceptions import InvalidJob

    for state in states:
        if state not in operations.RETRYABLE:
            raise InvalidJob(f"Only failed or cancelled jobs can be retried, not {state!r}.")
    return operations.retry(operations.JobFilter(queue, tuple(states), name)).done_count
