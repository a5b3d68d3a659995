"""What operators do to jobs and queues: cancel, retry, delete, pause, resume, purge.

The one way in to the engine's bulk actions: the admin, ``manage.py jobs``,
:meth:`~django_jobs.tasks.JobResult.cancel` and :mod:`django_jobs.limits` call these functions.
Each job action takes jobs by id (``(queue, job id)`` pairs, or plain ids with ``queue=``) or by
a :class:`JobFilter` (a queue, states and optionally a job name), and returns a typed
:class:`OperationResult`: per id, what was done and what was skipped and why
(:class:`SkipReason`). Every job is its own atomic script call (pipelined, 1,000 per round
trip), so a job that changed meanwhile is left alone and reported as skipped.

>>> from django_jobs import operations
>>> result = operations.retry(operations.JobFilter("default", states=("failed",)))  # doctest: +SKIP
>>> result.done_count, result.skip_counts()  # doctest: +SKIP
(12, {<SkipReason.UNIQUE_KEY_HELD: ...>: 1})

See docs/operations.md.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from enum import IntEnum, StrEnum
from typing import TYPE_CHECKING

from django_jobs.engine.protocol import CancelCode, DeleteCode, RetryCode
from django_jobs.engine.record import decode_payload
from django_jobs.exceptions import InvalidJob

if TYPE_CHECKING:
    from django_jobs.engine.queue import Engine

__all__ = [
    "CANCELLABLE",
    "PURGEABLE",
    "RETRYABLE",
    "Action",
    "JobFilter",
    "JobRef",
    "OperationResult",
    "Preview",
    "PurgeResult",
    "QueuesResult",
    "SkipReason",
    "Skipped",
    "cancel",
    "delete",
    "pause",
    "preview",
    "purge",
    "resume",
    "retry",
]

#: States a cancel may target (finished jobs cannot be cancelled).
CANCELLABLE = ("waiting", "scheduled", "waiting_children", "active")
#: States a retry may target.
RETRYABLE = ("failed", "cancelled")
#: States a delete by filter may target (running jobs cannot be deleted).
DELETABLE = ("waiting", "scheduled", "waiting_children", "completed", "failed", "cancelled")
#: States ``purge`` may empty.
PURGEABLE = ("completed", "failed", "cancelled")
#: Job ids per engine call (the engine pipelines them 1,000 per script call).
CHUNK = 10_000
#: Ids read per page when a filter walks a state.
PAGE = 1_000

#: ``(queue, job id)``.
JobRef = tuple[str, str]
#: Called after each chunk with (jobs processed so far, jobs selected).
Progress = Callable[[int, int], None]


class Action(StrEnum):
    """What an operation did."""

    CANCEL = "cancel"
    RETRY = "retry"
    DELETE = "delete"
    PAUSE = "pause"
    RESUME = "resume"
    PURGE = "purge"


class SkipReason(StrEnum):
    """Why a job was left as it was; the value is the text an operator reads."""

    NOT_FOUND = "no longer in Redis"
    ALREADY_FINISHED = "already finished"
    NOT_RETRYABLE = "not failed or cancelled"
    UNIQUE_KEY_HELD = "their unique key is held by another job"
    #: A flow parent that failed because a child failed: retry it together with its failed children.
    CHILD_FAILED = "flow parents that failed through a child not retried with them (retry the child)"
    NOT_DELETABLE = "running or waited for by a flow parent (cancel them first)"
    #: No longer given (RetryCode.CROSS_SLOT is no longer returned: a retry re-opens jobs on other
    #: slots through the outbox); kept so that code naming it still works.
    CROSS_SLOT_FLOW = "jobs of a flow over several Redis Cluster slots that failed their flow (enqueue the flow again)"
    #: The script returned a code this version does not know (see :attr:`Skipped.code`).
    UNKNOWN_CODE = "unexpected script code"


@dataclass(frozen=True, slots=True)
class Skipped:
    """One job an operation left alone."""

    queue: str
    job_id: str
    reason: SkipReason
    #: The script's code for :attr:`SkipReason.UNKNOWN_CODE` (None otherwise).
    code: int | None = None

    @property
    def message(self) -> str:
        """The reason as text; an unknown code names the code."""
        if self.reason is SkipReason.UNKNOWN_CODE:
            return f"{self.reason.value} {self.code}"
        return self.reason.value


@dataclass(frozen=True, slots=True)
class OperationResult:
    """What a cancel, retry or delete did, per job."""

    action: Action
    #: The jobs the action changed (cancelled, retried, deleted).
    done: tuple[JobRef, ...] = ()
    #: Cancel only: running jobs whose worker was asked to stop them.
    requested: tuple[JobRef, ...] = ()
    skipped: tuple[Skipped, ...] = ()

    @property
    def done_count(self) -> int:
        return len(self.done)

    @property
    def requested_count(self) -> int:
        return len(self.requested)

    def skip_counts(self) -> dict[SkipReason, int]:
        """How many jobs were skipped for each reason."""
        return dict(Counter(s.reason for s in self.skipped))

    def skip_messages(self) -> dict[str, int]:
        """How many jobs were skipped for each reason, by its text (unknown codes apart)."""
        return dict(Counter(s.message for s in self.skipped))

    def outcome(self, job_id: str) -> Action | SkipReason | str:
        """What happened to ``job_id``: the action, ``"requested"``, or the skip reason.

        Raises:
            KeyError: the job was not part of this operation.
        """
        if any(j == job_id for _, j in self.done):
            return self.action
        if any(j == job_id for _, j in self.requested):
            return "requested"
        for skip in self.skipped:
            if skip.job_id == job_id:
                return skip.reason
        raise KeyError(job_id)


@dataclass(frozen=True, slots=True)
class QueuesResult:
    """What a pause or resume did."""

    action: Action
    queues: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class PurgeResult:
    """What a purge deleted."""

    queue: str
    state: str
    deleted: int
    #: True when ``limit`` stopped the purge before the state was empty.
    limited: bool = False


@dataclass(frozen=True, slots=True)
class JobFilter:
    """Jobs of ``queue`` in ``states``, optionally only those of job ``name``."""

    queue: str
    states: tuple[str, ...]
    name: str | None = None
    #: Most jobs selected (None: all of them).
    limit: int | None = field(default=None, compare=False)


# -- helpers ---------------------------------------------------------------------------------


def _engine() -> Engine:
    from django_jobs.engine import get_engine

    return get_engine()


def queues(names: str | Iterable[str] | None = None) -> list[str]:
    """Return ``names`` as a list of configured queues (``None``: every configured queue).

    Raises:
        InvalidJob: a queue is not configured.
    """
    from django_jobs.conf import get_settings

    configured = get_settings().queue_names
    if names is None:
        return list(configured)
    listed = [names] if isinstance(names, str) else list(names)
    for name in listed:
        if name not in configured:
            raise InvalidJob(f"Queue {name!r} is not configured. Add it to DJANGO_JOBS['QUEUES'].")
    return listed


def _check_states(action: Action, states: Sequence[str], allowed: Sequence[str]) -> None:
    if not states:
        raise InvalidJob(f"Name the states to {action.value}: {', '.join(allowed)}.")
    for state in states:
        if state not in allowed:
            raise InvalidJob(f"Cannot {action.value} {state!r} jobs; states: {', '.join(allowed)}.")


def _job_name(data: dict[str, str]) -> str | None:
    payload = decode_payload(data.get("d"))
    return None if payload.problem else payload.name


def _select(flt: JobFilter) -> list[JobRef]:
    """Return the jobs ``flt`` selects, read before any of them is changed."""
    engine = _engine()
    [queue] = queues(flt.queue)
    out: list[JobRef] = []
    for state in flt.states:
        offset = 0
        while flt.limit is None or len(out) < flt.limit:
            if flt.name is None:
                ids = engine.state_page(queue, state, offset=offset, limit=PAGE)
                out.extend((queue, job_id) for job_id in ids)
                count = len(ids)
            else:
                _total, rows = engine.list_jobs(queue, state, offset=offset, limit=PAGE)
                out.extend((queue, job_id) for job_id, data in rows if _job_name(data) == flt.name)
                count = len(rows)
            if count < PAGE:
                break
            offset += PAGE
    return out if flt.limit is None else out[: flt.limit]


def _targets(jobs: JobFilter | Iterable[JobRef | str], queue: str | None) -> list[JobRef]:
    if isinstance(jobs, JobFilter):
        return _select(jobs)
    out: list[JobRef] = []
    for item in jobs:
        if isinstance(item, str):
            if queue is None:
                raise InvalidJob(f"Job id {item!r} given without its queue: pass queue=... or (queue, id) pairs.")
            out.append((queue, item))
        else:
            out.append((item[0], item[1]))
    return out


def _apply(
    action: Action,
    refs: list[JobRef],
    call: Callable[[Engine, str, list[str]], list[int]],
    classify: Callable[[int], Action | str | SkipReason | None],
    progress: Progress | None,
    size: int,
) -> OperationResult:
    """Call the engine per queue and chunk of ids and sort each id by its code."""
    by_queue: dict[str, list[str]] = {}
    for queue, job_id in refs:
        by_queue.setdefault(queue, []).append(job_id)
    engine = _engine()
    done: list[JobRef] = []
    requested: list[JobRef] = []
    skipped: list[Skipped] = []
    processed = 0
    for queue, ids in by_queue.items():
        for start in range(0, len(ids), size):
            chunk = ids[start : start + size]
            for job_id, code in zip(chunk, call(engine, queue, chunk), strict=True):
                kind = classify(code)
                if kind is action:
                    done.append((queue, job_id))
                elif kind == "requested":
                    requested.append((queue, job_id))
                elif isinstance(kind, SkipReason):
                    skipped.append(Skipped(queue, job_id, kind))
                else:
                    skipped.append(Skipped(queue, job_id, SkipReason.UNKNOWN_CODE, code))
            processed += len(chunk)
            if progress is not None:
                progress(processed, len(refs))
    return OperationResult(action, tuple(done), tuple(requested), tuple(skipped))


def _code[E: IntEnum](enum: type[E], code: int) -> E | None:
    try:
        return enum(code)
    except ValueError:
        return None


# -- job actions -----------------------------------------------------------------------------


def cancel(
    jobs: JobFilter | Iterable[JobRef | str],
    *,
    queue: str | None = None,
    progress: Progress | None = None,
    chunk: int = CHUNK,
) -> OperationResult:
    """Cancel jobs: waiting, scheduled and waiting-for-children ones will never run; running ones
    are asked to stop (:attr:`OperationResult.requested`). Finished jobs are skipped.

    ``jobs``: ``(queue, job id)`` pairs, plain ids with ``queue=``, or a :class:`JobFilter`.
    ``progress`` is called after each ``chunk`` of ids with (ids processed, ids selected).
    """
    if isinstance(jobs, JobFilter):
        _check_states(Action.CANCEL, jobs.states, CANCELLABLE)

    def classify(code: int) -> Action | str | SkipReason | None:
        match _code(CancelCode, code):
            case CancelCode.CANCELLED:
                return Action.CANCEL
            case CancelCode.REQUESTED:
                return "requested"
            case CancelCode.FINISHED:
                return SkipReason.ALREADY_FINISHED
            case CancelCode.UNKNOWN:
                return SkipReason.NOT_FOUND
        return None

    def call(engine: Engine, q: str, ids: list[str]) -> list[int]:
        # One job: the single cancel script (same transition; no bulk script call for one id).
        return [engine.cancel(q, ids[0])] if len(ids) == 1 else engine.cancel_many(q, ids)

    return _apply(Action.CANCEL, _targets(jobs, queue), call, classify, progress, chunk)


def retry(
    jobs: JobFilter | Iterable[JobRef | str],
    *,
    queue: str | None = None,
    progress: Progress | None = None,
    chunk: int = CHUNK,
) -> OperationResult:
    """Move failed or cancelled jobs back to waiting; attempts start over.

    A job whose unique key another job now guards is skipped (:attr:`SkipReason.UNIQUE_KEY_HELD`),
    and so is a flow parent that failed through a child unless its failed children are retried
    with it (:attr:`SkipReason.CHILD_FAILED`).
    """
    if isinstance(jobs, JobFilter):
        _check_states(Action.RETRY, jobs.states, RETRYABLE)

    def classify(code: int) -> Action | str | SkipReason | None:
        match _code(RetryCode, code):
            case RetryCode.RETRIED:
                return Action.RETRY
            case RetryCode.NOT_RETRYABLE:
                return SkipReason.NOT_RETRYABLE
            case RetryCode.GUARDED:
                return SkipReason.UNIQUE_KEY_HELD
            case RetryCode.UNKNOWN:
                return SkipReason.NOT_FOUND
            case RetryCode.CHILD_FAILED:
                return SkipReason.CHILD_FAILED
            case RetryCode.CROSS_SLOT:
                return SkipReason.CROSS_SLOT_FLOW
        return None

    return _apply(Action.RETRY, _targets(jobs, queue), lambda e, q, ids: e.retry_many(q, ids), classify, progress, chunk)


def delete(
    jobs: JobFilter | Iterable[JobRef | str],
    *,
    queue: str | None = None,
    progress: Progress | None = None,
    chunk: int = CHUNK,
) -> OperationResult:
    """Delete jobs from Redis; running jobs and unfinished children of a flow are skipped.

    Deleting a flow parent that waits for its children cancels them first.
    """
    if isinstance(jobs, JobFilter):
        _check_states(Action.DELETE, jobs.states, DELETABLE)

    def classify(code: int) -> Action | str | SkipReason | None:
        match _code(DeleteCode, code):
            case DeleteCode.DELETED:
                return Action.DELETE
            case DeleteCode.KEPT:
                return SkipReason.NOT_DELETABLE
            case DeleteCode.UNKNOWN:
                return SkipReason.NOT_FOUND
        return None

    return _apply(Action.DELETE, _targets(jobs, queue), lambda e, q, ids: e.delete_jobs(q, ids), classify, progress, chunk)


# -- dry run -------------------------------------------------------------------------------

#: States in which a delete leaves a flow child alone (its parent waits for it): delete.lua.
_DELETE_KEEPS = ("waiting", "scheduled", "waiting_children")


@dataclass(frozen=True, slots=True)
class Preview:
    """What a cancel, retry or delete would do, read from Redis without changing anything.

    The jobs are read when the preview is made: a job that changes before the action runs is
    sorted by the action itself (its :class:`OperationResult` is the truth). A retry preview does
    not check unique keys (:attr:`SkipReason.UNIQUE_KEY_HELD` is only known when it runs), and
    a retried failed child also re-opens the flow parent that failed through it (not counted).
    """

    action: Action
    #: How many jobs the action would be given (the whole selection).
    selected: int
    #: How many of them it would change (for a cancel: including running ones asked to stop).
    would: int
    #: Cancel only: how many of ``would`` are running and would only be asked to stop.
    requested: int = 0
    skipped: tuple[Skipped, ...] = ()

    def skip_counts(self) -> dict[SkipReason, int]:
        """How many jobs would be skipped for each reason."""
        return dict(Counter(s.reason for s in self.skipped))


def _retry_kind(
    engine: Engine, ref: JobRef, fields: list[str | None], chosen: set[JobRef]
) -> Action | SkipReason:
    state, pend = fields[0], fields[1]
    if state is None:
        return SkipReason.NOT_FOUND
    if state not in RETRYABLE:
        return SkipReason.NOT_RETRYABLE
    if int(pend or 0) > 0:  # a flow parent that ended while it waited: the flows retry rule
        from django_jobs.engine.record import JobView

        view = JobView.from_hash(ref[0], ref[1], engine.get_job(*ref) or {})
        kids = [(q, kid) for _base, kid, q, _name in view.children
                if view.child_ends.get(kid, {}).get("s") in ("failed", "cancelled")]
        policies = engine.job_fields(kids, ("fp",))
        # Only children of the parent's own queue retried in the same call re-open it (retry.lua).
        if any(p[0] not in ("i", "r") and (kid[0] != ref[0] or kid not in chosen) for kid, p in zip(kids, policies, strict=True)):
            return SkipReason.CHILD_FAILED
    return Action.RETRY


def preview(action: Action | str, jobs: JobFilter | Iterable[JobRef | str], *, queue: str | None = None) -> Preview:
    """Say what :func:`cancel`, :func:`retry` or :func:`delete` would do to ``jobs``; change nothing.

    The same selection rules and skip reasons as the action (:class:`Preview` says what a
    dry run cannot know). The admin shows it on the confirmation page of its bulk actions.
    """
    action = Action(action)
    if action not in (Action.CANCEL, Action.RETRY, Action.DELETE):
        raise InvalidJob(f"Cannot preview {action.value!r}: only cancel, retry and delete.")
    refs = _targets(jobs, queue)
    engine = _engine()
    chosen = set(refs)
    would = requested = 0
    skipped: list[Skipped] = []
    for start in range(0, len(refs), PAGE):
        chunk = refs[start : start + PAGE]
        for ref, fields in zip(chunk, engine.job_fields(chunk, ("s", "pend", "pb")), strict=True):
            state = fields[0]
            kind: Action | SkipReason | str
            if action is Action.RETRY:
                kind = _retry_kind(engine, ref, fields, chosen)
            elif state is None:
                kind = SkipReason.NOT_FOUND
            elif action is Action.CANCEL:
                kind = SkipReason.ALREADY_FINISHED if state not in CANCELLABLE else "requested" if state == "active" else action
            else:
                kind = SkipReason.NOT_DELETABLE if state == "active" or (fields[2] and state in _DELETE_KEEPS) else action
            if isinstance(kind, SkipReason):
                skipped.append(Skipped(ref[0], ref[1], kind))
            else:
                would += 1
                requested += kind == "requested"
    return Preview(action, len(refs), would, requested, tuple(skipped))


# -- queue actions ---------------------------------------------------------------------------


def pause(names: str | Iterable[str] | None = None) -> QueuesResult:
    """Stop every worker taking jobs from ``names`` (``None``: every configured queue).

    Enqueues keep working; running jobs finish.
    """
    listed = queues(names)
    engine = _engine()
    for name in listed:
        engine.pause(name)
    return QueuesResult(Action.PAUSE, tuple(listed))


def resume(names: str | Iterable[str] | None = None) -> QueuesResult:
    """Let workers take jobs from ``names`` again (``None``: every configured queue)."""
    listed = queues(names)
    engine = _engine()
    for name in listed:
        engine.resume(name)
    return QueuesResult(Action.RESUME, tuple(listed))


def purge(
    queue: str, state: str, *, limit: int | None = None, progress: Progress | None = None, chunk: int = PAGE
) -> PurgeResult:
    """Delete the finished jobs of ``queue`` in ``state`` (completed, failed or cancelled).

    ``limit`` caps how many are deleted (None: all); ``progress`` is called with
    (deleted so far, jobs in the state when the purge started).
    """
    [queue] = queues(queue)
    if state not in PURGEABLE:
        raise InvalidJob(f"Only finished jobs can be purged ({', '.join(PURGEABLE)}), not {state!r}.")
    engine = _engine()
    total = engine.counts(queue)[state] if progress is not None else 0
    deleted = 0
    while limit is None or deleted < limit:
        step = chunk if limit is None else min(chunk, limit - deleted)
        count = engine.purge(queue, state, limit=step)
        if count == 0:
            return PurgeResult(queue, state, deleted)
        deleted += count
        if progress is not None:
            progress(deleted, total)
    return PurgeResult(queue, state, deleted, limited=engine.counts(queue)[state] > 0)
