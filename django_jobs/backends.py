"""The django.tasks backend: ``TASKS = {"default": {"BACKEND": "django_jobs.backends.RedisBackend"}}``."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from django.db import transaction

from django_jobs import registry, runtime, serialization
from django_jobs.backoff import validate_backoff
from django_jobs.compat import (
    BaseTaskBackend,
    InvalidTask,
    TaskError,
    TaskResultDoesNotExist,
    TaskResultStatus,
    task_enqueued,
)
from django_jobs.conf import get_settings
from django_jobs.correlation import get_correlation_id, process_correlation_id
from django_jobs.engine import get_engine
from django_jobs.engine.protocol import EnqueueCode, JobState
from django_jobs.engine.queue import NewJob
from django_jobs.engine.record import JobView, encode_payload
from django_jobs.exceptions import InvalidJob
from django_jobs.limits import guard_for_call, has_guard
from django_jobs.tasks import STATE_TO_STATUS, JobResult, JobTask, ms_to_datetime, time_ms

#: Jobs per enqueue script call in a bulk enqueue (keeps each call short for Redis).
BULK_CHUNK = 500


def new_job_id() -> str:
    """Return a new job id: 32 hex digits, time-ordered (48-bit ms clock + 80 random bits)."""
    return f"{time_ms():012x}{os.urandom(10).hex()}"


#: The id of the job running in this context ('' outside jobs): the parent of what it enqueues.
current_job_id = runtime.current_job_id


class RedisBackend(BaseTaskBackend):
    """Run django.tasks on django_jobs' Redis engine and workers."""

    task_class = JobTask

    #: Tasks may be deferred with ``run_after`` (and ``delay``).
    supports_defer = True
    #: ``async def`` tasks run on the worker's event loop.
    supports_async_task = True
    #: Results can be read from any process with :meth:`get_result`.
    supports_get_result = True
    #: Higher priority runs first, -100..100.
    supports_priority = True

    def __init__(self, alias: str, params: dict[str, Any]) -> None:
        super().__init__(alias, params)
        self.declared_queues = set(params["QUEUES"]) if "QUEUES" in params else None
        # Django checks queue_name against self.queues; ours come from DJANGO_JOBS at call time.
        self.queues = set()

    # -- validation -----------------------------------------------------------------------

    def allowed_queues(self) -> list[str]:
        """Queues tasks of this backend may use: DJANGO_JOBS['QUEUES'] (and TASKS QUEUES if set)."""
        configured = get_settings().queue_names
        if self.declared_queues is None:
            return configured
        return [q for q in configured if q in self.declared_queues]

    def validate_task(self, task: Any) -> None:
        super().validate_task(task)
        if task.queue_name not in self.allowed_queues():
            raise InvalidTask(
                f"Queue {task.queue_name!r} is not configured. Add it to DJANGO_JOBS['QUEUES']"
                + (f" and TASKS[{self.alias!r}]['QUEUES']." if self.declared_queues is not None else ".")
            )
        if not isinstance(task, JobTask):
            return
        if task.attempts is not None and (not isinstance(task.attempts, int) or isinstance(task.attempts, bool) or task.attempts < 1):
            raise InvalidTask(f"attempts={task.attempts!r} must be a whole number >= 1.")
        if task.timeout is not None and (not isinstance(task.timeout, (int, float)) or task.timeout <= 0):
            raise InvalidTask(f"timeout={task.timeout!r} must be a positive number of seconds.")
        if task.delay is not None and (isinstance(task.delay, bool) or not isinstance(task.delay, (int, float)) or not 0 <= task.delay < float("inf")):
            raise InvalidTask(f"delay={task.delay!r} must be a finite, non-negative number of seconds.")
        if task.keep_result is not None and (not isinstance(task.keep_result, (int, float)) or task.keep_result <= 0):
            raise InvalidTask(f"keep_result={task.keep_result!r} must be a positive number of seconds.")
        try:
            validate_backoff(task.backoff)
        except InvalidJob as exc:
            raise InvalidTask(str(exc)) from None

    # -- enqueue --------------------------------------------------------------------------

    def _options(self, task: JobTask) -> str:
        """Return the payload's options: only what differs from the registered job."""
        base = registry.get(task.module_path)
        opts: dict[str, Any] = {}
        for field_name, key in (("attempts", "at"), ("timeout", "to"), ("keep_result", "kr"), ("backoff", "bo")):
            # ("delay" is not an option of the run: it only decides when the job is due.)
            value = getattr(task, field_name)
            if value is not None and (base is None or getattr(base, field_name) != value):
                if callable(value):
                    # A function cannot travel in a JSON payload; workers use the registered job's.
                    raise InvalidJob(
                        f"A callable backoff can only be set on the job's declaration (@job(backoff=...)), "
                        f"not with using(); {task.module_path!r} was declared with {getattr(base, 'backoff', None)!r}."
                    )
                opts[key] = value
        return serialization.dumps(opts) if opts else ""

    def _prepare(self, task: JobTask, args: Sequence[Any], kwargs: dict[str, Any], job_id: str | None = None) -> tuple[NewJob, JobResult]:
        settings = get_settings()
        name = task.module_path
        args_json, kwargs_json = serialization.dumps_call(name, args, kwargs)
        opts = self._options(task) if isinstance(task, JobTask) else ""
        data = encode_payload(name, args_json, kwargs_json, opts)
        limit = settings.max_payload_bytes
        if len(data) * 4 > limit and len(size := data.encode()) > limit:
            raise InvalidJob(
                f"The payload of job {name!r} is {len(size)} bytes, over MAX_PAYLOAD_BYTES "
                f"({settings.max_payload_bytes}). Store large data elsewhere and pass its id."
            )
        job_id = job_id or new_job_id()
        run_at_ms = int(task.run_after.timestamp() * 1000) if task.run_after is not None else 0
        delay = getattr(task, "delay", None)
        delay_ms = int(delay * 1000) if delay else 0
        cid = get_correlation_id() or process_correlation_id()
        parent = current_job_id()
        new = NewJob(
            id=job_id, data=data, priority=int(task.priority), run_at_ms=run_at_ms, delay_ms=delay_ms,
            correlation_id=cid, parent_id=parent,
        )
        result = JobResult(
            task=task,
            id=job_id,
            status=TaskResultStatus.READY,
            enqueued_at=None,
            started_at=None,
            finished_at=None,
            last_attempted_at=None,
            args=list(args),  # TaskResult normalizes them as JSON would
            kwargs=dict(kwargs),
            backend=self.alias,
            errors=[],
            worker_ids=[],
            queue=task.queue_name,
            state=JobState.SCHEDULED if run_at_ms or delay_ms else JobState.WAITING,
            correlation_id=cid,
            parent_id=parent,
        )
        return new, result

    def _push(self, prepared: list[tuple[NewJob, JobResult]]) -> None:
        if not prepared:
            return  # enqueue_many([]): nothing to send
        engine = get_engine()
        if has_guard(prepared[0][1].task):
            # Unique jobs, throttling, debounce and per-key limits (docs/flow-control.md): their own script.
            self._push_guarded(engine, prepared)
            return
        if len(prepared) == 1:
            engine.enqueue(prepared[0][1].queue, [prepared[0][0]])
        else:
            by_queue: dict[str, list[NewJob]] = {}
            for new, result in prepared:
                by_queue.setdefault(result.queue, []).append(new)
            for queue, jobs in by_queue.items():
                engine.enqueue_many(queue, jobs, chunk=BULK_CHUNK)
        now = ms_to_datetime(time_ms())
        for _, result in prepared:
            object.__setattr__(result, "enqueued_at", now)
            task_enqueued.send(type(self), task_result=result)

    def _push_guarded(self, engine: Any, prepared: list[tuple[NewJob, JobResult]]) -> None:
        """Enqueue jobs with a unique or limit key; a deduplicated result takes the guarded job's id."""
        for start in range(0, len(prepared), BULK_CHUNK):
            chunk = prepared[start : start + BULK_CHUNK]
            specs = [(new, guard_for_call(result.task, result.args, result.kwargs)) for new, result in chunk]
            codes = engine.enqueue_guarded(chunk[0][1].queue, specs)
            now = ms_to_datetime(time_ms())
            for (_, result), (code, job_id) in zip(chunk, codes):
                object.__setattr__(result, "enqueued_at", now)
                if code in (EnqueueCode.DEDUPLICATED, EnqueueCode.REPLACED):
                    object.__setattr__(result, "id", job_id)
                    object.__setattr__(result, "deduplicated", True)
                    if code == EnqueueCode.DEDUPLICATED:
                        object.__setattr__(result, "enqueued_at", None)  # not this call's: refresh() reads it
                else:
                    task_enqueued.send(type(self), task_result=result)

    def enqueue(self, task: Any, args: Sequence[Any], kwargs: dict[str, Any]) -> JobResult:  # type: ignore[override]
        """Queue up one job; returns its result handle.

        The task was validated when it was built (``Task.__post_init__``), so it is not again here.
        """
        prepared = self._prepare(task, args, kwargs)
        self._push([prepared])
        return prepared[1]

    def enqueue_many(self, task: Any, calls: Sequence[tuple[Sequence[Any], dict[str, Any]]]) -> list[JobResult]:
        """Queue up many jobs of ``task`` in one round trip per queue."""
        prepared = [self._prepare(task, args, kwargs) for args, kwargs in calls]
        self._push(prepared)
        return [result for _, result in prepared]

    def enqueue_on_commit(self, task: Any, args: Sequence[Any], kwargs: dict[str, Any]) -> JobResult:
        """Prepare the job now; enqueue it when the current transaction commits."""
        prepared = self._prepare(task, args, kwargs)
        if has_guard(task):
            guard_for_call(task, args, kwargs)  # a bad unique or limit key fails here, not at commit
        transaction.on_commit(lambda: self._push([prepared]))
        return prepared[1]

    # -- results --------------------------------------------------------------------------

    def get_result(self, result_id: str) -> JobResult:
        """Return the result of job ``result_id`` from Redis (any process)."""
        found = get_engine().find_job(str(result_id), self.allowed_queues())
        if found is None:
            raise TaskResultDoesNotExist(result_id)
        queue, data = found
        return self.result_from_hash(queue, str(result_id), data)

    def result_from_hash(self, queue: str, job_id: str, data: dict[str, str]) -> JobResult:
        """Build a :class:`JobResult` from a raw job hash (decoded by :class:`JobView`).

        Raises:
            TaskResultDoesNotExist: the payload does not decode, or names a job this process
                does not know.
        """
        view = JobView.from_hash(queue, job_id, data)
        if view.raw_payload or view.name == "?":
            raise TaskResultDoesNotExist(f"Job {job_id!r} has an unreadable payload.")
        task = registry.get(view.name)
        if task is None:
            raise TaskResultDoesNotExist(f"Job {job_id!r} runs {view.name!r}, which is not registered in this process.")
        state = view.state or JobState.WAITING
        priority = view.priority if view.priority is not None else task.priority
        if task.queue_name != queue or task.priority != priority:
            task = task.using(queue_name=queue, priority=priority)
        errors = [
            TaskError(exception_class_path=e.get("exception_class_path", ""), traceback=e.get("traceback", ""))
            for e in view.errors
        ]
        result = JobResult(
            task=task,
            id=job_id,
            status=STATE_TO_STATUS.get(state, TaskResultStatus.READY),
            enqueued_at=ms_to_datetime(view.enqueued_ms),
            started_at=ms_to_datetime(view.started_ms),
            finished_at=ms_to_datetime(view.finished_ms),
            last_attempted_at=ms_to_datetime(view.last_started_ms),
            args=view.args,
            kwargs=view.kwargs,
            backend=self.alias,
            errors=errors,
            worker_ids=view.workers,
            queue=queue,
            state=state,
            correlation_id=view.correlation_id,
            parent_id=view.parent_id,
            failure_reason=view.reason,
            progress=view.progress,
        )
        if state == JobState.COMPLETED and view.result_json:
            object.__setattr__(result, "_return_value", view.result)
        return result
