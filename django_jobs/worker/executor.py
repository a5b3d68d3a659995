"""Run one claimed job and turn what happened into an :class:`Outcome`.

The executor knows nothing of threads or Redis: :mod:`django_jobs.worker.process`
calls :func:`run_sync` in a pool thread or awaits :func:`run_async` on its event loop.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import logging
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django.db import close_old_connections

from django_jobs import runtime, serialization, signals, tracing
from django_jobs.backoff import retry_delay
from django_jobs.compat import TaskError, TaskResultStatus, task_finished, task_started
from django_jobs.conf import get_settings
from django_jobs.correlation import reset_correlation_id, set_correlation_id
from django_jobs.engine.protocol import JobState, OutcomeKind
from django_jobs.engine.queue import Claimed, Outcome
from django_jobs.engine.record import payload_fields
from django_jobs.exceptions import Cancel, JobTimeout, RateLimited, Retry
from django_jobs.middleware import Chain, get_chain
from django_jobs.tasks import JobContext, JobResult, JobTask, ms_to_datetime, registered_job

logger = logging.getLogger("django_jobs.worker")


_CANCEL_LOCK = threading.Lock()
#: :attr:`RunningJob.timeout` not looked up yet.
_UNRESOLVED: Any = object()


class RunningJob:
    """A claimed job in this process, from claim to settle.

    A plain slotted class (it was a dataclass): ``id`` and ``queue``, read ~8 times per run, are
    attributes copied from :attr:`claimed`, not properties. Compared by identity.
    """

    __slots__ = ("_cancel", "_timeout", "child_pid", "claimed", "decided", "future", "id", "isolated", "name", "prepared",
                 "queue", "started")

    claimed: Claimed
    #: ``claimed.id`` and ``claimed.queue``.
    id: str
    queue: str
    started: float
    #: :attr:`timeout` once resolved (``_UNRESOLVED`` until its first read).
    _timeout: float | None
    #: The event behind :attr:`cancel_event`, made on first use (most jobs are never asked to stop).
    _cancel: threading.Event | None
    #: Set once an outcome is decided (by the job, or by the timeout watchdog): later ones are dropped.
    decided: bool
    name: str
    #: The decoded job (executor.Prepared) and, for async jobs, its concurrent future.
    prepared: Any
    future: Any
    #: Runs in a forked child (``@job(isolated=True)``); ``child_pid`` while that child lives.
    isolated: bool
    child_pid: int

    def __init__(self, claimed: Claimed, started: float | None = None) -> None:
        self.claimed = claimed
        self.id = claimed.id
        self.queue = claimed.queue
        self.started = time.monotonic() if started is None else started
        self._timeout = _UNRESOLVED
        self._cancel = None
        self.decided = False
        self.name = ""
        self.prepared = None
        self.future = None
        self.isolated = False
        self.child_pid = 0

    def __repr__(self) -> str:
        return f"RunningJob(id={self.id!r}, queue={self.queue!r}, name={self.name!r}, decided={self.decided!r})"

    @property
    def cancel_event(self) -> threading.Event:
        """Set when the job is asked to stop (a cancel request, or the worker releasing it)."""
        event = self._cancel
        if event is None:
            with _CANCEL_LOCK:  # the heartbeat and the job's own thread may ask at the same time
                if self._cancel is None:
                    self._cancel = threading.Event()
                event = self._cancel
        return event

    @property
    def timeout(self) -> float | None:
        """Its timeout, seconds (None: none), resolved from :attr:`prepared` on first read.

        Not when the job is decoded: the option, job and settings lookups are left out of the
        path to the job's first line (the heartbeat, the isolated run's watch and ``run_async``
        read it). None while nothing is prepared, or when the job cannot run.
        """
        timeout = self._timeout
        if timeout is _UNRESOLVED:
            prepared = self.prepared
            if prepared is None:
                return None
            timeout = self._timeout = prepared.timeout() if prepared.failure is None else None
        return timeout



# The jobs running in this process and ``current_job`` (the RunningJob of this thread or task,
# None outside jobs) live in django_jobs.runtime: one owner, readable from every layer.
__all__ = ["Prepared", "RunningJob", "error_outcome", "run_async", "run_sync", "terminal_outcome", "timeout_outcome"]


#: What a job may raise and have recorded as its failure: SystemExit (``sys.exit()``) and
#: KeyboardInterrupt raised by a job's code fail the attempt like any error, and never stop the
#: worker (signals reach the worker's main thread, never a job thread).
JOB_ERRORS = (Exception, SystemExit, KeyboardInterrupt)


def task_error(exc: BaseException) -> TaskError:
    """Return the :class:`django.tasks.TaskError` of ``exc`` (its real class and traceback)."""
    cls = type(exc)
    return TaskError(exception_class_path=f"{cls.__module__}.{cls.__qualname__}", traceback="".join(traceback.format_exception(exc)))


def _error_json(exc: BaseException, job: RunningJob | None = None) -> str:
    """One attempt's error: class, traceback and, for the admin's timeline, when it ended (``at``, ms) and its run time (``ms``)."""
    cls = type(exc)
    error: dict[str, Any] = {
        "exception_class_path": f"{cls.__module__}.{cls.__qualname__}",
        "traceback": "".join(traceback.format_exception(exc)),
    }
    if job is not None:
        error["at"] = int(time.time() * 1000)
        error["ms"] = int((time.monotonic() - job.started) * 1000)
    return serialization.dumps(error)


@dataclass(frozen=True, slots=True)
class _Facts:
    """What the executor needs to know of a registered job, computed once per job function."""

    is_async: bool
    signature: inspect.Signature
    backend_class: type
    #: (required, total) positional parameters when the function takes nothing else (no ``*args``,
    #: keyword-only or ``**kwargs``); None otherwise. Positional arguments alone then fit exactly
    #: when their count is in that range: no ``Signature.bind`` per job.
    positional: tuple[int, int] | None = None


def _listening(signal: Any, sender: type) -> bool:
    """True when ``signal`` has a live receiver for ``sender``; no receiver at all answers without Django's lookup."""
    return bool(signal.receivers) and signal.has_listeners(sender)


