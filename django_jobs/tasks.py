"""Declaring and enqueuing jobs: :func:`job`, :class:`JobTask`, :class:`JobResult`.

``@job`` builds a :class:`JobTask`, our subclass of :class:`django.tasks.Task`, bound to
the :class:`~django_jobs.backends.RedisBackend`. ``@django.tasks.task`` builds the same
class when the TASKS backend is ours, so both spellings accept the same options.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from contextvars import ContextVar
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Protocol, cast, overload

from django_jobs import registry
from django_jobs.backoff import BackoffSpec
from django_jobs.compat import (
    DJANGO_HAS_TASKS,
    TASK_REFRESH_ATTRS,
    Task,
    TaskContext,
    TaskError,
    TaskResult,
    TaskResultStatus,
    task_backends,
)
from django_jobs.engine.protocol import JobState
from django_jobs.exceptions import ConfigurationError, InvalidJob

if TYPE_CHECKING:
    from django_jobs.engine.queue import NewJob
    from django_jobs.steps import ChildrenResults, Signature

#: Job states (DESIGN.md) mapped to django.tasks statuses.
STATE_TO_STATUS: dict[str, TaskResultStatus] = {
    JobState.WAITING: TaskResultStatus.READY,
    JobState.SCHEDULED: TaskResultStatus.READY,
    JobState.WAITING_CHILDREN: TaskResultStatus.READY,
    JobState.ACTIVE: TaskResultStatus.RUNNING,
    JobState.COMPLETED: TaskResultStatus.SUCCESSFUL,
    JobState.FAILED: TaskResultStatus.FAILED,
    JobState.CANCELLED: TaskResultStatus.FAILED,
}

#: True while a job is being declared (``@job``/``@task``), not copied by ``using()``.
declaring: ContextVar[bool] = ContextVar("django_jobs_declaring", default=False)

#: The largest progress value :meth:`JobContext.set_progress` takes, encoded as JSON.
MAX_PROGRESS_BYTES = 4096

#: The job states, in lifecycle order.
STATES = tuple(STATE_TO_STATUS)

BACKEND_PATH = "django_jobs.backends.RedisBackend"


@dataclass(frozen=True, slots=True)
class call:  # reads as a function at the call site
    """Arguments of one job in :meth:`JobTask.enqueue_many`.

    >>> call(1, urgent=True)
    call(args=(1,), kwargs={'urgent': True})
    """

    args: tuple[Any, ...]
    kwargs: dict[str, Any]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        object.__setattr__(self, "args", args)
        object.__setattr__(self, "kwargs", kwargs)


# django.tasks' classes are generic for type checkers only (django-stubs).
if TYPE_CHECKING:
    _Task = Task[..., Any]
    _TaskResult = TaskResult[..., Any]
    _TaskContext = TaskContext[..., Any]
else:
    _Task, _TaskResult, _TaskContext = Task, TaskResult, TaskContext


class JobsBackend(Protocol):
    """What the job API uses of django_jobs' backend beyond django.tasks' (backends.RedisBackend).

    Named here, below the backend, so that tasks, flows and the scheduler use it without
    importing the Django-facing backends module.
    """

    def enqueue_many(self, task: JobTask, calls: Sequence[tuple[Sequence[Any], dict[str, Any]]]) -> list[JobResult]: ...

    def enqueue_on_commit(self, task: JobTask, args: Sequence[Any], kwargs: dict[str, Any]) -> JobResult: ...

    def _prepare(
        self, task: JobTask, args: Sequence[Any], kwargs: dict[str, Any], job_id: str | None = None
    ) -> tuple[NewJob, JobResult]: ...


def jobs_backend(backend: object) -> JobsBackend | None:
    """Return ``backend`` if it is django_jobs' (its tasks are JobTasks), else None."""
    task_class = getattr(backend, "task_class", None)
    ours = isinstance(task_class, type) and issubclass(task_class, JobTask) and hasattr(backend, "_prepare")
    return cast(JobsBackend, backend) if ours else None


def time_ms() -> int:
    """Return the wall clock in ms (job ids, enqueue times)."""
    return time.time_ns() // 1_000_000


