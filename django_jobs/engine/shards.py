"""Sharded queues: one queue spread over several hash tags (docs/scaling.md#sharded-queues).

``DJANGO_JOBS["QUEUES"]["hot"]["SHARDS"] = 4`` makes the queue ``hot`` four full key sets,
``{prefix}:{hot#0}:...`` to ``{prefix}:{hot#3}:...``, each a queue of its own for the scripts
(so each lives in one Redis Cluster slot, and the shards spread over the primaries). Every job
id tells its shard (:func:`~django_jobs.engine.keys.job_shard`), so an operation by id goes to
one shard without searching.

:class:`Sharding` sits first in :class:`~django_jobs.engine.queue.Engine`'s bases: each method
below takes a queue's name, as the callers know it, and sends the call to the shard of each job
(by id) or to every shard (counts, pages, pause, purge, recovery...), adding up the replies. A
shard's own name (``hot#2``) is passed through unchanged, so the worker fetches shard by shard;
a claimed job is reported under its queue's name (``hot``). A queue without ``SHARDS`` goes
straight to the methods below this class.
"""

from __future__ import annotations

import heapq
import itertools
import random
from collections.abc import Callable, Iterable, Sequence
from dataclasses import replace
from typing import Any

from django_jobs.engine.control import Control
from django_jobs.engine.keys import base_queue, job_shard, key_shard, shard_job_id, shard_queue
from django_jobs.engine.reads import Reads
from django_jobs.engine.relay import RELAY_BATCH, Relay
from django_jobs.engine.streams import Streams
from django_jobs.engine.transitions import (
    RECOVER_LIMIT,
    Claimed,
    Enqueued,
    FetchResult,
    FlowJob,
    Guard,
    NewJob,
    NewJobs,
    Outcome,
    Recovery,
)
from django_jobs.exceptions import ConfigurationError


