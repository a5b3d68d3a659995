"""The django.tasks backend: ``TASKS = {"default": {"BACKEND": "django_jobs.backends.RedisBackend"}}``."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from itertools import chain
from typing import Any, cast

from django.db import transaction

from django_jobs import runtime, serialization, tracing
from django_jobs.arguments import bind_arguments, bind_each
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
from django_jobs.engine.keys import new_job_id, new_job_ids
from django_jobs.engine.protocol import EnqueueCode, JobState
from django_jobs.engine.queue import NewJob, NewJobs, jobs_like
from django_jobs.engine.record import JobView, PayloadEncoder
from django_jobs.exceptions import ConfigurationError, InvalidJob
from django_jobs.limits import guard_for_call, has_guard, shard_key_for_call, shard_problem
from django_jobs.signals import enqueued_signal_needed
from django_jobs.tasks import (
    STATE_TO_STATUS,
    JobResult,
    JobTask,
    declaring,
    ms_to_datetime,
    registered_job,
    results_like,
)

#: Jobs per enqueue script call in a bulk enqueue (keeps each call short for Redis).
BULK_CHUNK = 500

#: Sets a result's ``enqueued_at`` through its slot (as ``object.__setattr__`` does, in a call less).
_SET_ENQUEUED_AT: Callable[[JobResult, Any], None] = getattr(JobResult, "enqueued_at").__set__  # noqa: B009 (the slot's descriptor)
_SET_CORRELATION_ID: Callable[[JobResult, Any], None] = getattr(JobResult, "correlation_id").__set__  # noqa: B009
_SET_PARENT_ID: Callable[[JobResult, Any], None] = getattr(JobResult, "parent_id").__set__  # noqa: B009


#: The id of the job running in this context ('' outside jobs): the parent of what it enqueues.
current_job_id = runtime.current_job_id




def _new_result(
    task: JobTask, alias: str, queue: str, state: JobState, cid: str, parent: str, job_id: str, args: Sequence[Any],
    kwargs: dict[str, Any],
) -> JobResult:
    """Return a new job's result, made by its constructor."""
    return JobResult(
        task=task,
        id=job_id,
        status=TaskResultStatus.READY,
        enqueued_at=None,
        started_at=None,
        finished_at=None,
        last_attempted_at=None,
        args=cast(list[Any], args),  # JobResult.__post_init__ makes them the list JSON would
        kwargs=kwargs,
        backend=alias,
        errors=[],
        worker_ids=[],
        queue=queue,
        state=state,
        correlation_id=cid,
        parent_id=parent,
    )


@dataclass(slots=True)
class _Plan:
    """What every enqueue of one task shares while the settings and its registered job stay: made once per task.

    A task is a frozen dataclass, so its queue, priority, due time and options are fixed; the
    settings give the payload limit and the shards. :meth:`RedisBackend._plan` keeps one per
    task (by identity, as :meth:`RedisBackend._revalidate` keeps its validations) and makes it
    again when the settings object or the job registered under the task's name changes.
    """

    task: JobTask
    #: The job registered under ``name`` when the options were computed (they are what differs from it).
    base: JobTask | None
    name: str
    queue: str
    limit: int
    shards: int
    run_at_ms: int
    delay_ms: int
    priority: int
    state: JobState
    #: The payload's options (``"o"``), "" for none.
    opts: str
    #: The payload encoder of a job without a trace context.
    encode: PayloadEncoder
    #: ``make(id, args, kwargs)`` of one job's result (:func:`~django_jobs.tasks.results_like`), once made.
    maker: Callable[[str, Sequence[Any], dict[str, Any]], JobResult] | None = None
    #: ``(correlation id, parent id, make)`` of the last bulk enqueue (:meth:`bulk_maker`).
    bulk: tuple[str, str, Callable[[str, Sequence[Any], dict[str, Any]], JobResult]] | None = None

    def bulk_maker(self, task: JobTask, alias: str, cid: str, parent: str) -> Callable[[str, Sequence[Any], dict[str, Any]], JobResult]:
        """Return ``make(id, args, kwargs)`` of the results of a bulk enqueue with correlation id ``cid`` and ``parent``.

        Copies of one result that holds both (:func:`~django_jobs.tasks.results_like`), kept for
        the next bulk enqueue with the same two: a task's bulk enqueues from one process or
        request share them (:meth:`RedisBackend._enqueue_one` sets them on each result instead).
        """
        bulk = self.bulk
        if bulk is not None and bulk[0] == cid and bulk[1] == parent:
            return bulk[2]
        make = results_like(_new_result(task, alias, self.queue, self.state, cid, parent, "", [], {}))
        self.bulk = (cid, parent, make)
        return make