def _facts(task: JobTask) -> _Facts:
    return _facts_of(task.func, task.backend)


@functools.cache
def _facts_of(func: Any, backend_alias: str) -> _Facts:
    from django_jobs.compat import task_backends

    signature = inspect.signature(func)
    params = signature.parameters.values()
    positional = None
    if all(p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) for p in params):
        positional = (sum(1 for p in params if p.default is p.empty), len(params))
    return _Facts(inspect.iscoroutinefunction(func), signature, type(task_backends[backend_alias]), positional)


class Prepared:
    """A decoded job, ready to call (or an outcome when it cannot run).

    The :class:`JobResult` handed to ``django.tasks`` signal receivers and to jobs that take
    a context is built only when something will read it.
    """

    __slots__ = (
        "_result",
        "args",
        "chain",
        "facts",
        "failure",
        "is_async",
        "job",
        "kwargs",
        "options",
        "started_ms",
        "task",
        "trace",
        "trace_context",
        "worker_id",
    )

    def __init__(self, job: RunningJob, worker_id: str) -> None:
        self.failure: Outcome | None = None
        self.is_async = False
        self._result: JobResult | None = None
        self.job = job
        self.worker_id = worker_id
        self.started_ms = int(time.time() * 1000)
        self.chain: Chain = get_chain()
        self.trace_context: Any = None
        self.trace: Any = None
        claimed = job.claimed
        fields = payload_fields(claimed.data)  # what the job needs before its first line, and no more
        if isinstance(fields, str):
            self.failure = terminal_outcome(job, ValueError(f"Job {claimed.id!r} has an unreadable payload: {fields}"))
            return
        name, args, kwargs, options, self.trace_context = fields  # tc: the enqueue's W3C trace context (django_jobs.tracing)
        job.name = name
        task = registered_job(name)
        if task is None:
            self.failure = terminal_outcome(
                job,
                LookupError(
                    f"Job {claimed.id!r} names {name!r}, which no module registered in this worker. "
                    "Deploy the code that defines it, or check DJANGO_JOBS['IMPORT_MODULES']."
                ),
            )
            return
        self.task: JobTask = task
        if options.get("cr"):
            args = [_children_argument(claimed, options["cr"]), *args]  # a flow's chain step or chord callback
        facts = self.facts = _facts(task)
        self.is_async = facts.is_async
        self.args = args
        self.kwargs = kwargs
        self.options = options
        span = facts.positional
        if span is None or kwargs or not span[0] <= len(args) + task.takes_context <= span[1]:
            # Positional arguments alone whose count is in range fit: no Signature.bind (~5 us) for them.
            try:
                if task.takes_context:
                    facts.signature.bind(None, *args, **kwargs)
                else:
                    facts.signature.bind(*args, **kwargs)
            except TypeError as exc:
                self.failure = terminal_outcome(job, TypeError(f"The arguments of job {claimed.id!r} no longer fit {name!r}: {exc}"))
                return
        job.prepared = self  # its timeout is looked up from here, after the job started (RunningJob.timeout)

    def timeout(self) -> float | None:
        """The job's timeout, seconds (None: none): the first set of its own option, the job's, the queue's, the default.

        An option that is not a number (a hand-edited payload) is passed over, with a warning.
        """
        settings = get_settings()
        queue = self.job.claimed.queue
        for timeout in (self.options.get("to", self.task.timeout), settings.queues.get(queue, {}).get("DEFAULT_TIMEOUT"), settings.default_timeout):
            if timeout:
                try:
                    return float(timeout)
                except (TypeError, ValueError):
                    logger.warning("Job %s has a timeout that is not a number (%r): passed over", self.job.id, timeout)
        return None

    @property
    def result(self) -> JobResult:
        """The job as a :class:`JobResult` in its current state (built on first use)."""
        if self._result is None:
            task, claimed = self.task, self.job.claimed
            started = ms_to_datetime(self.started_ms)
            self._result = JobResult(
                task=task if task.queue_name == claimed.queue else task.using(queue_name=claimed.queue),
                id=claimed.id,
                status=TaskResultStatus.RUNNING,
                enqueued_at=ms_to_datetime(claimed.enqueued_ms),
                started_at=started,
                finished_at=None,
                last_attempted_at=started,
                args=self.args,
                kwargs=self.kwargs,
                backend=task.backend,
                errors=[],
                worker_ids=[self.worker_id] * claimed.attempt,
                queue=claimed.queue,
                state=JobState.ACTIVE,
                correlation_id=claimed.correlation_id,
                parent_id=claimed.parent_id,
            )
        return self._result

    def send(self, signal: Any) -> None:
        """Send a django.tasks signal, building the result only if anyone listens."""
        sender = self.facts.backend_class
        if _listening(signal, sender):
            signal.send(sender, task_result=self.result)

    def call_args(self) -> tuple[list[Any], dict[str, Any]]:
        if self.task.takes_context:
            return [JobContext(task_result=self.result), *self.args], self.kwargs
        return self.args, self.kwargs

    def outcome_for_value(self, job: RunningJob, value: Any) -> Outcome:
        try:
            result_json = serialization.dumps(value)
        except (TypeError, ValueError) as exc:
            return self.outcome_for_error(job, TypeError(f"The return value of {job.name!r} is not JSON serializable: {exc}"))
        keep = self.options.get("kr", self.task.keep_result)
        result = self._result
        if result is not None or _listening(task_finished, self.facts.backend_class):
            result = self.result
            object.__setattr__(result, "status", TaskResultStatus.SUCCESSFUL)
            object.__setattr__(result, "state", JobState.COMPLETED)
            object.__setattr__(result, "_return_value", serialization.loads(result_json))
            object.__setattr__(result, "finished_at", ms_to_datetime(int(time.time() * 1000)))
        # keep_result=0: delete the job when it finishes (-1 tells the settle script; 0 means the queue's retention).
        keep_ms = -1 if keep == 0 and keep is not None else int(keep * 1000) if keep else 0
        return Outcome(job.id, job.claimed.token, OutcomeKind.COMPLETE, result_json, 0, keep_ms)

    def outcome_for_error(self, job: RunningJob, exc: BaseException) -> Outcome:
        claimed = job.claimed
        error = _error_json(exc, job)
        if isinstance(exc, Cancel) or (isinstance(exc, asyncio.CancelledError) and job.cancel_event.is_set()):
            self._finish_status(JobState.CANCELLED, exc)
            return Outcome(job.id, claimed.token, OutcomeKind.CANCELLED, error)
        if isinstance(exc, RateLimited):
            # Not a failure: back to scheduled, the attempt not counted (settle kind "l").
            scope = exc.backoff if exc.backoff in ("queue", "key") else ""
            return Outcome(job.id, claimed.token, OutcomeKind.RATE_LIMITED, scope, max(1, int(exc.retry_after * 1000)))
        settings = get_settings()
        queue_opts = settings.queues.get(claimed.queue, {})
        attempts = self.options.get("at") or self.task.attempts or queue_opts.get("DEFAULT_ATTEMPTS") or settings.default_attempts
        if claimed.attempt < int(attempts):
            if isinstance(exc, Retry) and exc.delay is not None:
                delay = float(exc.delay)
            else:
                spec = self.options.get("bo", self.task.backoff)
                if spec is None:
                    spec = settings.default_backoff
                delay = retry_delay(spec, claimed.attempt)
            return Outcome(job.id, claimed.token, OutcomeKind.RETRY, error, int(delay * 1000))
        self._finish_status(JobState.FAILED, exc)
        return Outcome(job.id, claimed.token, OutcomeKind.FAIL, error)

    def _finish_status(self, state: str, exc: BaseException) -> None:
        if self._result is None and not _listening(task_finished, self.facts.backend_class):
            return
        result = self.result
        result.errors.append(task_error(exc))  # as Django's backends do: task_finished carries the error
        object.__setattr__(result, "status", TaskResultStatus.FAILED)
        object.__setattr__(result, "state", state)
        object.__setattr__(result, "finished_at", ms_to_datetime(int(time.time() * 1000)))


