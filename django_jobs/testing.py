"""Helpers for testing code that uses django_jobs (see docs/testing.md).

Three ways to run jobs in tests, all against a real Redis and the real scripts:

* :func:`work_until_empty` runs the real worker in this process until the queues are empty;
* :func:`immediate` (or ``OPTIONS={"MODE": "immediate"}`` on :class:`TestingBackend`) runs
  each job in the calling thread as soon as it is enqueued;
* :func:`capture` records jobs for assertions and runs them when the test says so
  (:meth:`Captured.run_all`, :meth:`Captured.run_until_empty`).

:func:`isolated_queues` (and the pytest fixtures in :mod:`django_jobs.pytest_plugin` and
:class:`JobsTestMixin`) give each test its own key prefix and delete its keys afterwards.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
import uuid
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django_jobs import serialization
from django_jobs.backends import RedisBackend
from django_jobs.conf import get_settings
from django_jobs.engine.protocol import OutcomeKind
from django_jobs.engine.queue import NewJob
from django_jobs.tasks import JobResult, JobTask

#: Modes of :class:`TestingBackend`: run at once, record, or enqueue as in production.
MODES = ("immediate", "capture", "off")
#: Worker id written into jobs run by the testing modes.
TEST_WORKER_ID = "testing:immediate"
#: Lease of a job run in the calling thread: long, since nothing renews it.
TEST_LEASE_MS = 3_600_000


def work_until_empty(queues: Iterable[str] | None = None, *, threads: int = 4, grace: float = 10.0) -> int:
    """Run jobs in this process until ``queues`` have nothing waiting, running or due.

    Returns the number of jobs settled. Jobs scheduled for later keep the call waiting
    until they are due. Uses the real Redis and the real worker code.

    >>> send_welcome.enqueue(user_id=42)  # doctest: +SKIP
    >>> work_until_empty()  # doctest: +SKIP
    1
    """
    from django_jobs.worker.process import WorkerProcess

    worker = WorkerProcess(queues=list(queues or get_settings().queue_names), threads=threads, grace=grace, burst=True)
    worker.run()
    return worker.processed


# -- running one job in the calling thread ----------------------------------------------------


def run_job(queue: str, job_id: str) -> str | None:
    """Run job ``job_id`` of ``queue`` now, in this thread, until it is finished.

    It is claimed even if it is scheduled for later; retries follow at once (backoff delays
    are skipped, attempts and errors are not). Returns its final state, or None when it was
    not waiting or scheduled (finished, cancelled, already running): then it is left alone.
    """
    from django_jobs.engine import get_engine
    from django_jobs.engine.codes import raise_for_code

    engine = get_engine()
    state: str | None = None
    while True:
        claimed = engine.claim(queue, job_id, lease_ms=TEST_LEASE_MS, worker_id=TEST_WORKER_ID)
        if claimed is None:
            if state is None:
                return None  # not waiting or scheduled: left alone
            # A retry that a cancel request turned into "cancelled" (settle decides that).
            return (engine.get_job(queue, job_id) or {}).get("s", state)
        outcome = _execute(claimed)
        raise_for_code(engine.settle(queue, [outcome])[0], job_id)
        # "l": the job raised RateLimited and is scheduled for later; it is not run again here.
        state = {
            OutcomeKind.COMPLETE: "completed", OutcomeKind.FAIL: "failed", OutcomeKind.CANCELLED: "cancelled",
            OutcomeKind.RETRY: "retrying", OutcomeKind.RATE_LIMITED: "scheduled",
        }[outcome.kind]
        if outcome.kind != OutcomeKind.RETRY:  # "l" (rate limited) stays scheduled: not retried at once
            return state


def _execute(claimed: Any) -> Any:
    """Run a claimed job through the worker's own run path (executor.run_sync / run_async).

    Same decoding, middleware, signals, logging and outcomes as on a worker; the job is
    registered in :mod:`django_jobs.runtime` while it runs, as a worker does.
    """
    from django_jobs import runtime
    from django_jobs.worker import executor
    from django_jobs.worker.executor import Prepared, RunningJob

    job = RunningJob(claimed)
    prepared = Prepared(job, TEST_WORKER_ID)
    if prepared.failure is not None:
        return prepared.failure
    runtime.register(job)
    try:
        if prepared.is_async:
            return _run_coroutine(executor.run_async(job, prepared))
        outcome = executor.run_sync(job, prepared, close_connections=False)
        if job.timeout and time.monotonic() - job.started > job.timeout:
            # A worker's watchdog would have recorded a timeout (and dropped the late outcome).
            return executor.timeout_outcome(job, prepared)
        return outcome
    finally:
        runtime.unregister(job.id)


def _run_coroutine(coro: Any) -> Any:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    # Called from inside an event loop (an async test): run the job's own loop in a helper thread.
    box: list[Any] = []
    thread = threading.Thread(target=lambda: box.append(asyncio.run(coro)))
    thread.start()
    thread.join()
    return box[0]


# -- capture mode -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class CapturedJob:
    """One enqueue recorded by :func:`capture`."""

    id: str
    name: str
    task: JobTask
    args: list[Any]
    kwargs: dict[str, Any]
    queue: str
    priority: int
    #: ``.using(delay=)`` in seconds (None: none).
    delay: float | None
    #: ``run_after`` (None: none).
    run_after: datetime | None
    #: The handle ``enqueue()`` returned.
    result: JobResult


@dataclass(eq=False)
class Captured:
    """Jobs enqueued while capturing, in order. They wait in Redis until run.

    >>> with capture() as jobs:  # doctest: +SKIP
    ...     signup(user_id=42)
    ...     jobs.assert_enqueued(send_welcome, kwargs={"user_id": 42}, queue="emails")
    ...     jobs.run_until_empty()
    """

    jobs: list[CapturedJob] = field(default_factory=list)
    _ran: set[str] = field(default_factory=set)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __len__(self) -> int:
        return len(self.jobs)

    def __iter__(self) -> Iterator[CapturedJob]:
        return iter(list(self.jobs))

    def record(self, new: NewJob, result: JobResult) -> None:
        task = result.task
        assert isinstance(task, JobTask)
        with self._lock:
            self.jobs.append(
                CapturedJob(
                    id=result.id, name=task.module_path, task=task,
                    args=serialization.normalize(result.args), kwargs=serialization.normalize(result.kwargs),
                    queue=result.queue, priority=new.priority,
                    delay=new.delay_ms / 1000 if new.delay_ms else None, run_after=task.run_after, result=result,
                )
            )

    def filter(self, job: JobTask | str | None = None, *, queue: str | None = None) -> list[CapturedJob]:
        """Return the captured jobs of ``job`` (a job or its name) and/or ``queue``."""
        name = job.module_path if isinstance(job, JobTask) else job
        return [j for j in self if (name is None or j.name == name) and (queue is None or j.queue == queue)]

    def assert_enqueued(
        self,
        job: JobTask | str,
        args: Sequence[Any] | None = None,
        kwargs: dict[str, Any] | None = None,
        *,
        queue: str | None = None,
        delay: float | None = None,
        priority: int | None = None,
        count: int | None = None,
    ) -> CapturedJob:
        """Assert ``job`` was enqueued with these arguments and options; return the first match.

        Only what is given is compared. ``args``/``kwargs`` are compared after a JSON round
        trip (tuples equal lists). ``count`` asserts the exact number of matching enqueues.
        """
        wanted_args = serialization.normalize(list(args)) if args is not None else None
        wanted_kwargs = serialization.normalize(dict(kwargs)) if kwargs is not None else None
        candidates = self.filter(job)
        matches = [
            j for j in candidates
            if (wanted_args is None or j.args == wanted_args)
            and (wanted_kwargs is None or j.kwargs == wanted_kwargs)
            and (queue is None or j.queue == queue)
            and (delay is None or j.delay == delay)
            and (priority is None or j.priority == priority)
        ]
        name = job.module_path if isinstance(job, JobTask) else job
        if count is not None and len(matches) != count:
            raise AssertionError(f"Expected {count} enqueue(s) of {name!r} matching, found {len(matches)}: {self._describe(candidates)}")
        if not matches:
            raise AssertionError(f"{name!r} was not enqueued as expected. Enqueued: {self._describe(candidates)}")
        return matches[0]

    def assert_not_enqueued(self, job: JobTask | str) -> None:
        """Assert ``job`` was not enqueued."""
        found = self.filter(job)
        if found:
            raise AssertionError(f"Expected no enqueue of {found[0].name!r}, found {self._describe(found)}")

    @staticmethod
    def _describe(jobs: list[CapturedJob]) -> str:
        if not jobs:
            return "none"
        return "; ".join(
            f"{j.name}(args={j.args}, kwargs={j.kwargs}, queue={j.queue!r}, delay={j.delay}, priority={j.priority})" for j in jobs
        )

    def pending(self) -> list[CapturedJob]:
        """Captured jobs not run yet."""
        with self._lock:
            return [j for j in self.jobs if j.id not in self._ran]

    def run_all(self) -> int:
        """Run the jobs captured so far that have not run, in order, in this thread.

        Jobs they enqueue are captured, not run (see :meth:`run_until_empty`). Delays are
        ignored; retries happen at once. Returns how many jobs ran.
        """
        ran = 0
        for captured in self.pending():
            with self._lock:
                if captured.id in self._ran:
                    continue
                self._ran.add(captured.id)
            if run_job(captured.queue, captured.id) is not None:
                ran += 1
            captured.result.refresh()
        return ran

    def run_until_empty(self, *, max_rounds: int = 100) -> int:
        """Run captured jobs, and the jobs they enqueue, until none is left. Returns how many ran."""
        total = 0
        for _ in range(max_rounds):
            if not self.pending():
                return total
            total += self.run_all()
        raise AssertionError(f"Jobs kept enqueueing jobs for {max_rounds} rounds; is there a loop?")

    def clear(self) -> None:
        """Forget the captured jobs (they stay in Redis)."""
        with self._lock:
            self.jobs.clear()
            self._ran.clear()


# -- the backend and the mode switch ----------------------------------------------------------


@dataclass
class _Mode:
    mode: str
    captured: Captured | None = None
    raise_failures: bool = False


#: Modes set by :func:`immediate` / :func:`capture` (the last one wins); process-wide, so
#: jobs enqueued from other threads of the test (a live server) follow them too.
_overrides: list[_Mode] = []
#: Where jobs go when the TASKS setting says ``"MODE": "capture"`` and no :func:`capture` is active.
default_captured = Captured()


class TestingBackend(RedisBackend):
    """:class:`~django_jobs.backends.RedisBackend` with test modes, chosen per enqueue.

    ``TASKS = {"default": {"BACKEND": "django_jobs.testing.TestingBackend",
    "OPTIONS": {"MODE": "immediate"}}}``: ``"immediate"`` runs each job at once in the
    calling thread, ``"capture"`` records it (in :data:`default_captured`), ``"off"`` (the
    default) enqueues it for workers as in production. :func:`immediate` and :func:`capture`
    override the setting for a block.

    Jobs are always enqueued in Redis first, by the production code: arguments go through the
    same JSON encoding, ``enqueue_on_commit`` waits for the commit, and results are read back
    from Redis as in production.
    """

    __test__ = False  # not a test class, whatever pytest thinks of its name

    def __init__(self, alias: str, params: dict[str, Any]) -> None:
        super().__init__(alias, params)
        mode = self.options.get("MODE", "off")
        if mode not in MODES:
            from django_jobs.exceptions import ConfigurationError

            raise ConfigurationError(f"TASKS[{alias!r}]['OPTIONS']['MODE'] is {mode!r}; use one of {', '.join(map(repr, MODES))}.")
        self.mode = mode

    def current(self) -> _Mode:
        if _overrides:
            return _overrides[-1]
        return _Mode(self.mode, default_captured if self.mode == "capture" else None)

    def _pushed(self, news: Iterable[NewJob], results: list[JobResult]) -> None:
        # Every enqueue ends here once its jobs are in Redis (a streamed enqueue_many too).
        mode = self.current()
        if mode.mode == "capture":
            assert mode.captured is not None
            for new, result in zip(news, results, strict=True):
                mode.captured.record(new, result)
        elif mode.mode == "immediate":
            for result in results:
                state = run_job(result.queue, result.id)
                result.refresh()
                if mode.raise_failures and state == "failed":
                    last = result.errors[-1].traceback if result.errors else ""
                    raise AssertionError(f"Job {result.task.module_path!r} {result.id} failed:\n{last}")


@contextlib.contextmanager
def _mode(mode: _Mode) -> Iterator[None]:
    from django.conf import settings
    from django.test import override_settings
    from django.utils.module_loading import import_string

    tasks = getattr(settings, "TASKS", {}) or {}
    swapped = {}
    for alias, config in tasks.items():
        try:
            cls = import_string(str(config.get("BACKEND")))
        except ImportError:
            cls = None
        if isinstance(cls, type) and issubclass(cls, RedisBackend) and not issubclass(cls, TestingBackend):
            config = {**config, "BACKEND": f"{__name__}.TestingBackend"}
        swapped[alias] = config
    with override_settings(TASKS=swapped) if swapped != tasks else contextlib.nullcontext():
        _overrides.append(mode)
        try:
            yield
        finally:
            _overrides.remove(mode)


@contextlib.contextmanager
def immediate(*, raise_failures: bool = False) -> Iterator[None]:
    """Run every job enqueued in the block at once, in the calling thread.

    The job is enqueued in Redis as in production (arguments JSON-encoded, on-commit
    enqueues waiting for the commit), then claimed and run by the worker's code; retries
    follow at once. ``enqueue()`` returns when the job is finished, with its result
    refreshed. A failed job does not raise, as in production, unless ``raise_failures``.

    >>> with immediate():  # doctest: +SKIP
    ...     assert add.enqueue(2, 3).return_value == 5
    """
    with _mode(_Mode("immediate", raise_failures=raise_failures)):
        yield


@contextlib.contextmanager
def capture() -> Iterator[Captured]:
    """Record the jobs enqueued in the block instead of running them; yields the :class:`Captured`."""
    captured = Captured()
    with _mode(_Mode("capture", captured)):
        yield captured


@contextlib.contextmanager
def isolated_queues(prefix: str | None = None) -> Iterator[str]:
    """Give the block its own Redis key prefix; delete every key under it afterwards.

    Yields the prefix. Use it around each test so tests never see each other's jobs.
    """
    from django.conf import settings
    from django.test import override_settings

    from django_jobs.engine import get_engine

    prefix = prefix or f"test-{uuid.uuid4().hex[:12]}"
    with override_settings(DJANGO_JOBS={**getattr(settings, "DJANGO_JOBS", {}), "PREFIX": prefix}):
        try:
            yield prefix
        finally:
            get_engine().drop_all()


class JobsTestMixin:
    """A :class:`django.test.TestCase` mixin: each test gets its own queues (key prefix).

    Set ``jobs_mode = "immediate"`` or ``"capture"`` to run each test in that mode;
    captured jobs are then ``self.jobs``.

    >>> class SignupTests(JobsTestMixin, TestCase):  # doctest: +SKIP
    ...     jobs_mode = "capture"
    """

    jobs_mode: str | None = None
    jobs: Captured
    jobs_prefix: str

    def setUp(self) -> None:
        super().setUp()  # type: ignore[misc]
        self.jobs_prefix = self.enterContext(isolated_queues())  # type: ignore[attr-defined]
        if self.jobs_mode == "capture":
            self.jobs = self.enterContext(capture())  # type: ignore[attr-defined]
        elif self.jobs_mode == "immediate":
            self.enterContext(immediate())  # type: ignore[attr-defined]
        elif self.jobs_mode not in (None, "off"):
            raise ValueError(f"jobs_mode must be 'immediate', 'capture' or None, not {self.jobs_mode!r}.")