@dataclass(slots=True)  # not frozen: made for every enqueue, and a frozen one sets each field with object.__setattr__
class _Batch:
    """What the jobs of one enqueue share: made once, then each job's payload, and its job and result."""

    task: JobTask
    name: str
    alias: str
    queue: str
    limit: int
    shards: int
    job_id: str | None
    run_at_ms: int
    delay_ms: int
    cid: str
    parent: str
    priority: int
    state: JobState
    encode: PayloadEncoder
    #: The maker of many results, once made (:meth:`results`).
    copier: Callable[[str, Sequence[Any], dict[str, Any]], JobResult] | None = None
    #: The maker of many jobs, once made (:meth:`jobs`).
    jobber: Callable[[str, str], NewJob] | None = None

    def result(self, job_id: str, args: Sequence[Any], kwargs: dict[str, Any]) -> JobResult:
        """Return a new job's result, made by its constructor."""
        return _new_result(self.task, self.alias, self.queue, self.state, self.cid, self.parent, job_id, args, kwargs)

    def results(self) -> Callable[[str, Sequence[Any], dict[str, Any]], JobResult]:
        """Return ``make(id, args, kwargs)`` for many jobs: copies of one result (:func:`~django_jobs.tasks.results_like`)."""
        if self.copier is None:
            self.copier = results_like(self.result("", [], {}))
        return self.copier

    def job(self, job_id: str, data: str) -> NewJob:
        """Return a new job, made by its constructor."""
        return NewJob(
            id=job_id, data=data, priority=self.priority, run_at_ms=self.run_at_ms, delay_ms=self.delay_ms,
            correlation_id=self.cid, parent_id=self.parent,
        )

    def jobs(self) -> Callable[[str, str], NewJob]:
        """Return ``make(id, payload)`` for many jobs: copies of one (:func:`~django_jobs.engine.queue.jobs_like`)."""
        if self.jobber is None:
            self.jobber = jobs_like(self.job("", ""))
        return self.jobber

    def payloads(self, calls: Sequence[tuple[Sequence[Any], dict[str, Any]]]) -> list[str]:
        """Return each call's payload (:func:`_payloads`)."""
        return _payloads(self.name, self.limit, self.encode, calls)

    def build(self, calls: Sequence[tuple[Sequence[Any], dict[str, Any]]], payloads: Sequence[str]) -> tuple[list[NewJob], list[JobResult]]:
        """Return the jobs and the results of ``calls``, with their payloads from :meth:`payloads` (nothing here fails).

        Two lists, not a list of pairs: a bulk enqueue keeps every job and result to the end,
        and each object kept is one more for the garbage collector to scan meanwhile.
        """
        task, queue, job_id, shards = self.task, self.queue, self.job_id, self.shards
        make_job, make_result = (self.jobs(), self.results()) if len(calls) > 1 else (self.job, self.result)
        news: list[NewJob] = []
        results: list[JobResult] = []
        add_job, add_result = news.append, results.append
        for (args, kwargs), data in zip(calls, payloads, strict=True):
            this_id = job_id
            if shards > 1:  # a sharded queue: the id names the shard (docs/scaling.md#sharded-queues)
                key = shard_key_for_call(task, args, kwargs)
                if this_id is None or key is not None:  # a caller's id without a key is placed by its own hash
                    this_id = get_engine().place(queue, this_id or new_job_id(), key)
            this_id = this_id or new_job_id()
            add_job(make_job(this_id, data))
            add_result(make_result(this_id, args, kwargs))
        return news, results