def _children_argument(claimed: Claimed, receives: str) -> Any:
    """Return a flow parent's first argument: its only child's return value, or all of them."""
    from django_jobs.steps import children_results

    values = children_results(claimed.queue, claimed.id).values_list()
    if receives == "one":
        return values[0] if values else None
    return values


def terminal_outcome(job: RunningJob, exc: BaseException) -> Outcome:
    """Fail a job that cannot run at all (no retry: retrying would fail the same way)."""
    logger.error(
        "Job %s cannot run: %s", job.id, exc,
        extra={"action": "job_failed", "job_id": job.id, "queue": job.queue, "correlation_id": job.claimed.correlation_id},
    )
    return Outcome(job.id, job.claimed.token, OutcomeKind.FAIL, _error_json(exc, job))


def _log_started(job: RunningJob) -> None:
    if logger.isEnabledFor(logging.DEBUG):
        logger.debug(
            "Job %s %s started (attempt %d)", job.name, job.id, job.claimed.attempt,
            extra={"action": "job_started", "job_id": job.id, "job_name": job.name, "queue": job.queue, "attempt": job.claimed.attempt},
        )


def _log_outcome(job: RunningJob, outcome: Outcome, exc: BaseException | None) -> None:
    level = _OUTCOME_LEVEL[outcome.kind]  # a str kind finds its StrEnum key (same hash, equal): no OutcomeKind() call
    if not logger.isEnabledFor(level):
        return
    ms = (time.monotonic() - job.started) * 1000
    extra = {"job_id": job.id, "job_name": job.name, "queue": job.queue, "attempt": job.claimed.attempt, "duration_ms": round(ms, 3)}
    if outcome.kind == OutcomeKind.COMPLETE:
        logger.info("Job %s %s succeeded in %.1f ms", job.name, job.id, ms, extra={**extra, "action": "job_succeeded"})
    elif outcome.kind == OutcomeKind.RETRY:
        logger.warning(
            "Job %s %s failed (attempt %d), retrying in %.1f s: %r", job.name, job.id, job.claimed.attempt, outcome.delay_ms / 1000, exc,
            extra={**extra, "action": "job_retrying", "retry_in": outcome.delay_ms / 1000},
        )
    elif outcome.kind == OutcomeKind.RATE_LIMITED:
        logger.info(
            "Job %s %s rate limited, running again in %.1f s%s", job.name, job.id, outcome.delay_ms / 1000,
            {"queue": " (the whole queue waits)", "key": " (its limit key waits)"}.get(outcome.value, ""),
            extra={**extra, "action": "job_rate_limited", "retry_in": outcome.delay_ms / 1000},
        )
    elif outcome.kind == OutcomeKind.CANCELLED:
        logger.info("Job %s %s cancelled", job.name, job.id, extra={**extra, "action": "job_cancelled"})
    else:
        logger.error("Job %s %s failed after %d attempt(s)", job.name, job.id, job.claimed.attempt, exc_info=exc, extra={**extra, "action": "job_failed"})