#: Per thread, backend alias -> (the handler's store it came from, the backend): Django's
#: ``task_backends[alias]`` goes through asgiref's ``Local`` on every call (~4 us). Only backends
#: that say they may be shared by a thread's contexts (``shared_per_thread``) are remembered; a
#: ``TASKS`` change gives the handler a new store, so the entry no longer matches.
_thread_backends = threading.local()


@dataclass(frozen=True, slots=True, kw_only=True)
class JobTask(_Task):
    """A :class:`django.tasks.Task` with django_jobs' options.

    Attributes:
        attempts: how many times the job may run before it fails for good (``None``: the
            queue's or ``DEFAULT_ATTEMPTS``).
        backoff: the delay between attempts: seconds, ``"exponential"`` (jittered),
            ``"fixed"``, ``"none"``, a dict ``{"type", "delay", "factor", "max", "jitter"}``
            or a callable ``f(attempt) -> seconds`` (``None``: ``DEFAULT_BACKOFF``).
        timeout: seconds one attempt may run (``None``: no limit).
        keep_result: seconds to keep the completed job and its result (``None``: retention settings).
        delay: seconds from each enqueue until the job may run, measured by Redis' clock
            (set with :meth:`using`; ``None``: run at once or at ``run_after``).
        isolated: run each attempt in a process forked for it, so a timeout or a crash
            ends only that process (docs/workers.md#isolated-jobs).
        unique, unique_key, unique_for, unique_mode, unique_until: unique jobs, throttling and
            debounce; limit_key, limit_concurrency, limit_rate: per-key limits (docs/flow-control.md).
        shard_key: on a queue with ``SHARDS``, the key that picks the shard (a template like
            ``"customer:{customer_id}"`` or a callable): jobs with one key stay on one shard, in
            order (``None``: round robin; docs/scaling.md#sharded-queues).
    """

    attempts: int | None = None
    backoff: BackoffSpec = None
    timeout: float | None = None
    keep_result: float | None = None
    delay: float | None = None
    isolated: bool = False
    # Flow control (django_jobs/limits.py, docs/flow-control.md).
    unique: bool = False
    unique_key: str | Callable[..., Any] | None = None
    unique_for: float | None = None
    unique_mode: str = "keep"
    unique_until: str = "start"
    limit_key: str | Callable[..., Any] | None = None
    limit_concurrency: int | None = None
    limit_rate: str | None = None
    shard_key: str | Callable[..., Any] | None = None

    def get_backend(self) -> Any:
        """Return the task's backend, as Django's ``Task.get_backend()`` does (remembered per thread)."""
        store = getattr(task_backends, "_connections", None)
        seen = _thread_backends.__dict__
        hit = seen.get(self.backend)
        if hit is not None and hit[0] is store:
            return hit[1]
        backend = task_backends[self.backend]
        if store is not None and getattr(backend, "shared_per_thread", False):
            seen[self.backend] = (store, backend)
        return backend

    def __post_init__(self) -> None:
        # Declaring a job (not a using() copy) never raises for a settings problem: a queue that
        # DJANGO_JOBS does not configure is reported by check (E011) and raised by enqueue.
        token = declaring.set(not registry.is_registered(self))
        try:
            Task.__post_init__(self)
        finally:
            declaring.reset(token)
        if not isinstance(self.isolated, bool):
            raise InvalidJob(f"isolated={self.isolated!r} must be True or False.")
        from django_jobs.limits import is_unique, validate_limit_options, validate_unique_options

        if is_unique(self):
            validate_unique_options(self)
        if self.limit_key is not None:
            validate_limit_options(self)
        if self.shard_key is not None:
            from django_jobs.limits import _check_template

            _check_template(self, "shard_key", self.shard_key)
        registry.register(self)

    def using(
        self,
        *,
        priority: int | None = None,
        queue_name: str | None = None,
        run_after: datetime | timedelta | float | None = None,
        backend: str | None = None,
        delay: float | timedelta | None = None,
        attempts: int | None = None,
        backoff: BackoffSpec = None,
        timeout: float | None = None,
        keep_result: float | None = None,
        shard_key: str | Callable[..., Any] | None = None,
    ) -> JobTask:
        """Return a copy of the job with other options for the next enqueue.

        ``delay`` (seconds or a timedelta, counted from each enqueue by Redis' clock) and
        ``run_after`` (an aware datetime) defer the job; when both are set, the later time wins.
        ``shard_key`` picks the shard on a queue with ``SHARDS`` (docs/scaling.md#sharded-queues).

        >>> send_report.using(priority=10, delay=30).enqueue(7)  # doctest: +SKIP
        """
        changes: dict[str, Any] = {}
        if delay is not None:
            seconds = delay.total_seconds() if isinstance(delay, timedelta) else float(delay)
            if not seconds >= 0 or seconds == float("inf"):
                raise InvalidJob(f"delay={delay!r} must be a finite, non-negative number of seconds.")
            changes["delay"] = seconds
        if isinstance(run_after, (int, float, timedelta)):
            raise InvalidJob("run_after must be an aware datetime; use delay= for seconds from now.")
        for field_name, value in (
            ("priority", priority),
            ("queue_name", queue_name),
            ("run_after", run_after),
            ("backend", backend),
            ("attempts", attempts),
            ("backoff", backoff),
            ("timeout", timeout),
            ("keep_result", keep_result),
            ("shard_key", shard_key),
        ):
            if value is not None:
                changes[field_name] = value
        return replace(self, **changes)

    def enqueue_many(self, calls: Iterable[tuple[Any, ...] | list[Any] | Mapping[str, Any] | call]) -> list[JobResult]:
        """Enqueue many jobs in one round trip.

        Each item is a tuple or list of positional arguments, a dict of keyword arguments,
        or a :class:`call` for both.

        >>> resize.enqueue_many([(1,), (2,), call(3, width=200)])  # doctest: +SKIP
        """
        if type(calls) is list and set(map(type, calls)) <= _TUPLE:  # the usual call: tuples of arguments, in a list
            return cast(JobsBackend, self.get_backend()).enqueue_many(self, [(item, {}) for item in calls])
        pairs: list[tuple[tuple[Any, ...], dict[str, Any]]] = []
        for item in calls:
            if type(item) is tuple:  # the usual item, before the ABC check below (~0.3 us per job)
                pairs.append((item, {}))
            elif isinstance(item, call):
                pairs.append((item.args, item.kwargs))
            elif isinstance(item, Mapping):
                pairs.append(((), dict(item)))
            elif isinstance(item, (tuple, list)):
                pairs.append((tuple(item), {}))
            else:
                raise TypeError(
                    f"enqueue_many() items must be tuples of arguments, dicts of keyword arguments "
                    f"or call(...) objects, not {type(item).__name__}."
                )
        return cast(JobsBackend, self.get_backend()).enqueue_many(self, pairs)

    def enqueue_on_commit(self, *args: Any, **kwargs: Any) -> JobResult:
        """Enqueue the job when the current database transaction commits (never on rollback).

        Arguments are checked now, so a bad argument fails in the caller. Outside a
        transaction the job is enqueued at once. The returned result's id is the id the
        job will have.
        """
        return cast(JobsBackend, self.get_backend()).enqueue_on_commit(self, args, kwargs)

    def s(self, *args: Any, **kwargs: Any) -> Signature[JobTask]:
        """Return a signature of this job with these arguments: a step of a flow (docs/flows.md).

        >>> Flow(store.s(7), children=[optimize.s(7)]).enqueue()  # doctest: +SKIP
        """
        from django_jobs.steps import Signature

        return Signature(task=self, args=tuple(args), kwargs=dict(kwargs))