def _payloads(name: str, limit: int, encode: PayloadEncoder, calls: Sequence[tuple[Sequence[Any], dict[str, Any]]]) -> list[str]:
    """Return the payload of each call of job ``name``; raise for the first that cannot be enqueued, before any is sent.

    A call without arguments takes the one payload such calls share, checked once.

    Raises:
        TypeError: an argument is not JSON.
        InvalidJob: a payload is over ``MAX_PAYLOAD_BYTES``.
        UnicodeEncodeError: a payload is not UTF-8 (a lone surrogate), as Redis' protocol would refuse it.
    """
    dumps_call = serialization.dumps_call
    bare: str | None = None  # the payload of a call without arguments, once made and checked
    out: list[str] = []
    add = out.append
    for args, kwargs in calls:
        if not args and not kwargs:
            if bare is None:
                bare = encode("[]", "{}")
                if not bare.isascii() or len(bare) > limit:
                    _check_size(name, limit, bare)
            add(bare)
            continue
        data = encode(*dumps_call(name, args, kwargs))
        if not data.isascii() or len(data) > limit:  # (str.isascii() is free: CPython knows it)
            _check_size(name, limit, data)
        add(data)
    return out


def _encoder(plan: _Plan, traced: bool) -> PayloadEncoder:
    """Return the payload encoder of an enqueue of ``plan``'s task: the plan's, or one with the trace context."""
    carried = tracing.carrier() if traced else None  # the W3C trace context, when OpenTelemetry traces (docs/observability.md)
    return PayloadEncoder(plan.name, plan.opts, serialization.dumps(carried)) if carried else plan.encode


def _check_size(name: str, limit: int, data: str) -> None:
    """Raise when payload ``data`` of job ``name`` is over ``limit`` bytes (or not UTF-8, from ``str.encode``).

    Raises:
        InvalidJob: the payload is over ``MAX_PAYLOAD_BYTES``.
        UnicodeEncodeError: the payload is not UTF-8 (a lone surrogate), as Redis' protocol would refuse it.
    """
    size = len(data.encode())
    if size > limit:
        raise InvalidJob(
            f"The payload of job {name!r} is {size} bytes, over MAX_PAYLOAD_BYTES "
            f"({limit}). Store large data elsewhere and pass its id."
        )