#: Log level of each outcome kind.
_OUTCOME_LEVEL: dict[str, int] = {
    OutcomeKind.COMPLETE: logging.INFO, OutcomeKind.RETRY: logging.WARNING, OutcomeKind.CANCELLED: logging.INFO,
    OutcomeKind.FAIL: logging.ERROR, OutcomeKind.RATE_LIMITED: logging.INFO,
}


def _enter(job: RunningJob, prepared: Prepared) -> tuple[object, object | None, Prepared]:
    # The run's OpenTelemetry span (None without tracing), a child of the enqueue's.
    claimed = job.claimed
    prepared.trace = tracing.start_consumer(job.name, claimed.queue, claimed.id, claimed.attempt, claimed.correlation_id, prepared.trace_context)
    if not prepared.chain.correlation:
        return runtime.current_job.set(job), None, prepared
    return runtime.current_job.set(job), set_correlation_id(job.claimed.correlation_id or ""), prepared


def _exit(tokens: tuple[object, object | None, Prepared]) -> None:
    runtime.current_job.reset(tokens[0])  # type: ignore[arg-type]
    if tokens[1] is not None:
        reset_correlation_id(tokens[1])
    trace, tokens[2].trace = tokens[2].trace, None
    tracing.end_consumer(trace)


def _started(job: RunningJob, prepared: Prepared) -> None:
    if prepared.chain.logging:
        _log_started(job)
    prepared.send(task_started)
    if signals.job_started.receivers:
        signals.job_started.send(prepared.task, task_result=prepared.result)
    elif signals.job_succeeded.receivers or signals.job_failed.receivers or signals.job_retrying.receivers:
        prepared.result  # built now, so the outcome updates it for those receivers  # noqa: B018