#: What :meth:`JobResult.refresh` reloads: Django's attributes and django_jobs' own.
_REFRESHED = (*TASK_REFRESH_ATTRS, "state", "failure_reason", "progress", "earlier_errors")


#: The exact types normalize_json returns unchanged, and the sequences it turns into lists.
_PLAIN = frozenset({str, int, float, bool, type(None)})
_SEQUENCES = frozenset({list, tuple})
_TUPLE = frozenset({tuple})
#: Django's TaskResult (6.0+) normalises args and kwargs in __post_init__ (the backport too).
_NORMALIZES = DJANGO_HAS_TASKS


class _NotPlain(Exception):
    """A value :func:`_plain_copy` leaves to Django's ``normalize_json``."""


def _plain_copy(value: Any) -> Any:
    """Return ``normalize_json(value)`` for a value made of exact JSON types only; raise :class:`_NotPlain` otherwise.

    What Django's ``normalize_json`` returns for them, without its ABC checks (``Mapping``,
    ``Sequence``) on every value: a list for a list or tuple, a dict for a dict (keys kept as
    they are: an ``int`` key stays one, as there), the value itself for ``str``, ``int``,
    ``float``, ``bool`` and ``None``. Any other type (a subclass, bytes, a set...) raises.
    """
    kind = type(value)
    if kind in _PLAIN:
        return value
    if kind is list or kind is tuple:
        return [_plain_copy(v) for v in value]
    if kind is dict:
        if not _PLAIN.issuperset(map(type, value)):
            raise _NotPlain
        return {k: _plain_copy(v) for k, v in value.items()}
    raise _NotPlain


