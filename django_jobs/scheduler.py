"""Periodic jobs: cron schedules fired exactly once per tick by one elected leader.

Every ``runworkers`` supervisor runs a :class:`Scheduler` thread. They elect one leader in
Redis (a lease with renewal and a fencing epoch, see ``engine/lua/leader_*.lua``); only the
leader fires ticks. A tick is fired in three steps:

1. ``cron_claim`` records the slot as the schedule's last one, only if the caller's
   ``"<epoch>|<holder>"`` token is still the lease in Redis (a paused old leader is refused)
   and the slot is later than the last claimed one;
2. the job is enqueued with the deterministic id ``cron:<name>:<slot_ms>``: the enqueue script
   writes nothing for an id that exists, so a tick is enqueued at most once even when two
   processes believe they lead;
3. ``cron_done`` records the slot as enqueued. A leader that finds a claimed slot not
   recorded as enqueued (its predecessor died between 1 and 3) enqueues it again: a no-op
   when the job exists.

Slots are computed from Redis time. See docs/cron.md for the time-zone and missed-tick rules.
"""

from __future__ import annotations

import contextlib
import logging
import mmap
import os
import socket
import struct
import threading
import time
import uuid
from datetime import UTC, datetime
from typing import Any

from django_jobs.engine.protocol import CronClaim
from django_jobs.engine.record import JobView
from django_jobs.exceptions import EngineError
from django_jobs.registry import _declare_errors, _declared  # noqa: F401 - _declare_errors: tests clear it here
from django_jobs.registry import declaration_errors as registry_declaration_errors
from django_jobs.registry import declare as declare_schedule
from django_jobs.schedules import (  # noqa: F401 - re-exported: scheduler.Schedule, next_run, ...
    JOB_ID_PREFIX,
    MAX_LOOKBACK,
    ON_TIME_MS,
    Schedule,
    due_ticks,
    iter_runs,
    next_run,
)
from django_jobs.tasks import jobs_backend, registered_job

logger = logging.getLogger("django_jobs.scheduler")

#: Longest sleep of the scheduler loop, seconds (it wakes earlier for the next tick).
MAX_SLEEP = 0.5

# -- the leader flag shared with worker processes -------------------------------------------


class LeaderFlag:
    """Whether this supervisor leads, readable by its forked worker processes.

    A shared anonymous memory page holds the monotonic time until which the lease is known to
    be held (0 when not leading): ``CLOCK_MONOTONIC`` is the same in every process of a host.
    Created before the first fork, so the children share it.
    """

    def __init__(self) -> None:
        self._mem = mmap.mmap(-1, 8)

    def set(self, valid_until: float) -> None:
        struct.pack_into("d", self._mem, 0, valid_until)

    def clear(self) -> None:
        self.set(0.0)

    def __bool__(self) -> bool:
        return bool(struct.unpack_from("d", self._mem, 0)[0] > time.monotonic())


_flag: LeaderFlag | None = None


def is_leader() -> bool:
    """Return True while this process' supervisor is the elected scheduler leader.

    True in the ``runworkers`` supervisor that fires the cron schedules and in its worker
    processes, False everywhere else (web processes, other supervisors, ``--burst`` workers).
    Use it for leader-only work; the answer is conservative: it turns False before the lease
    could expire.
    """
    return bool(_flag) if _flag is not None else False


def leader_flag() -> LeaderFlag:
    """Return this process' leader flag, creating it (call before forking workers)."""
    global _flag
    if _flag is None:
        _flag = LeaderFlag()
    return _flag


# -- the scheduler thread -------------------------------------------------------------------


#: ``declare(job, cron)``: declare a schedule in code (see :func:`django_jobs.registry.declare`).
declare = declare_schedule
#: The errors of invalid ``@job(cron=...)`` declarations (see :func:`django_jobs.registry.declaration_errors`).
declaration_errors = registry_declaration_errors