class Sharding(Relay, Reads, Control, Streams):
    """Route each call on a sharded queue to its shards (see the module doc)."""

    # -- where a job lives ----------------------------------------------------------------

    def shard_count(self, queue: str) -> int:
        """Return how many shards ``queue`` has (1: not sharded, and for a shard's own name)."""
        options = self.settings.queues.get(queue)
        return int(options.get("SHARDS") or 1) if options else 1

    def shards(self, queue: str) -> list[str]:
        """Return the names of the shards of ``queue`` (``[queue]`` when it is not sharded)."""
        n = self.shard_count(queue)
        return [queue] if n == 1 else [shard_queue(queue, i) for i in range(n)]

    def shard_of(self, queue: str, job_id: str) -> str:
        """Return the name of the shard of ``queue`` that holds job ``job_id``."""
        n = self.shard_count(queue)
        return queue if n == 1 else shard_queue(queue, job_shard(job_id, n))

    def place(self, queue: str, job_id: str, key: str | None = None) -> str:
        """Return ``job_id`` marked with the shard of ``queue`` the new job goes to.

        By ``key`` when given (``crc32(key) % SHARDS``: jobs with one key stay on one shard, in
        order), else round robin. Unchanged on a queue that is not sharded.
        """
        n = self.shard_count(queue)
        if n == 1:
            return job_id
        if key is not None:
            return shard_job_id(job_id, key_shard(key, n))
        turns = self.__dict__.setdefault("_shard_turns", {})
        counter = turns.get(queue)
        if counter is None:
            # A random start: producers that start together do not all begin on shard 0.
            counter = turns.setdefault(queue, itertools.count(random.randrange(n)))
        return shard_job_id(job_id, next(counter) % n)

    def _group[T](self, queue: str, items: Sequence[T], job_id: Callable[[T], str]) -> dict[str, list[int]]:
        """Return the positions of ``items`` by the shard each one's job lives on (in order)."""
        groups: dict[str, list[int]] = {}
        for index, item in enumerate(items):
            groups.setdefault(self.shard_of(queue, job_id(item)), []).append(index)
        return groups

    def _per_shard[T, R](
        self, queue: str, items: Sequence[T], job_id: Callable[[T], str], call: Callable[[str, list[T]], Sequence[R]]
    ) -> list[R]:
        """Call ``call(shard, its items)`` once per shard; return the replies in the order of ``items``."""
        if self.shard_count(queue) == 1:
            return list(call(queue, list(items)))
        replies: list[Any] = [None] * len(items)
        for shard, positions in self._group(queue, items, job_id).items():
            for position, reply in zip(positions, call(shard, [items[p] for p in positions]), strict=True):
                replies[position] = reply
        return replies

    # -- creating jobs --------------------------------------------------------------------

    def enqueue(self, queue: str, jobs: Sequence[NewJob]) -> list[Enqueued]:
        return self._per_shard(queue, jobs, _new_id, super().enqueue)

    def enqueue_one(self, queue: str, job: NewJob) -> Enqueued:
        return super().enqueue_one(self.shard_of(queue, job.id), job)

    def enqueue_many(self, queue: str, jobs: Sequence[NewJob], *, chunk: int = 500) -> list[Enqueued]:
        parent = super().enqueue_many
        return self._per_shard(queue, jobs, _new_id, lambda shard, part: parent(shard, part, chunk=chunk))

    def enqueue_columns(self, queue: str, chunks: Iterable[NewJobs]) -> list[int]:
        if self.shard_count(queue) == 1:
            return super().enqueue_columns(queue, chunks)
        # Per shard, as enqueue_many (each job made from its chunk's columns).
        return [code.enqueued_ms for code in self.enqueue_many(queue, [new for chunk in chunks for new in chunk])]

    def enqueue_guarded(self, queue: str, jobs: Sequence[tuple[NewJob, Guard]]) -> list[tuple[Enqueued, str]]:
        return self._per_shard(queue, jobs, lambda pair: pair[0].id, super().enqueue_guarded)

    def enqueue_flow(self, jobs: Sequence[FlowJob]) -> Enqueued:
        # Each job's queue, its parent's and its children's become the shards their ids name.
        rows = [
            replace(
                j,
                queue=self.shard_of(j.queue, j.job.id),
                parent_queue=self.shard_of(j.parent_queue, j.job.parent_id) if j.parent_queue else "",
                children=tuple((self.shard_of(q, i), i, name) for q, i, name in j.children),
            )
            for j in jobs
        ]
        return super().enqueue_flow(rows)

    # -- running jobs ---------------------------------------------------------------------

    def fetch(self, queue: str, count: int, *, lease_ms: int, worker_id: str, start_now: int | None = None) -> FetchResult:
        """Claim jobs of a shard (or of each shard of a sharded queue in turn), reported under the queue's name."""
        shards = self.shards(queue)
        if len(shards) == 1:
            res = super().fetch(queue, count, lease_ms=lease_ms, worker_id=worker_id, start_now=start_now)
            named = base_queue(queue)
            if named == queue:
                return res
            return res.in_queue(named)
        jobs: list[Claimed] = []
        next_due, paused, limited = -1, True, False
        start = random.randrange(len(shards))
        for shard in shards[start:] + shards[:start]:
            if len(jobs) >= count:
                break
            left = None if start_now is None else max(0, start_now - len(jobs))
            res = self.fetch(shard, count - len(jobs), lease_ms=lease_ms, worker_id=worker_id, start_now=left)
            jobs += res.jobs
            paused, limited = paused and res.paused, limited or res.limited
            if res.next_due_ms >= 0 and (next_due < 0 or res.next_due_ms < next_due):
                next_due = res.next_due_ms
        return FetchResult(jobs=jobs, next_due_ms=next_due, paused=paused, limited=limited)

    def fetch_on_wake(
        self, queue: str, timeout: float, count: int, *, lease_ms: int, worker_id: str, start_now: int | None = None,
        blocked: Callable[[int | None], None] | None = None,
    ) -> FetchResult:
        """Wait on one shard's marker and fetch from it in one round trip, reported under the queue's name."""
        res = super().fetch_on_wake(queue, timeout, count, lease_ms=lease_ms, worker_id=worker_id, start_now=start_now,
                                    blocked=blocked)
        named = base_queue(queue)
        return res if named == queue else res.in_queue(named)

    def claim(self, queue: str, job_id: str, *, lease_ms: int, worker_id: str) -> Claimed | None:
        claimed = super().claim(self.shard_of(queue, job_id), job_id, lease_ms=lease_ms, worker_id=worker_id)
        return claimed if claimed is None else claimed.in_queue(base_queue(claimed.queue))

    def settle(self, queue: str, outcomes: Sequence[Outcome]) -> list[int]:
        return self._per_shard(queue, outcomes, lambda o: o.id, super().settle)

    def settle_and_fetch(
        self, queue: str, outcomes: Sequence[Outcome], count: int, *, lease_ms: int, worker_id: str,
        start_now: int | None = None,
    ) -> tuple[list[int] | Exception, FetchResult]:
        """One round trip for a queue that is not sharded; a sharded one's settle goes per shard, then its fetch."""
        if self.shard_count(queue) == 1 and base_queue(queue) == queue:
            return super().settle_and_fetch(queue, outcomes, count, lease_ms=lease_ms, worker_id=worker_id, start_now=start_now)
        settled: list[int] | Exception
        try:
            settled = self.settle(queue, outcomes)
        except Exception as exc:  # noqa: BLE001 - the caller settles again; the fetch goes on
            settled = exc
        return settled, self.fetch(queue, count, lease_ms=lease_ms, worker_id=worker_id, start_now=start_now)

    def renew(self, queue: str, leases: Iterable[tuple[str, str]], *, lease_ms: int) -> tuple[list[str], list[str]]:
        pairs = list(leases)
        if self.shard_count(queue) == 1:
            return super().renew(queue, pairs, lease_ms=lease_ms)
        lost: list[str] = []
        cancel: list[str] = []
        for shard, positions in self._group(queue, pairs, lambda p: p[0]).items():
            shard_lost, shard_cancel = super().renew(shard, [pairs[p] for p in positions], lease_ms=lease_ms)
            lost += shard_lost
            cancel += shard_cancel
        return lost, cancel

    def set_progress(self, queue: str, job_id: str, token: str, progress_json: str) -> int:
        return super().set_progress(self.shard_of(queue, job_id), job_id, token, progress_json)

    def recover(self, queue: str, *, now_ms: int = 0, limit: int = RECOVER_LIMIT) -> Recovery:
        shards = self.shards(queue)
        if len(shards) == 1:
            return super().recover(queue, now_ms=now_ms, limit=limit)
        recovered = failed = 0
        jobs: list[tuple[str, str, str]] = []
        for shard in shards:
            found = super().recover(shard, now_ms=now_ms, limit=limit)
            recovered, failed = recovered + found[0], failed + found[1]
            jobs += found.jobs
        return Recovery(recovered, failed, jobs)

    def release(self, queue: str, leases: Iterable[tuple[str, str]]) -> int:
        pairs = list(leases)
        if self.shard_count(queue) == 1:
            return super().release(queue, pairs)
        return sum(super(Sharding, self).release(shard, [pairs[p] for p in positions])
                   for shard, positions in self._group(queue, pairs, lambda p: p[0]).items())

    # -- operator actions -----------------------------------------------------------------

    def cancel(self, queue: str, job_id: str) -> int:
        return super().cancel(self.shard_of(queue, job_id), job_id)

    def cancel_many(self, queue: str, job_ids: Sequence[str]) -> list[int]:
        return self._per_shard(queue, job_ids, str, super().cancel_many)

    def retry_many(self, queue: str, job_ids: Sequence[str]) -> list[int]:
        return self._per_shard(queue, job_ids, str, super().retry_many)

    def delete_jobs(self, queue: str, job_ids: Sequence[str]) -> list[int]:
        return self._per_shard(queue, job_ids, str, super().delete_jobs)

    def purge(self, queue: str, state: str, *, limit: int = 500) -> int:
        deleted = 0
        for shard in self.shards(queue):
            if deleted >= limit:
                break
            deleted += super().purge(shard, state, limit=limit - deleted)
        return deleted

    # -- the flow relay (a flow over a sharded queue and other queues, on a cluster) ----------

    def relay(
        self, queue: str, *, limit: int = RELAY_BATCH, after_deliver: Callable[[], None] | None = None, now_ms: int = 0
    ) -> int:
        """Relay the flow outbox of each shard of ``queue`` (up to ``limit`` entries per shard)."""
        return sum(
            super(Sharding, self).relay(shard, limit=limit, after_deliver=after_deliver, now_ms=now_ms) for shard in self.shards(queue)
        )

    def _relay_bases_of(self, queues: Sequence[str]) -> list[str]:
        return super()._relay_bases_of([shard for queue in queues for shard in self.shards(queue)])

    def outbox_size(self, queue: str) -> int:
        return sum(super(Sharding, self).outbox_size(shard) for shard in self.shards(queue))

    # -- reads ----------------------------------------------------------------------------

    def get_job(self, queue: str, job_id: str) -> dict[str, str] | None:
        return super().get_job(self.shard_of(queue, job_id), job_id)

    def get_jobs(self, pairs: Sequence[tuple[str, str]]) -> list[dict[str, str]]:
        return super().get_jobs([(self.shard_of(q, i), i) for q, i in pairs])

    def job_fields(self, pairs: Sequence[tuple[str, str]], fields: Sequence[str]) -> list[list[str | None]]:
        return super().job_fields([(self.shard_of(q, i), i) for q, i in pairs], fields)

    def jobs_exist(self, queue: str, job_ids: Sequence[str]) -> list[bool]:
        return self._per_shard(queue, job_ids, str, super().jobs_exist)

    def counts(self, queue: str) -> dict[str, int]:
        shards = self.shards(queue)
        if len(shards) == 1:
            return super().counts(queue)
        total: dict[str, int] = {}
        for shard in shards:  # one round trip each (on a cluster the shards are on several nodes)
            for state, n in super().counts(shard).items():
                total[state] = total.get(state, 0) + n
        return total

    def list_jobs(self, queue: str, state: str, *, offset: int = 0, limit: int = 20) -> tuple[int, list[tuple[str, dict[str, str]]]]:
        """Return (total, page) of a queue's jobs in ``state``, the shards' lines merged by score.

        Each shard keeps its own order (FIFO within a priority, due time, ...); the page
        interleaves them by their scores, so it reads as one queue.
        """
        shards = self.shards(queue)
        if len(shards) == 1:
            return super().list_jobs(queue, state, offset=offset, limit=limit)
        newest_first = state in ("completed", "failed", "cancelled")
        keys = [self.keys(shard).state_set(state) for shard in shards]

        def read() -> list[tuple[int, list[tuple[str, float]]]]:
            found = []
            for key in keys:
                with self.client.pipeline(transaction=False) as pipe:
                    pipe.zcard(key)
                    pipe.zrange(key, 0, offset + limit - 1, desc=newest_first, withscores=True)
                    n, rows = pipe.execute()
                found.append((int(n), [(str(i), float(s)) for i, s in rows]))
            return found

        found = self._call(read)
        total = sum(n for n, _ in found)
        merged = heapq.merge(*(rows for _, rows in found), key=lambda row: -row[1] if newest_first else row[1])
        ids = [job_id for job_id, _ in itertools.islice(merged, offset, offset + limit)]
        if not ids:
            return total, []
        return total, list(zip(ids, self.get_jobs([(queue, job_id) for job_id in ids]), strict=True))

    def state_page(self, queue: str, state: str, *, offset: int, limit: int) -> list[str]:
        """Return a page of the ids in ``state``, the shards one after the other."""
        shards = self.shards(queue)
        if len(shards) == 1:
            return super().state_page(queue, state, offset=offset, limit=limit)
        page: list[str] = []
        for shard in shards:
            if len(page) >= limit:
                break
            size = int(self._call(self.client.zcard, self.keys(shard).state_set(state)))
            if offset >= size:
                offset -= size
                continue
            page += super().state_page(shard, state, offset=offset, limit=limit - len(page))
            offset = 0
        return page

    def oldest_waiting_age(self, queue: str) -> float | None:
        ages = [age for shard in self.shards(queue) if (age := super().oldest_waiting_age(shard)) is not None]
        return max(ages) if ages else None

    def throughput(self, queue: str, *, seconds: float = 60.0) -> dict[str, int]:
        shards = self.shards(queue)
        if len(shards) == 1:
            return super().throughput(queue, seconds=seconds)
        total: dict[str, int] = {}
        for shard in shards:
            for what, n in super().throughput(shard, seconds=seconds).items():
                total[what] = total.get(what, 0) + n
        return total

    # -- control --------------------------------------------------------------------------

    def is_paused(self, queue: str) -> bool:
        return any(super(Sharding, self).is_paused(shard) for shard in self.shards(queue))

    def pause(self, queue: str) -> None:
        for shard in self.shards(queue):
            super().pause(shard)

    def resume(self, queue: str) -> None:
        for shard in self.shards(queue):
            super().resume(shard)

    def set_queue_limits(self, queue: str, *, rate: Any = None, concurrency: Any = None) -> None:
        self._refuse_limits(queue)
        super().set_queue_limits(queue, rate=rate, concurrency=concurrency)

    def reset_queue_limits(self, queue: str) -> None:
        if self.shard_count(queue) == 1:  # a sharded queue has no override to drop (they are refused)
            super().reset_queue_limits(queue)

    def _refuse_limits(self, queue: str) -> None:
        n = self.shard_count(queue)
        if n > 1:
            raise ConfigurationError(
                f"Queue {queue!r} has SHARDS={n}: a queue-wide rate or concurrency limit would hold per shard "
                "only, so it is refused. Use a per-key limit (@job(limit_key=...)), or a queue without SHARDS."
            )

    def wait_for_work(self, queues: Sequence[str], timeout: float) -> bool:
        return super().wait_for_work([shard for queue in queues for shard in self.shards(queue)], timeout)


def _new_id(job: NewJob) -> str:
    return job.id