def _normalized(args: Any, kwargs: Any) -> tuple[list[Any], dict[str, Any]] | None:
    """Return ``args`` and ``kwargs`` as Django's ``TaskResult`` normalises them, when both are exact JSON types; else None.

    Flat arguments (the usual call) are copied with C-level type checks; nested lists, tuples
    and dicts of exact JSON types by :func:`_plain_copy` (a few hundred ns against Django's
    ``normalize_json`` and the ~10 us of the constructor that calls it). None leaves them to
    Django (docs/performance.md, "Bulk enqueue, Python per job").
    """
    if type(args) not in _SEQUENCES or type(kwargs) is not dict:
        return None
    try:
        flat = not args or _PLAIN.issuperset(map(type, args))
        plain_args = list(args) if flat else [_plain_copy(v) for v in args]
        if not kwargs:
            return plain_args, {}
        if _PLAIN.issuperset(map(type, kwargs.values())) and _PLAIN.issuperset(map(type, kwargs)):
            return plain_args, dict(kwargs)
        return plain_args, _plain_copy(kwargs)
    except (_NotPlain, RecursionError):
        return None


def registered_job(name: str) -> JobTask | None:
    """Return the job registered as ``name`` (its module path), importing the apps' job modules once if needed."""
    return cast("JobTask | None", registry.get(name))  # only JobTask registers itself


def registered_jobs() -> dict[str, JobTask]:
    """Return a copy of the registry: every job this process can run, by name."""
    return cast("dict[str, JobTask]", registry.all_jobs())


# django-stubs declares TaskResult and TaskContext as plain dataclasses; Django's are frozen.
@dataclass(frozen=True, slots=True, kw_only=True)
class JobResult(_TaskResult):  # type: ignore[misc]
    """A :class:`django.tasks.TaskResult` with django_jobs' extra fields and actions."""

    queue: str = "default"
    state: str = "waiting"
    correlation_id: str = ""
    parent_id: str = ""
    failure_reason: str = ""
    #: The latest progress the job reported with :meth:`JobContext.set_progress` (None: none yet).
    progress: Any = None
    #: The errors of the job's earlier runs, oldest first: each operator retry (the admin,
    #: ``manage.py jobs retry``, :func:`django_jobs.operations.retry`) moves the errors of the
    #: run it ends here. Django's :attr:`errors` holds only the current run's attempts.
    earlier_errors: list[TaskError] = field(default_factory=list)
    #: True when this enqueue found a job with the same unique key and returned it instead
    #: of a new one (with ``unique_mode="replace"``, after giving it this call's arguments).
    deduplicated: bool = False

    def __post_init__(self) -> None:
        # Django's TaskResult normalises args and kwargs with normalize_json, which tests each
        # value against Mapping and Sequence ABCs. Flat arguments of plain JSON types (the usual
        # call) normalise to a copy of themselves: make that copy directly; anything else, Django's.
        normal = _normalized(self.args, self.kwargs) if _NORMALIZES else None
        if normal is not None:
            object.__setattr__(self, "args", normal[0])
            object.__setattr__(self, "kwargs", normal[1])
        else:
            _TaskResult.__post_init__(self)

    if not TYPE_CHECKING:  # (a type checker would then accept any attribute name)

        def __getattr__(self, name: str) -> Any:
            # Reached only when ``name`` is not set: a result of a bulk enqueue made by
            # results_like() gets its shared fields on first read of any of them.
            if _fill_later(self):
                return getattr(self, name)
            raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}", name=name, obj=self)

    def refresh(self) -> None:
        """Reload the job's state from Redis."""
        _fill_later(self)  # before _return_value is overwritten: it holds the fields not set yet
        fresh = self.task.get_backend().get_result(self.id)
        for attr in _REFRESHED:
            object.__setattr__(self, attr, getattr(fresh, attr))

    async def arefresh(self) -> None:
        """Reload the job's state from Redis (async)."""
        _fill_later(self)
        fresh = await self.task.get_backend().aget_result(self.id)
        for attr in _REFRESHED:
            object.__setattr__(self, attr, getattr(fresh, attr))

    def cancel(self) -> str:
        """Cancel the job.

        Returns ``"cancelled"`` (it will never run), ``"requested"`` (it is running and was
        asked to stop) or ``"finished"`` (nothing to do: it had already finished).
        """
        from django_jobs import operations
        from django_jobs.exceptions import JobNotFound

        outcome = operations.cancel([(self.queue, self.id)]).outcome(self.id)
        if outcome is operations.SkipReason.NOT_FOUND:
            raise JobNotFound(f"Job {self.id!r} does not exist (it may have been trimmed).")
        if outcome is operations.Action.CANCEL:
            return "cancelled"
        return "requested" if outcome == "requested" else "finished"

    def wait(self, timeout: float = 30.0) -> JobResult:
        """Block until the job is finished (refreshed in place) and return it.

        Listens to the queue's events stream (no polling); raises :class:`TimeoutError`
        after ``timeout`` seconds.
        """
        from django_jobs.events import wait_for_result

        return wait_for_result(self, timeout)