class RedisBackend(BaseTaskBackend):
    """Run django.tasks on django_jobs' Redis engine and workers."""

    #: One instance may serve every context of a thread (it keeps no per-request state):
    #: JobTask.get_backend() remembers it per thread (django_jobs/tasks.py).
    shared_per_thread = True

    #: Marks django_jobs' backend (and subclasses) for the system checks, which sit below it.
    django_jobs_backend = True

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
        # As in Django, an empty TASKS QUEUES list restricts nothing (DJANGO_JOBS['QUEUES'] still does).
        self.declared_queues = set(params["QUEUES"]) if params.get("QUEUES") else None
        #: Tasks validated against the settings object in ``_valid[0]`` (by id; the task is kept
        #: so its id cannot be reused), each with whether it has a guard (a unique or limit key):
        #: enqueue re-validates only when the task or settings change.
        self._valid: tuple[Any, dict[int, tuple[Any, bool]]] = (None, {})
        #: The plans of tasks enqueued under the settings object in ``_plans[0]`` (:meth:`_plan`).
        self._plans: tuple[Any, dict[int, _Plan]] = (None, {})
        self._skip_queue_check = False

    @property
    def queues(self) -> set[str]:
        """The queues tasks of this backend may use (Django's attribute), read from the settings.

        Empty while DJANGO_JOBS is invalid: ``manage.py check`` reports why, and enqueue raises it.
        """
        if self._skip_queue_check:
            return set()
        try:
            return set(self.allowed_queues())
        except ConfigurationError:
            return set()

    @queues.setter
    def queues(self, value: Any) -> None:
        """Ignore Django's default (``{"default"}``): our queues come from DJANGO_JOBS at call time."""

    def check(self, **kwargs: Any) -> list[Any]:
        """Return nothing: the ``django_jobs``-tagged check ``check_queues`` reports the queues (E004, E007).

        Django's ``check_tasks`` (untagged) calls this; reporting them here too would show each
        message twice in ``manage.py check`` and none in ``manage.py check --tag django_jobs``.
        """
        return []

    # -- validation -----------------------------------------------------------------------

    def allowed_queues(self) -> list[str]:
        """Queues tasks of this backend may use: DJANGO_JOBS['QUEUES'] (and TASKS QUEUES if set)."""
        configured = get_settings().queue_names
        if self.declared_queues is None:
            return configured
        return [q for q in configured if q in self.declared_queues]

    def validate_task(self, task: Any) -> None:
        """Check ``task`` against this backend and the current settings (as Django's backends do).

        Never raises for a settings problem (a job is declared at import time, often by the
        URLconf): ``manage.py check`` and ``runworkers`` list those, and enqueue raises them.
        """
        try:
            allowed: list[str] | None = self.allowed_queues()
        except ConfigurationError:
            allowed = None
        if allowed is not None and task.queue_name not in allowed:
            why = (
                f"Queue {task.queue_name!r} is not configured. Add it to DJANGO_JOBS['QUEUES']"
                + (f" and TASKS[{self.alias!r}]['QUEUES']." if self.declared_queues is not None else ".")
            )
            if not declaring.get():
                raise InvalidTask(why)
            allowed = None  # declaring never raises for a setting: check reports it (E011), enqueue raises it
        if allowed is None:
            # Django's own queue check would raise with an empty or stale list: ours decided above.
            self._skip_queue_check = True
        try:
            super().validate_task(task)
        finally:
            self._skip_queue_check = False
        if not isinstance(task, JobTask):
            return
        if task.attempts is not None and (not isinstance(task.attempts, int) or isinstance(task.attempts, bool) or task.attempts < 1):
            raise InvalidTask(f"attempts={task.attempts!r} must be a whole number >= 1.")
        if task.timeout is not None and (not isinstance(task.timeout, (int, float)) or task.timeout <= 0):
            raise InvalidTask(f"timeout={task.timeout!r} must be a positive number of seconds.")
        if task.delay is not None and (isinstance(task.delay, bool) or not isinstance(task.delay, (int, float)) or not 0 <= task.delay < float("inf")):
            raise InvalidTask(f"delay={task.delay!r} must be a finite, non-negative number of seconds.")
        if task.keep_result is not None and (
            isinstance(task.keep_result, bool) or not isinstance(task.keep_result, (int, float)) or not 0 <= task.keep_result < float("inf")
        ):
            raise InvalidTask(f"keep_result={task.keep_result!r} must be a number of seconds >= 0 (0: delete the job when it finishes).")
        try:
            validate_backoff(task.backoff)
        except InvalidJob as exc:
            raise InvalidTask(str(exc)) from None
        if allowed is not None and (problem := _shard_problem(task)):
            raise InvalidTask(problem)

    # -- enqueue --------------------------------------------------------------------------

    def _options(self, task: JobTask, base: JobTask | None) -> str:
        """Return the payload's options: only what differs from ``base``, the registered job."""
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

    def _prepare(
        self, task: JobTask, args: Sequence[Any], kwargs: dict[str, Any], job_id: str | None = None, *, traced: bool = True
    ) -> tuple[NewJob, JobResult]:
        news, results = self._prepare_many(task, ((args, kwargs),), job_id, traced=traced)
        return news[0], results[0]

    def _prepare_many(
        self, task: JobTask, calls: Sequence[tuple[Sequence[Any], dict[str, Any]]], job_id: str | None = None,
        *, traced: bool = True,
    ) -> tuple[list[NewJob], list[JobResult]]:
        """Return the jobs of ``calls`` of ``task``, ready to push, and their results.

        What every job of one call shares (the settings, the options, the due time, the
        correlation and parent ids, the trace context) is computed once, not per job.
        """
        batch = self._batch(task, job_id, traced=traced)
        return batch.build(calls, batch.payloads(calls))

    def _plan(self, task: JobTask) -> _Plan:
        """Return what every enqueue of ``task`` shares (made on its first enqueue under these settings).

        Raises:
            InvalidJob: a callable backoff set with ``using()`` (every enqueue raises it: nothing is kept).
        """
        settings = get_settings()
        seen, plans = self._plans
        if seen is not settings:
            plans = {}
            self._plans = (settings, plans)
        plan = plans.get(id(task))
        if plan is not None and plan.task is task and plan.base is registered_job(plan.name):
            return plan
        name = task.module_path  # (Django's property: a new string on each read)
        base = registered_job(name)
        opts = self._options(task, base) if isinstance(task, JobTask) else ""
        if task.run_after is not None:
            # Kept exactly so get_result() returns the task as enqueued (the hash keeps only due ms).
            ra = f'"ra":{datetime_to_us(task.run_after)}'
            opts = f"{opts[:-1]},{ra}}}" if opts else f"{{{ra}}}"
        queue = task.queue_name
        run_at_ms = int(task.run_after.timestamp() * 1000) if task.run_after is not None else 0
        delay = getattr(task, "delay", None)
        delay_ms = int(delay * 1000) if delay else 0
        plan = _Plan(
            task=task, base=base, name=name, queue=queue, limit=settings.max_payload_bytes,
            shards=settings.queues.get(queue, {}).get("SHARDS", 1), run_at_ms=run_at_ms, delay_ms=delay_ms,
            priority=int(task.priority), state=JobState.SCHEDULED if run_at_ms or delay_ms else JobState.WAITING,
            opts=opts, encode=PayloadEncoder(name, opts),
        )
        if len(plans) > 1024:
            plans.clear()
        plans[id(task)] = plan
        return plan

    def _batch(self, task: JobTask, job_id: str | None, *, traced: bool) -> _Batch:
        """Return what the jobs of one enqueue of ``task`` share, to make them with."""
        plan = self._plan(task)
        return _Batch(
            task=task, name=plan.name, alias=self.alias, queue=plan.queue, limit=plan.limit, shards=plan.shards,
            job_id=job_id, run_at_ms=plan.run_at_ms, delay_ms=plan.delay_ms,
            cid=get_correlation_id() or process_correlation_id(), parent=current_job_id(), priority=plan.priority,
            state=plan.state, encode=_encoder(plan, traced),
        )

    def _enqueue_one(self, task: JobTask, args: Sequence[Any], kwargs: dict[str, Any]) -> JobResult:
        """Enqueue one job of ``task`` (no guard, no trace): :meth:`enqueue`'s usual path.

        What :meth:`_prepare_many` and :meth:`_push` do for one job, without their lists and
        loops: the payload (its checks), the id, the job, its result (a copy of the plan's, as
        a bulk enqueue's results are: :func:`~django_jobs.tasks.results_like`), one script call,
        the result dated with the enqueue time Redis stored, ``task_enqueued``.
        """
        plan = self._plan(task)
        name = plan.name
        data = plan.encode(*serialization.dumps_call(name, args, kwargs))
        if not data.isascii() or len(data) > plan.limit:
            _check_size(name, plan.limit, data)
        engine = get_engine()
        if plan.shards > 1:  # a sharded queue: the id names the shard (docs/scaling.md#sharded-queues)
            job_id = engine.place(plan.queue, new_job_id(), shard_key_for_call(task, args, kwargs))
        else:
            job_id = new_job_id()
        cid = get_correlation_id() or process_correlation_id()
        parent = current_job_id()
        new = NewJob(job_id, data, plan.priority, plan.run_at_ms, plan.delay_ms, cid, parent)
        maker = plan.maker
        if maker is None:  # (the alias is this backend's: a plan is kept per backend)
            maker = plan.maker = results_like(_new_result(task, self.alias, plan.queue, plan.state, "", "", "", [], {}))
        result = maker(job_id, args, kwargs)
        _SET_CORRELATION_ID(result, cid)
        _SET_PARENT_ID(result, parent)
        code = engine.enqueue_one(plan.queue, new)
        # The enqueue time Redis stored in the job (not this process' clock): get_result() reads the same.
        _SET_ENQUEUED_AT(result, ms_to_datetime(code.enqueued_ms))
        if enqueued_signal_needed(type(self)):
            task_enqueued.send(type(self), task_result=result)
        self._pushed([new], [result])
        return result

    def _push(self, news: list[NewJob], results: list[JobResult], guard: bool | None = None) -> None:
        """Enqueue ``news``, the jobs of one enqueue call (one task, so one queue), and date their ``results``.

        ``guard``: whether the task has a unique or limit key, when the caller knows (None: asked here).
        """
        if not news:
            return  # enqueue_many([]): nothing to send
        engine = get_engine()
        if guard if guard is not None else has_guard(results[0].task):
            # Unique jobs, throttling, debounce and per-key limits (docs/flow-control.md): their own script.
            self._push_guarded(engine, news, results)
            self._pushed(news, results)
            return
        # The jobs of one enqueue call: one task, so one queue (read from the first result only:
        # the others' shared fields stay unset until read, see tasks.results_like).
        queue = results[0].queue
        if len(news) == 1:
            codes = [engine.enqueue_one(queue, news[0])]
        else:
            codes = engine.enqueue_many(queue, news, chunk=BULK_CHUNK)
        self._stamp(results, [code.enqueued_ms for code in codes])
        self._pushed(news, results)

    def _enqueue_columns(
        self, task: JobTask, plan: _Plan, calls: Sequence[tuple[Sequence[Any], dict[str, Any]]], *, traced: bool
    ) -> list[JobResult]:
        """Enqueue the jobs of ``calls`` (several, no guard, a queue not sharded): :meth:`enqueue_many`'s usual path.

        Every payload is made first, so a job that cannot be enqueued (not JSON, too large,
        not UTF-8) raises before anything is written. Then per chunk of :data:`BULK_CHUNK`: the
        ids (:func:`~django_jobs.engine.keys.new_job_ids`), the results (copies of one: the
        plan's :meth:`_Plan.bulk_maker`) and the jobs as two columns
        (:class:`~django_jobs.engine.queue.NewJobs`), made while Redis writes the chunk before
        (:meth:`~django_jobs.engine.transitions.Transitions.enqueue_columns`). No object per
        job but its result (and its id and payload).
        """
        payloads = _payloads(plan.name, plan.limit, _encoder(plan, traced), calls)
        cid, parent = get_correlation_id() or process_correlation_id(), current_job_id()
        shared = NewJob("", "", plan.priority, plan.run_at_ms, plan.delay_ms, cid, parent)
        make = plan.bulk_maker(task, self.alias, cid, parent)
        results: list[JobResult] = []
        add = results.append
        made: list[NewJobs] = []

        def chunks() -> Iterator[NewJobs]:
            for start in range(0, len(calls), BULK_CHUNK):
                part = calls[start : start + BULK_CHUNK]
                ids = new_job_ids(len(part))
                for job_id, (args, kwargs) in zip(ids, part):
                    add(make(job_id, args, kwargs))
                jobs = NewJobs(ids, payloads[start : start + BULK_CHUNK], shared)
                made.append(jobs)
                yield jobs

        self._stamp(results, get_engine().enqueue_columns(plan.queue, chunks()))
        self._pushed(chain.from_iterable(made), results)
        return results

    def _pushed(self, news: Iterable[NewJob], results: list[JobResult]) -> None:
        """Called once the jobs ``news`` are enqueued and their ``results`` dated (nothing here; see testing.py)."""

    def _stamp(self, results: Sequence[JobResult], times: Sequence[int]) -> None:
        """Date each result with the enqueue time (ms) Redis stored in its job, and send ``task_enqueued``."""
        # With no receiver that would do anything, no per-job dispatch (asked once per call).
        send = enqueued_signal_needed(type(self))
        last, when = -1, None  # the jobs of one script call share their enqueue time: one datetime
        set_enqueued_at = _SET_ENQUEUED_AT
        for result, ms in zip(results, times, strict=True):
            # The enqueue time Redis stored in the job (not this process' clock): get_result() reads the same.
            if ms != last:
                last, when = ms, ms_to_datetime(ms)
            set_enqueued_at(result, when)
            if send:
                task_enqueued.send(type(self), task_result=result)

    def _push_guarded(self, engine: Any, news: list[NewJob], results: list[JobResult]) -> None:
        """Enqueue jobs with a unique or limit key; a deduplicated result takes the guarded job's id (and enqueue time)."""
        for start in range(0, len(news), BULK_CHUNK):
            chunk = list(zip(news[start : start + BULK_CHUNK], results[start : start + BULK_CHUNK], strict=True))
            specs = [(new, guard_for_call(result.task, result.args, result.kwargs)) for new, result in chunk]
            codes = engine.enqueue_guarded(chunk[0][1].queue, specs)
            send = enqueued_signal_needed(type(self))
            for (_, result), (code, job_id) in zip(chunk, codes):
                object.__setattr__(result, "enqueued_at", ms_to_datetime(code.enqueued_ms))
                if code in (EnqueueCode.DEDUPLICATED, EnqueueCode.REPLACED):
                    object.__setattr__(result, "id", job_id)
                    object.__setattr__(result, "deduplicated", True)
                elif send:
                    task_enqueued.send(type(self), task_result=result)

    def _revalidate(self, task: Any) -> bool:
        """Validate ``task`` again at enqueue, as Django's backends do (once per task and settings).

        Returns whether it has a guard (a unique or limit key: :func:`~django_jobs.limits.has_guard`),
        asked once with the validation.
        """
        settings = get_settings()  # an invalid setting raises here, with its fix
        seen, valid = self._valid
        if seen is not settings:
            valid = {}
            self._valid = (settings, valid)
        known = valid.get(id(task))
        if known is not None and known[0] is task:
            return known[1]
        self.validate_task(task)
        if len(valid) > 1024:
            valid.clear()
        guard = has_guard(task)
        valid[id(task)] = (task, guard)
        return guard

    def enqueue(self, task: Any, args: Sequence[Any], kwargs: dict[str, Any]) -> JobResult:  # type: ignore[override]
        """Queue up one job; returns its result handle.

        Raises:
            InvalidTask: the task does not fit the current settings (e.g. its queue is gone).
            InvalidArguments: ``args``/``kwargs`` do not fit the job's function (also a TypeError).
        """
        guard = self._revalidate(task)
        if guard:
            guard_for_call(task, args, kwargs)  # a unique or limit key that cannot be computed says so first
        bind_arguments(task, args, kwargs)
        if tracing.tracer() is None:  # the usual case: no OpenTelemetry provider, no span
            if not guard:
                return self._enqueue_one(task, args, kwargs)
            news, results = self._prepare_many(task, ((args, kwargs),), traced=False)
            self._push(news, results, guard)
            return results[0]
        with tracing.producer_span(task.module_path, task.queue_name) as span:
            news, results = self._prepare_many(task, ((args, kwargs),))
            self._push(news, results, guard)
            tracing.set_job_id(span, results[0].id, results[0].correlation_id)
        return results[0]

    def enqueue_many(self, task: Any, calls: Sequence[tuple[Sequence[Any], dict[str, Any]]]) -> list[JobResult]:
        """Queue up many jobs of ``task`` in one round trip per queue."""
        guard = self._revalidate(task)
        bind_each(task, calls, where="item {} of enqueue_many()")
        with tracing.producer_span(task.module_path, task.queue_name, len(calls)):
            traced = tracing.tracer() is not None  # asked once per call, not per job
            if len(calls) > 1 and not guard and (plan := self._plan(task)).shards == 1:
                # Columns, no object per job; several chunks: Redis writes one while the next is made.
                return self._enqueue_columns(task, plan, calls, traced=traced)
            news, results = self._prepare_many(task, calls, traced=traced)
            self._push(news, results, guard)
            return results

    def enqueue_on_commit(self, task: Any, args: Sequence[Any], kwargs: dict[str, Any]) -> JobResult:
        """Prepare the job now; enqueue it when the current transaction commits."""
        guard = self._revalidate(task)
        if guard:
            guard_for_call(task, args, kwargs)  # a bad unique or limit key fails here, not at commit
        bind_arguments(task, args, kwargs)
        with tracing.producer_span(task.module_path, task.queue_name) as span:
            news, results = self._prepare_many(task, ((args, kwargs),))
            tracing.set_job_id(span, results[0].id, results[0].correlation_id)
        transaction.on_commit(lambda: self._push(news, results))
        return results[0]

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
        task = registered_job(view.name)
        if task is None:
            raise TaskResultDoesNotExist(f"Job {job_id!r} runs {view.name!r}, which is not registered in this process.")
        state = view.state or JobState.WAITING
        priority = view.priority if view.priority is not None else task.priority
        task = _task_as_enqueued(task, view.options, queue, priority)
        errors = _task_errors(view.errors)
        if state == JobState.CANCELLED and not errors:
            errors.append(cancelled_error(view.reason))
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
            earlier_errors=_task_errors(view.earlier_errors),
        )
        if state == JobState.COMPLETED and view.result_json:
            object.__setattr__(result, "_return_value", view.result)
        return result


