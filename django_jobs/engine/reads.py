"""Reads: job hashes, state counts and pages, queue age. None of these change anything.

Job hashes are returned raw (``dict[str, str]``, ``{}`` or None when missing); decode them
with :func:`django_jobs.engine.record.JobView.from_hash`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, ClassVar

from django_jobs.engine.keys import QueueKeys
from django_jobs.engine.runner import ScriptRunner

#: The states, in the order of :attr:`QueueKeys.STATE_SETS`.
STATES = ("waiting", "scheduled", "active", "completed", "failed", "cancelled", "waiting_children")


class Reads(ScriptRunner):
    """Read-only access to jobs and queues."""

    #: The state ZSET attribute of :class:`QueueKeys` for each state.
    STATE_KEYS: ClassVar[dict[str, str]] = dict(zip(STATES, QueueKeys.STATE_SETS))

    def get_job(self, queue: str, job_id: str) -> dict[str, str] | None:
        """Return the raw job hash, or None."""
        data = self._call(self.client.hgetall, self.keys(queue).job(job_id))
        return data or None

    def find_job(self, job_id: str, queues: Iterable[str]) -> tuple[str, dict[str, str]] | None:
        """Look ``job_id`` up in each of ``queues`` in one round trip."""
        names = list(queues)
        for q, data in zip(names, self.get_jobs([(q, job_id) for q in names])):
            if data:
                return q, data
        return None

    def get_jobs(self, pairs: Sequence[tuple[str, str]]) -> list[dict[str, str]]:
        """Return the raw hashes of ``(queue, job id)`` pairs in one round trip (``{}`` for a missing job)."""

        def read() -> list[dict[str, str]]:
            with self.client.pipeline(transaction=False) as pipe:
                for queue, job_id in pairs:
                    pipe.hgetall(self.keys(queue).job(job_id))
                return list(pipe.execute())

        return self._call(read) if pairs else []

    def job_fields(self, pairs: Sequence[tuple[str, str]], fields: Sequence[str]) -> list[list[str | None]]:
        """Return ``fields`` of each ``(queue, job id)`` hash in one round trip (None: no such field)."""

        def read() -> list[list[str | None]]:
            with self.client.pipeline(transaction=False) as pipe:
                for queue, job_id in pairs:
                    pipe.hmget(self.keys(queue).job(job_id), list(fields))
                return list(pipe.execute())

        return self._call(read) if pairs else []

    def jobs_exist(self, queue: str, job_ids: Sequence[str]) -> list[bool]:
        """Return, per id, whether the job's hash exists in ``queue``."""

        def read() -> list[Any]:
            with self.client.pipeline(transaction=False) as pipe:
                for job_id in job_ids:
                    pipe.exists(self.keys(queue).job(job_id))
                return list(pipe.execute())

        return [bool(n) for n in self._call(read)] if job_ids else []

    def counts(self, queue: str) -> dict[str, int]:
        """Return the number of jobs in each state of ``queue``."""
        k = self.keys(queue)

        def read() -> list[Any]:
            with self.client.pipeline(transaction=False) as pipe:
                for name in QueueKeys.STATE_SETS:
                    pipe.zcard(getattr(k, name))
                return list(pipe.execute())

        return dict(zip(STATES, (int(v) for v in self._call(read))))

    def list_jobs(self, queue: str, state: str, *, offset: int = 0, limit: int = 20) -> tuple[int, list[tuple[str, dict[str, str]]]]:
        """Return (total, page) of the jobs of ``queue`` in ``state``.

        The page holds ``(job id, job hash)`` pairs: waiting jobs in the order they will run,
        scheduled ones by due time, active ones by lease deadline, finished ones newest first.
        """
        key = self.keys(queue).state_set(state)
        newest_first = state in ("completed", "failed", "cancelled")

        def read() -> tuple[int, list[str]]:
            with self.client.pipeline(transaction=False) as pipe:
                pipe.zcard(key)
                pipe.zrange(key, offset, offset + limit - 1, desc=newest_first)
                total, ids = pipe.execute()
            return int(total), list(ids)

        total, ids = self._call(read)
        if not ids:
            return total, []
        return total, list(zip(ids, self.get_jobs([(queue, job_id) for job_id in ids])))

    def state_page(self, queue: str, state: str, *, offset: int, limit: int) -> list[str]:
        """Return ids ``offset`` .. ``offset + limit - 1`` of the state ZSET of ``state`` (resync's walk)."""
        return list(self._call(self.client.zrange, self.keys(queue).state_set(state), offset, offset + limit - 1))

    def finished_ids(self, queue: str, state: str, *, limit: int = 500) -> list[str]:
        """Return up to ``limit`` ids of the oldest jobs of ``queue`` in finished ``state``."""
        return self.state_page(queue, state, offset=0, limit=limit)

    def oldest_waiting_age(self, queue: str) -> float | None:
        """Return how long the oldest waiting job of ``queue`` has waited, seconds (None: none).

        Within a priority the line is first in, first out, so the oldest job is the head of
        one priority's line: this reads the head of each priority present (one step each).
        """
        k = self.keys(queue)
        span = 2**44

        def heads() -> list[str]:
            found: list[str] = []
            low: float | str = "-inf"
            while len(found) <= 201:
                row = self.client.zrangebyscore(k.wait, low, "+inf", start=0, num=1, withscores=True)
                if not row:
                    break
                head: Any = row[0]
                job_id, score = head
                found.append(str(job_id))
                low = (int(score) // span + 1) * span
            return found

        ids = self._call(heads)
        if not ids:
            return None

        def enqueued() -> list[Any]:
            with self.client.pipeline(transaction=False) as pipe:
                for job_id in ids:
                    pipe.hget(k.job(job_id), "e")
                return list(pipe.execute())

        times = [int(e) for e in self._call(enqueued) if e]
        if not times:
            return None
        return max(0.0, (self.server_time_ms() - min(times)) / 1000)