@dataclass(frozen=True, slots=True, kw_only=True)
class JobContext(_TaskContext):  # type: ignore[misc]
    """What a job with ``takes_context=True`` receives as its first argument."""

    @property
    def job_id(self) -> str:
        """The id of the running job."""
        return self.task_result.id

    @property
    def cancel_requested(self) -> bool:
        """True once someone asked this job to stop (see :meth:`JobResult.cancel`)."""
        from django_jobs import runtime

        return runtime.is_cancel_requested(self.task_result.id)

    def children_results(self) -> ChildrenResults:
        """Return how each child of this flow parent ended, by child id (docs/flows.md).

        A :class:`~django_jobs.steps.ChildrenResults`: ``results[child_id].value`` is what the
        child returned; ``results.by_name("optimize")`` finds children by job name.
        """
        from django_jobs.steps import children_results

        return children_results(cast(JobResult, self.task_result).queue, self.task_result.id)

    def set_progress(self, progress: Any) -> None:
        """Report how far the job got: a number or a small JSON value (at most 4 KB encoded).

        Other processes see it as :attr:`JobResult.progress` (after :meth:`JobResult.refresh`)
        and as a ``progress`` event. A run that lost its lease (recovered elsewhere) writes nothing.

        >>> context.set_progress({"done": 40, "total": 100})  # doctest: +SKIP

        Raises:
            InvalidJob: ``progress`` is not JSON serializable or is too large.
        """
        from django_jobs import runtime, serialization
        from django_jobs.engine import get_engine

        try:
            encoded = serialization.dumps(progress)
        except (TypeError, ValueError) as exc:
            raise InvalidJob(f"Progress {progress!r} is not JSON serializable: {exc}") from None
        if len(encoded) > MAX_PROGRESS_BYTES:
            raise InvalidJob(
                f"Progress of job {self.job_id!r} is {len(encoded):,} bytes encoded; the limit is "
                f"{MAX_PROGRESS_BYTES:,}. Report a number or a small dict (store big results elsewhere)."
            )
        job = runtime.get(self.job_id)
        if job is None:
            raise InvalidJob(f"Job {self.job_id!r} is not running in this process: only a running job reports progress.")
        get_engine().set_progress(job.queue, job.id, job.claimed.token, encoded)


#: The field values a copy of a result cannot share with the result it copies (a fresh one each).
_MUTABLE = (list, dict, set)


class _Later:
    """The fields a result made by :func:`results_like` has not set yet, and their values.

    Held in the result's ``_return_value`` slot (None once filled) until one of them is read:
    ``JobResult.__getattr__`` (reached only for an unset slot) then sets every unset one.
    """

    __slots__ = ("fields", "return_value")

    def __init__(self, fields: list[tuple[Any, Any, Any]], return_value: Any) -> None:
        #: (the slot's descriptor, its value, or the type of a fresh empty one; None for a value)
        self.fields = fields
        self.return_value = return_value