def load_schedules() -> list[Schedule]:
    """Return the schedules of ``DJANGO_JOBS["CRON"]``, then those declared in code."""
    from django_jobs.conf import get_settings

    entries = {entry["NAME"]: entry for entry in get_settings().cron}
    for name, entry in _declared.items():
        entries.setdefault(name, entry)
    return [Schedule.from_settings(entry) for entry in entries.values()]


class Scheduler:
    """Elect a leader among all supervisors; while leading, fire due ticks.

    :meth:`start` runs :meth:`run` in a daemon thread. The thread holds :attr:`busy` whenever
    it does anything but sleep (Redis calls, logging), so a supervisor that forks takes
    ``busy`` first: the child never inherits a lock held half-way by this thread.
    """

    def __init__(self, schedules: list[Schedule] | None = None, *, lease: float | None = None, holder: str = "") -> None:
        from django_jobs.conf import get_settings

        settings = get_settings()
        self.schedules = load_schedules() if schedules is None else schedules
        self.lease = lease if lease is not None else settings.leader_lease_seconds
        self.holder = holder or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self.token = ""
        self.flag = leader_flag()
        self.busy = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._renew_at = 0.0
        self._valid_until = 0.0
        self._errors = 0
        from django_jobs.outage import OutageLog

        self._outage = OutageLog(logger, "Scheduler")
        self._failing: set[str] = set()

    @property
    def leading(self) -> bool:
        return bool(self.token) and time.monotonic() < self._valid_until

    def start(self) -> None:
        self._thread = threading.Thread(target=self.run, name="djj-scheduler", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the thread and give up the lease, so another supervisor takes over at once."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
        with self.busy:
            self.resign()

    def resign(self) -> None:
        if self.token:
            token, self.token = self.token, ""
            self.flag.clear()
            with contextlib.suppress(Exception):  # best effort: the lease expires anyway
                from django_jobs.engine import get_engine

                get_engine().leader_renew(token, lease_ms=0)

    def run(self) -> None:
        while not self._stop.is_set():
            with self.busy:
                try:
                    delay = self.step()
                    self._errors = 0
                    self._outage.ok()
                except Exception as exc:  # noqa: BLE001 - keep scheduling through Redis outages
                    self._errors += 1
                    delay = min(5.0, 0.1 * 2 ** min(self._errors, 6))
                    self._outage.failed(exc, delay)  # one line per Redis outage, not a traceback per retry
            self._stop.wait(delay)

    def step(self) -> float:
        """Keep or seek the lease; fire due ticks when leading. Returns seconds to sleep."""
        from django_jobs.engine import get_engine

        engine = get_engine()
        lease_ms = int(self.lease * 1000)
        sent = time.monotonic()
        now_ms = 0
        if self.token and sent >= self._renew_at:
            ok, now_ms = engine.leader_renew(self.token, lease_ms=lease_ms)
            if ok:
                self._held(sent)
            else:
                logger.warning("Scheduler lost the leader lease (%s)", self.token, extra={"action": "leader_lost"})
                self.token = ""
                self.flag.clear()
        if not self.leading:
            if self.token:  # renewals failed past our own margin: stop firing
                self.token = ""
                self.flag.clear()
            epoch, now_ms, current = engine.leader_acquire(self.holder, lease_ms=lease_ms)
            if not epoch:
                return min(MAX_SLEEP, self.lease / 4)
            self.token = current
            self._held(sent)
            logger.info("Scheduler %s is the leader (epoch %d)", self.holder, epoch, extra={"action": "leader_elected"})
        elif not now_ms:
            now_ms = self._now_ms(engine)
        return self.fire_due(engine, now_ms)

    def _held(self, sent: float) -> None:
        # Counted from before the call: the lease cannot have started earlier than that.
        self._valid_until = sent + self.lease * 0.8
        self._renew_at = sent + self.lease / 3
        self.flag.set(self._valid_until)

    @staticmethod
    def _now_ms(engine: Any) -> int:
        return int(engine.server_time_ms())

    def fire_due(self, engine: Any, now_ms: int) -> float:
        """Fire every due tick (and re-enqueue a claimed one that never got enqueued)."""
        state = engine.cron_state()
        wake = now_ms + int(MAX_SLEEP * 1000)
        for schedule in self.schedules:
            if not self.leading:
                break
            try:
                if not self._fire_schedule(engine, schedule, state, now_ms):
                    return 0.0
                wake = min(wake, schedule.next_ms(now_ms))
                self._failing.discard(schedule.name)
            except EngineError:
                raise  # Redis trouble: the loop backs off
            except Exception:  # one broken schedule must not stop the others
                if schedule.name not in self._failing:
                    self._failing.add(schedule.name)
                    logger.exception("Cron schedule %s failed to fire", schedule.name, extra={"action": "cron_failed"})
        return max(0.01, min(MAX_SLEEP, (wake - now_ms) / 1000))

    def _fire_schedule(self, engine: Any, schedule: Schedule, state: dict[str, str], now_ms: int) -> bool:
        """Fire the due ticks of one schedule; return False when the lease turned out lost."""
        raw_last = state.get(schedule.name)
        last = int(raw_last) if raw_last else None
        enqueued = state.get(f"{schedule.name}:enq")
        if last is not None and (enqueued is None or int(enqueued) < last):
            self._enqueue(engine, schedule, last)  # claimed by a leader that died before enqueuing
        if state.get(f"{schedule.name}:paused"):
            return True  # paused (pause_schedule): its ticks are dropped; cron_claim refuses them too
        resumed = state.get(f"{schedule.name}:resumed")
        if resumed:  # ticks that fell while paused are not caught up
            last = max(last or 0, int(resumed))
        for slot in due_ticks(schedule, last, now_ms):
            code = engine.cron_claim(self.token, schedule.name, slot)
            if code < 0:
                logger.warning("Scheduler %s is no longer the leader", self.holder, extra={"action": "leader_lost"})
                self.token = ""
                self.flag.clear()
                return False
            if code == CronClaim.CLAIMED:
                self._enqueue(engine, schedule, slot)
        return True

    def _enqueue(self, engine: Any, schedule: Schedule, slot: int) -> None:
        job_id = schedule.job_id(slot)
        created = enqueue_tick(schedule, job_id)
        engine.cron_done(schedule.name, slot, job_id)
        if created:
            logger.info("Cron %s fired job %s", schedule.name, job_id, extra={"action": "cron_fired"})


def enqueue_tick(schedule: Schedule, job_id: str) -> bool:
    """Enqueue the job of one tick under ``job_id``; False when that job existed already."""
    from django_jobs.compat import task_backends
    from django_jobs.correlation import correlation_id
    from django_jobs.engine import get_engine

    task = registered_job(schedule.job)
    if task is None:
        raise LookupError(f"Cron schedule {schedule.name!r}: no registered job {schedule.job!r}.")
    if schedule.queue:
        task = task.using(queue_name=schedule.queue)
    backend = jobs_backend(task_backends[task.backend])
    if backend is None:
        raise LookupError(f"Cron schedule {schedule.name!r}: job {schedule.job!r} does not use django_jobs' backend.")
    with correlation_id():  # each tick starts its own correlation id
        new, result = backend._prepare(task, schedule.args, schedule.kwargs, job_id=job_id)
    return get_engine().enqueue(result.queue, [new]) == [1]


# -- reporting ------------------------------------------------------------------------------


def schedules_table() -> list[dict[str, Any]]:
    """Return one row per schedule: its spec, next run, last tick and the state of its last job.

    The data behind ``manage.py jobs schedules`` and the admin's schedules page; ``paused``
    says whether :func:`pause_schedule` paused it, ``triggered_job_id`` names the job of its
    last :func:`trigger_schedule`.
    """
    from django_jobs.engine import get_engine

    engine = get_engine()
    state = engine.cron_state()
    now_ms = engine.server_time_ms()
    rows = []
    for schedule in load_schedules():
        last = state.get(schedule.name)
        job_id = state.get(f"{schedule.name}:job") or (schedule.job_id(int(last)) if last else "")
        job_state = ""
        if job_id:
            task = registered_job(schedule.job)
            queue = schedule.queue or (task.queue_name if task is not None else "default")
            data = engine.get_job(queue, job_id)
            job_state = JobView.from_hash(queue, job_id, data).state if data else "gone"
        rows.append({
            "name": schedule.name,
            "job": schedule.job,
            "schedule": schedule.spec,
            "timezone": schedule.timezone,
            "missed": schedule.missed,
            "next_run": datetime.fromtimestamp(schedule.next_ms(now_ms) / 1000, UTC),
            "last_run": datetime.fromtimestamp(int(last) / 1000, UTC) if last else None,
            "last_job_id": job_id,
            "last_job_state": job_state,
            "paused": bool(state.get(f"{schedule.name}:paused")),
            "triggered_job_id": state.get(f"{schedule.name}:trig", ""),
        })
    return rows


def format_schedules_table(rows: list[dict[str, Any]]) -> str:
    """Return ``rows`` of :func:`schedules_table` as a text table."""
    headers = ("NAME", "SCHEDULE", "TZ", "NEXT RUN", "LAST RUN", "LAST JOB")
    lines = [headers]
    for row in rows:
        last = row["last_run"].isoformat(timespec="seconds") if row["last_run"] else "-"
        lines.append((
            row["name"], row["schedule"], row["timezone"], row["next_run"].isoformat(timespec="seconds"), last,
            f"{row['last_job_id']} ({row['last_job_state']})" if row["last_job_id"] else "-",
        ))
    widths = [max(len(str(line[i])) for line in lines) for i in range(len(headers))]
    return "\n".join("  ".join(str(v).ljust(w) for v, w in zip(line, widths)).rstrip() for line in lines)


# -- control (the admin's schedules page) -------------------------------------------------------


def get_schedule(name: str) -> Schedule:
    """Return the schedule called ``name``.

    Raises:
        LookupError: no schedule of that name in ``DJANGO_JOBS["CRON"]`` or declared in code.
    """
    for schedule in load_schedules():
        if schedule.name == name:
            return schedule
    raise LookupError(f"No cron schedule named {name!r}. Schedules come from DJANGO_JOBS['CRON'] and @job(cron=...).")


def pause_schedule(name: str) -> bool:
    """Pause schedule ``name`` in Redis, for every supervisor; False if it was paused already.

    While paused, the leader fires none of its ticks, and the ticks that fall in the pause are
    dropped for good: :func:`resume_schedule` does not catch them up (whatever ``MISSED`` says).
    A tick claimed before the pause still gets its job.

    >>> pause_schedule("nightly-report")  # doctest: +SKIP
    True
    """
    from django_jobs.engine import get_engine

    get_schedule(name)
    return get_engine().cron_pause(name, True)


def resume_schedule(name: str) -> bool:
    """Resume schedule ``name``: its next tick after now fires. False if it was not paused."""
    from django_jobs.engine import get_engine

    get_schedule(name)
    return get_engine().cron_pause(name, False)


def trigger_schedule(name: str) -> str:
    """Enqueue one job of schedule ``name`` now (not a tick slot: the schedule's ticks are unchanged).

    Works while the schedule is paused too. The job id is ``cron:<name>:manual:<hex>``.
    Returns the job id.
    """
    from django_jobs.engine import get_engine

    schedule = get_schedule(name)
    job_id = f"{JOB_ID_PREFIX}{schedule.name}:manual:{uuid.uuid4().hex}"
    enqueue_tick(schedule, job_id)
    get_engine().cron_triggered(schedule.name, job_id)
    return job_id
