"""The state a worker process shares between its threads, declared once for its parts.

:class:`~django_jobs.worker.process.WorkerProcess` is built from parts, one concern each:
settling outcomes (:mod:`~django_jobs.worker.settling`), the heartbeat with its timeouts and
recovery (:mod:`~django_jobs.worker.heartbeat`), and, in ``process`` itself, the lifecycle and
fetching. :class:`WorkerState` declares what they share; ``WorkerProcess.__init__`` sets it.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections import deque
from collections.abc import Callable

from django_jobs import runtime
from django_jobs.engine.queue import Claimed, Engine, Outcome
from django_jobs.outage import OutageLog
from django_jobs.worker.executor import Prepared, RunningJob

#: Heartbeat thread tick, seconds (timeouts are enforced at this granularity).
TICK = 0.25
#: Exit status of a worker that recycled itself (``--max-jobs-per-child``, ``--max-memory-per-child``).
EXIT_RECYCLED = 3
#: Exit status of a worker that exited to be replaced because a sync job passed its timeout.
EXIT_TIMEOUT = 4


class WorkerState:
    """What the threads of one worker process share (set by ``WorkerProcess.__init__``)."""

    queues: list[str]
    threads: int
    grace: float
    engine: Engine
    worker_id: str
    lease_ms: int
    renew_every: float
    recover_every: float
    max_memory_mb: int | None
    exit_code: int
    processed: int
    started_at: float
    capacity: int
    stopping: threading.Event
    fast: threading.Event
    stopped: threading.Event
    #: The lock of ``_cond``, ``_settle_cond`` and ``_role_cond``: taken as ``with self._lock`` (one C call
    #: each way; a ``Condition``'s ``__enter__`` and ``__exit__`` are Python calls around it, ~0.3 us a round).
    _lock: threading.RLock
    _cond: threading.Condition
    _free: int
    _claimed: int
    _memory_warned: bool
    #: Outcomes not yet settled, oldest first (under ``_cond``): they ride the fetcher's next fetch
    #: of their queue, or the completer settles them (worker/settling.py).
    _pending: list[tuple[RunningJob, Outcome]]
    _pending_since: float  # time.monotonic() when the oldest pending outcome was added
    #: The fetcher is between fetches (not waiting idle): pending outcomes may ride its next fetch.
    _fetch_active: bool
    #: The completer waits on it (shares ``_cond``'s lock): notified when it should settle now.
    _settle_cond: threading.Condition
    _settle_stop: bool  # shutdown: the completer settles what is pending and ends
    #: Fetcher threads waiting for the fetcher's role wait on it (shares ``_cond``'s lock).
    _role_cond: threading.Condition
    _leases: dict[str, RunningJob]
    _unstarted: set[str]
    #: Claimed sync jobs waiting for a job thread, oldest first (taken under ``_lock``; appended by a fetch).
    _ready: deque[tuple[RunningJob, Prepared]]
    #: Idle job threads wait on it (shares ``_cond``'s lock): notified once per job queued.
    _job_cond: threading.Condition
    _job_idle: int  # job threads waiting on ``_job_cond``
    #: The last fetch found work: while jobs are short, job threads fetch for themselves (leader/follower).
    #: Written by whoever fetched last (a plain bool), read under ``_lock``.
    _lead_ok: bool
    _jobs_stop: bool  # shutdown over: job threads end once ``_ready`` is empty
    _fetcher_due: bool  # while job threads lead: a claim is due that none of them takes (the fetcher does)
    _can_lead: bool  # job threads may fetch at all (more than one, no ``max_jobs``)
    _loop: asyncio.AbstractEventLoop | None
    _ppid: int
    _deadline: float | None
    _outage: OutageLog
    _child: bool
    _settles: int
    _relayed: int
    _relay_lock: threading.Lock
    burst: bool
    max_jobs: int | None
    ahead: int
    draining: threading.Event
    _rotation: int
    _shard_turns: dict[str, int]
    _thread_bound: bool
    _fetch_lock: threading.Lock
    _avg_run: float
    #: The client id of the fetcher's connection while it blocks in a fetch-on-wake wait (else None).
    _blocked_id: int | None
    _shard_names: list[str] | None
    #: Fetch on wake: the fetcher's role is held by one of two fetcher threads (worker/fetching.py).
    _role_taken: bool
    _role_waiting: int
    _woke: tuple[int, int, bool] | None
    _waiting_thread: threading.Thread | None
    _running: int
    _run_waiting: int

    # Lifecycle steps the parts call (defined by WorkerProcess).

    def request_stop(self) -> None:
        raise NotImplementedError

    def recycle(self, why: str, level: int = logging.INFO) -> None:
        raise NotImplementedError

    def _parent_gone(self) -> None:
        raise NotImplementedError

    def _dispatch(self, claimed: Claimed, *, keep: bool = False) -> tuple[RunningJob, Prepared] | bool:
        raise NotImplementedError

    def _wake_job_threads(self, queued: int) -> None:
        raise NotImplementedError

    def _run_sync(self, job: RunningJob, prepared: Prepared, on_start: Callable[[], None] | None = None) -> None:
        raise NotImplementedError

    # Defined by Settling.

    def _add_outcome(self, job: RunningJob, outcome: Outcome) -> None:
        raise NotImplementedError

    def _queue_outcome(self, job: RunningJob, outcome: Outcome) -> None:
        raise NotImplementedError

    def _take_outcomes(self, queue: str) -> list[tuple[RunningJob, Outcome]]:
        raise NotImplementedError

    def _give_back(self, items: list[tuple[RunningJob, Outcome]]) -> None:
        raise NotImplementedError

    def _fetcher_idle(self) -> None:
        raise NotImplementedError

    def _claim_now(self) -> bool:
        raise NotImplementedError

    def _pulling(self) -> bool:
        raise NotImplementedError

    def _settled(self, items: list[tuple[RunningJob, Outcome]], codes: list[int]) -> None:
        raise NotImplementedError

    # Shared by the parts.

    def _drop_lease(self, job: RunningJob) -> bool:
        """Forget ``job``'s lease, the caller holding ``_cond``; False when its id's lease is another run's now.

        Leases are kept by job id, and a settle's or a renewal's reply is about the run it was sent
        for: a retry without delay is waiting again as soon as its settle is written, and may be
        claimed again (a new run under the same id) before that reply is read. That run's lease is
        left alone: dropping it would stop its renewals and drop its outcome, and a burst worker
        would find no job left and exit with it running.
        """
        if self._leases.get(job.id) is not job:
            return False
        del self._leases[job.id]
        runtime.unregister(job.id)
        return True

    def _relay(self, after_deliver: Callable[[], None] | None = None, *, parts_now: bool = False) -> int:
        """Deliver the flow steps its queues recorded for jobs on other slots (engine/relay.py); return how many.

        The heartbeat relays after each settle and once a second (worker/heartbeat.py), an idle
        burst worker once more before it ends: a burst worker is not idle while this wakes flow
        parents (counted in ``_relayed``). An idle pass
        is one round trip for all its queues (:meth:`~django_jobs.engine.relay.Relay.relay_queues`);
        ``parts_now``: it looks for create entries this time (a burst worker's last pass).
        """
        # One relay pass at a time per process: when a burst worker's own last pass returns, a
        # heartbeat pass that ran meanwhile has counted what it delivered (fetching.py reads it).
        with self._relay_lock:
            delivered = self.engine.relay_queues(self.queues, after_deliver=after_deliver, parts_now=parts_now)
            if delivered:
                with self._lock:
                    self._relayed += delivered
        return delivered