#: The ``_return_value`` slot's descriptor (sets without the frozen check).
_RETURN_VALUE: Any = JobResult.__dict__.get("_return_value") or getattr(_TaskResult, "_return_value", None)


def _fill_later(result: JobResult) -> bool:
    """Set the fields of ``result`` that :func:`results_like` left for later; False if there were none."""
    if not _NORMALIZES:  # results_like() leaves nothing for later there (it constructs)
        return False
    try:
        later = _RETURN_VALUE.__get__(result, JobResult)
    except AttributeError:
        return False
    if type(later) is not _Later:
        return False
    for slot, value, fresh in later.fields:
        try:
            slot.__get__(result, JobResult)
        except AttributeError:  # not set since: a field set after the copy (enqueued_at, id) is kept
            slot.__set__(result, fresh() if fresh is not None else value)
    _RETURN_VALUE.__set__(result, later.return_value)
    return True


def results_like(template: JobResult) -> Callable[[str, Sequence[Any], dict[str, Any]], JobResult]:
    """Return ``make(id, args, kwargs)``: a result equal to ``template`` but for those three.

    The results of one bulk enqueue differ only in them. ``make`` sets those three and leaves
    the others for the first read of any of them (``JobResult.__getattr__``, :class:`_Later`):
    ~0.6 us per result against ~4.4 us to copy every slot and ~10 us for the constructor (a
    frozen dataclass of 21 fields, each set with ``object.__setattr__``, then ``__post_init__``),
    and most bulk callers never read their results. Read, a result is equal to the constructor's
    (every field, ``==``, ``repr``, pickling). Arguments of exact JSON types, nested or not, are
    normalised here as Django would (:func:`_normalized`); any other take the constructor. Every
    field of ``template`` is copied, so a field Django adds is too; a list, dict or set value is
    a fresh empty one of its type (the template's must be empty).
    """
    def construct(job_id: str, args: Sequence[Any], kwargs: dict[str, Any]) -> JobResult:
        return replace(template, id=job_id, args=cast(list[Any], args), kwargs=kwargs, errors=[], worker_ids=[], earlier_errors=[])

    for name in JobResult.__dataclass_fields__:  # checked on every Django version, before either path
        value = getattr(template, name)
        if name not in ("id", "args", "kwargs") and type(value) in _MUTABLE and value:
            raise ValueError(f"results_like() copies no {name!r}: the template's must be empty.")
    if not _NORMALIZES:
        return construct
    fields: list[tuple[Any, Any, Any]] = []
    for name in JobResult.__dataclass_fields__:
        if name in ("id", "args", "kwargs", "_return_value"):
            continue
        value = getattr(template, name)
        slot = getattr(JobResult, name)  # the slot's own descriptor: no frozen check
        fields.append((slot, None, type(value)) if type(value) in _MUTABLE else (slot, value, None))
    later = _Later(fields, getattr(template, "_return_value", None))
    set_id, set_args, set_kwargs, set_later = (getattr(JobResult, name).__set__ for name in ("id", "args", "kwargs", "_return_value"))
    new = object.__new__

    def make(job_id: str, args: Sequence[Any], kwargs: dict[str, Any]) -> JobResult:
        if type(args) in _SEQUENCES and type(kwargs) is dict and not args and not kwargs:
            plain_args: list[Any] = []  # (the call without arguments: no normalising to do)
            plain_kwargs: dict[str, Any] = {}
        else:
            normal = _normalized(args, kwargs)
            if normal is None:  # not exact JSON types: Django's normalisation, by the constructor
                return construct(job_id, args, kwargs)
            plain_args, plain_kwargs = normal
        result: JobResult = new(JobResult)
        set_id(result, job_id)
        set_args(result, plain_args)
        set_kwargs(result, plain_kwargs)
        set_later(result, later)
        return result

    return make


def ms_to_datetime(ms: str | int | None) -> datetime | None:
    """Return an aware UTC datetime for Redis milliseconds (None for empty)."""
    if not ms:
        return None
    return datetime.fromtimestamp(int(ms) / 1000, tz=UTC)