#: Payload option keys (``"o"``) of the task options :meth:`JobTask.using` can change.
_OPTION_FIELDS = {"at": "attempts", "to": "timeout", "kr": "keep_result", "bo": "backoff"}


def _task_as_enqueued(task: JobTask, options: dict[str, Any], queue: str, priority: int) -> JobTask:
    """Return the registered ``task`` with the options this job was enqueued with (queue, priority, run_after, using())."""
    changes: dict[str, Any] = {}
    if task.queue_name != queue:
        changes["queue_name"] = queue
    if task.priority != priority:
        changes["priority"] = priority
    if options:
        for key, field_name in _OPTION_FIELDS.items():
            if key in options:
                changes[field_name] = options[key]
        if options.get("ra"):
            changes["run_after"] = us_to_datetime(options["ra"])
    if not changes:
        return task
    from dataclasses import replace

    return replace(task, **changes)


def _shard_problem(task: JobTask) -> str | None:
    """Return why ``task`` cannot be enqueued on its sharded queue (django_jobs.E041), or None."""
    try:
        shards = get_settings().queues.get(task.queue_name, {}).get("SHARDS", 1)
    except ConfigurationError:
        return None
    return shard_problem(task, shards)


def _task_errors(recorded: list[dict[str, Any]]) -> list[TaskError]:
    """Return the errors a job hash recorded as Django's ``TaskError`` objects."""
    return [
        TaskError(exception_class_path=e.get("exception_class_path", ""), traceback=e.get("traceback", ""))
        for e in recorded
    ]


def cancelled_error(why: str) -> TaskError:
    """Return the error entry of a job cancelled before it ran (Django code reads ``errors[-1]`` on FAILED)."""
    by = {
        "parent_ended": "because its flow parent ended",
        "child_failed": "because a child of its flow failed",
    }.get(why, "by a cancel request (JobResult.cancel(), the admin or manage.py jobs cancel)")
    return TaskError(
        exception_class_path="django_jobs.exceptions.Cancel",
        traceback=f"django_jobs.exceptions.Cancel: the job was cancelled {by}.\n",
    )


def datetime_to_us(value: Any) -> int:
    """Return an aware datetime as whole microseconds since the epoch (exact, unlike ``timestamp()``)."""
    from datetime import UTC, datetime, timedelta

    return int((value - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1))


def us_to_datetime(us: Any) -> Any:
    """Return the aware UTC datetime of :func:`datetime_to_us`."""
    from datetime import UTC, datetime, timedelta

    return datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=int(us))