def _open_middleware(prepared: Prepared, opened: list[Any]) -> None:
    """Run each custom middleware up to its ``yield`` (outermost first)."""
    result = prepared.result
    for middleware in prepared.chain.custom:
        gen = middleware(result)
        next(gen)
        opened.append(gen)


def _close_middleware(opened: list[Any], exc: BaseException | None) -> BaseException | None:
    """Resume the opened middleware (innermost first); return the exception the job ends with."""
    while opened:
        gen = opened.pop()
        try:
            if exc is None:
                next(gen)
            else:
                gen.throw(exc)
        except StopIteration:
            continue  # done (a middleware cannot hide the job's exception: ``exc`` stays)
        except BaseException as raised:  # noqa: BLE001 - a middleware's own failure fails the attempt
            if raised is not exc and isinstance(raised, Exception):
                exc = raised
            continue
        gen.close()  # it yielded twice: stop it
    return exc


def _failed(job: RunningJob, prepared: Prepared, opened: list[Any], exc: BaseException) -> Outcome:
    """The outcome of a job that raised ``exc``, after its opened middleware (which may replace ``exc``)."""
    error = (_close_middleware(opened, exc) or exc) if opened else exc
    return _finished(job, prepared, prepared.outcome_for_error(job, error), error)


def _returned(job: RunningJob, prepared: Prepared, opened: list[Any], value: Any) -> Outcome:
    """The outcome of a job that returned ``value``, after its opened middleware (which may fail the attempt)."""
    if opened:
        failure = _close_middleware(opened, None)
        if failure is not None:
            return _finished(job, prepared, prepared.outcome_for_error(job, failure), failure)
    return _finished(job, prepared, prepared.outcome_for_value(job, value), None)