def default_backend_alias() -> str:
    """Return the TASKS alias whose backend is django_jobs' (``default`` preferred)."""
    from django.conf import settings
    from django.utils.module_loading import import_string

    def ours(path: object) -> bool:
        # django_jobs' backends (RedisBackend and its subclasses) are those whose tasks are JobTasks;
        # checked without importing django_jobs.backends, which builds on this module.
        if path == BACKEND_PATH:
            return True
        try:
            cls = import_string(str(path))
        except ImportError:
            return False
        task_class = getattr(cls, "task_class", None)
        return isinstance(cls, type) and isinstance(task_class, type) and issubclass(task_class, JobTask)

    tasks = getattr(settings, "TASKS", {}) or {}
    aliases = [alias for alias, cfg in tasks.items() if ours(cfg.get("BACKEND"))]
    if not aliases:
        raise ConfigurationError(
            "@job needs a django.tasks backend of django_jobs. Add to your settings: "
            "TASKS = {'default': {'BACKEND': 'django_jobs.backends.RedisBackend'}}"
        )
    return "default" if "default" in aliases else aliases[0]


@overload
def job[F: Callable[..., Any]](function: F, /) -> JobTask: ...
@overload
def job(
    function: None = None,
    /,
    *,
    queue: str = ...,
    priority: int = ...,
    attempts: int | None = ...,
    backoff: BackoffSpec = ...,
    timeout: float | None = ...,
    keep_result: float | None = ...,
    takes_context: bool = ...,
    backend: str | None = ...,
    cron: str | float | dict[str, Any] | None = ...,
    isolated: bool = ...,
    unique: bool = ...,
    unique_key: str | Callable[..., Any] | None = ...,
    unique_for: float | None = ...,
    unique_mode: str = ...,
    unique_until: str = ...,
    limit_key: str | Callable[..., Any] | None = ...,
    limit_concurrency: int | None = ...,
    limit_rate: str | None = ...,
    shard_key: str | Callable[..., Any] | None = ...,
) -> Callable[[Callable[..., Any]], JobTask]: ...
def job(
    function: Callable[..., Any] | None = None,
    /,
    *,
    queue: str = "default",
    priority: int = 0,
    attempts: int | None = None,
    backoff: BackoffSpec = None,
    timeout: float | None = None,
    keep_result: float | None = None,
    takes_context: bool = False,
    backend: str | None = None,
    cron: str | float | dict[str, Any] | None = None,
    isolated: bool = False,
    unique: bool = False,
    unique_key: str | Callable[..., Any] | None = None,
    unique_for: float | None = None,
    unique_mode: str = "keep",
    unique_until: str = "start",
    limit_key: str | Callable[..., Any] | None = None,
    limit_concurrency: int | None = None,
    limit_rate: str | None = None,
    shard_key: str | Callable[..., Any] | None = None,
) -> JobTask | Callable[[Callable[..., Any]], JobTask]:
    """Declare a background job (sync or ``async def``).

    >>> @job(queue="emails", attempts=5, backoff="exponential", timeout=60)
    ... def send_welcome(user_id: int) -> None: ...
    >>> result = send_welcome.enqueue(user_id=42)  # doctest: +SKIP
    """

    def wrapper(func: Callable[..., Any]) -> JobTask:
        from django_jobs.compat import task_backends

        alias = backend or default_backend_alias()
        task_class = task_backends[alias].task_class
        if not issubclass(task_class, JobTask):
            raise ConfigurationError(f"TASKS[{alias!r}] is not a django_jobs backend.")
        task = task_class(
            func=func,
            priority=priority,
            queue_name=queue,
            backend=alias,
            run_after=None,  # Django 6.0's Task has no default for it (6.1 and the backport do)
            takes_context=takes_context,
            attempts=attempts,
            backoff=backoff,
            timeout=timeout,
            keep_result=keep_result,
            isolated=isolated,
            unique=unique,
            unique_key=unique_key,
            unique_for=unique_for,
            unique_mode=unique_mode,
            unique_until=unique_until,
            limit_key=limit_key,
            limit_concurrency=limit_concurrency,
            limit_rate=limit_rate,
            shard_key=shard_key,
        )
        if cron is not None:
            registry.declare(task.module_path, cron)  # a CRON setting entry with the same NAME wins
        return task

    if function is not None:
        return wrapper(function)
    return wrapper