def _finished(job: RunningJob, prepared: Prepared, outcome: Outcome, exc: BaseException | None) -> Outcome:
    if prepared.trace is not None:
        tracing.outcome(prepared.trace, outcome.kind, exc)
    if prepared.chain.logging:
        _log_outcome(job, outcome, exc)
    if outcome.kind != OutcomeKind.RETRY and outcome.kind != OutcomeKind.RATE_LIMITED:
        prepared.send(task_finished)
    kind = outcome.kind
    if kind == OutcomeKind.RATE_LIMITED:  # rate limited (RateLimited): it runs again later, like a retry
        kind = OutcomeKind.RETRY
    signal = signals.job_succeeded if kind == OutcomeKind.COMPLETE else signals.job_retrying if kind == OutcomeKind.RETRY else signals.job_failed
    if signal.receivers:
        duration = max(0.0, time.monotonic() - job.started)
        if kind == OutcomeKind.COMPLETE:
            signal.send(prepared.task, task_result=prepared.result, return_value=prepared.result._return_value, duration=duration)  # type: ignore[attr-defined]
        elif kind == OutcomeKind.RETRY:
            signal.send(prepared.task, task_result=prepared.result, exception=exc, duration=duration, delay=outcome.delay_ms / 1000)
        else:
            signal.send(prepared.task, task_result=prepared.result, exception=exc, duration=duration)
    return outcome


def run_sync(
    job: RunningJob, prepared: Prepared, *, close_connections: bool = True, on_start: Callable[[], None] | None = None,
) -> Outcome:
    """Run a sync job in the calling thread and return its outcome: the run path of every job.

    Workers call it from their pool threads (and isolated jobs' children); django_jobs.testing
    calls it too, with ``close_connections=False`` (closing old DB connections would end a test's
    transaction). It sets the current job and correlation id, sends ``task_started`` /
    ``job_started``, runs the job middleware around the job, and logs and signals the outcome.

    ``on_start`` is called once the job starts, before any code of the user's (signal receivers,
    log handlers, middleware, the job) can run and block; not when the job cannot run.
    """
    if prepared.failure is not None:
        return prepared.failure
    tokens = _enter(job, prepared)
    opened: list[Any] = []
    try:
        if on_start is not None:
            on_start()
        _started(job, prepared)
        func = prepared.task.func
        try:
            if prepared.chain.custom:
                _open_middleware(prepared, opened)
            args, kwargs = prepared.call_args()
            if prepared.is_async:  # an isolated async job (inspect.iscoroutinefunction(func), cached per function)
                value = asyncio.run(func(*args, **kwargs))
            else:
                value = func(*args, **kwargs)
        except JOB_ERRORS as exc:  # the job's own failure (even sys.exit()), recorded; the worker goes on
            return _failed(job, prepared, opened, exc)
        return _returned(job, prepared, opened, value)
    finally:
        _exit(tokens)
        if close_connections:
            close_old_connections()


async def run_async(job: RunningJob, prepared: Prepared) -> Outcome:
    """Run an ``async def`` job on the running event loop and return its outcome."""
    if prepared.failure is not None:
        return prepared.failure
    tokens = _enter(job, prepared)
    opened: list[Any] = []
    try:
        _started(job, prepared)
        try:
            if prepared.chain.custom:
                _open_middleware(prepared, opened)
            args, kwargs = prepared.call_args()
            coro = prepared.task.func(*args, **kwargs)
            if job.timeout:
                value = await asyncio.wait_for(coro, job.timeout)
            else:
                value = await coro
        except TimeoutError:
            return _failed(job, prepared, opened, JobTimeout(f"Job {job.name!r} ran longer than its timeout of {job.timeout} s."))
        except asyncio.CancelledError as exc:
            if opened:
                _close_middleware(opened, exc)
            if not job.cancel_event.is_set():
                raise
            return _finished(job, prepared, prepared.outcome_for_error(job, exc), exc)
        except JOB_ERRORS as exc:  # the job's own failure (even sys.exit()), recorded; the worker goes on
            return _failed(job, prepared, opened, exc)
        return _returned(job, prepared, opened, value)
    finally:
        _exit(tokens)


def timeout_outcome(job: RunningJob, prepared: Prepared) -> Outcome:
    """The outcome of a sync job that passed its timeout (its thread is abandoned, or its isolated process killed)."""
    return error_outcome(job, prepared, JobTimeout(f"Job {job.name!r} ran longer than its timeout of {job.timeout} s."))


def error_outcome(job: RunningJob, prepared: Prepared, exc: BaseException) -> Outcome:
    """Fail (or retry, per its policy) an attempt stopped from outside the job, logged with the job's correlation id."""
    tokens = _enter(job, prepared)
    try:
        return _finished(job, prepared, prepared.outcome_for_error(job, exc), exc)
    finally:
        _exit(tokens)
