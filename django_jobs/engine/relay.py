"""The flow relay: delivers the outbox entries of flows over several queues on a Redis Cluster.

A flow step between two jobs on different slots (a child ended: its parent learns it; a parent
will not run: its children are cancelled; a retried child re-opens its parent, a re-opened
parent its children) cannot be one script on a cluster. The job's own
transition records the step in its queue's outbox (``includes/flow.lua``, same script, same
slot); :meth:`Relay.relay` then applies each entry in the other job's slot (``flow_deliver``,
idempotent) and removes it (``flow_ack``, only the ``seq`` it delivered). A fault between the
two (a killed process, a failover, a dropped reply) leaves the entry: the next pass delivers it
again, which changes nothing, then acknowledges it. So delivery is at least once, the effect
exactly once (docs/flows.md#redis-cluster).

Workers call :meth:`Relay.relay` for their queues on each heartbeat tick (worker/heartbeat.py),
and operator actions (cancel, retry, delete) call it at once for the queue they touched.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import redis

from django_jobs.engine.codes import ScriptCode
from django_jobs.engine.transitions import Transitions

logger = logging.getLogger("django_jobs.engine")

_R = TypeVar("_R")

#: Outbox entries one relay pass reads per queue.
RELAY_BATCH = 100
#: The due score of an entry that cannot be delivered: parked after every other, never read again.
PARKED = 2**52


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _seq(item: tuple[str, Any]) -> int:
    """The ``seq`` of an outbox entry (0 when it has none: it is parked on delivery)."""
    try:
        return int(json.loads(_text(item[1])).get("seq", 0))
    except (ValueError, TypeError, AttributeError):
        return 0


class Relay(Transitions):
    """Deliver the flow outbox entries of a queue (see the module doc)."""

    @property
    def flow_outbox(self) -> bool:
        """Whether flows over several queues go through the outbox here (a Redis Cluster)."""
        return self._is_cluster()

    def relay(self, queue: str, *, limit: int = RELAY_BATCH, after_deliver: Callable[[], None] | None = None) -> int:
        """Deliver and acknowledge the outbox entries of ``queue``; return how many were delivered.

        Then the queues those deliveries wrote entries into (a failed parent's own parent, the
        children of a cancelled child) are relayed too, up to ``limit`` entries in all.
        Safe to call from any process at any time, concurrently too: a second delivery of an
        entry changes nothing, an acknowledgement removes only the entry it delivered.
        ``after_deliver``: called between each delivery and its acknowledgement (fault tests).
        """
        pending = [self.keys(queue).base]
        delivered = 0
        while pending and delivered < limit:
            base = pending.pop()
            for target_base in self._relay_base(base, limit - delivered, after_deliver):
                delivered += 1
                if target_base not in pending:
                    pending.append(target_base)
        return delivered

    def _relay_base(self, base: str, limit: int, after_deliver: Callable[[], None] | None) -> list[str]:
        """Deliver up to ``limit`` entries of the outbox of queue key base ``base``; return each one's target base."""
        outbox, due = base + "outbox", base + "outbox_due"
        members = [_text(m) for m in self._call(self.client.zrangebyscore, due, "-inf", f"({PARKED}", start=0, num=limit)]
        if not members:
            return []
        entries = self._call(self.client.hmget, outbox, members)
        targets: list[str] = []
        # In order of recording (seq): two steps recorded in one ms (a child retried, then ended)
        # are delivered in the order they happened.
        for member, raw in sorted(((m, r) for m, r in zip(members, entries, strict=True) if r is not None), key=_seq):
            text = _text(raw)
            try:
                entry = json.loads(text)
                target = entry["b"] + "job:" + (entry["id"] if entry["k"] in ("x", "o") else entry["par"])
                code = self._run("flow_deliver", (target,), (self.maxlen, text))
            except (ValueError, KeyError, TypeError, redis.ResponseError) as exc:
                code, text = ScriptCode.BAD_REQUEST, f"{text} ({exc!r})"
            if code == ScriptCode.BAD_REQUEST:
                # Not deliverable (a hand edit, an entry of a newer version): parked for an operator,
                # the others still go. Connection errors propagate: the next pass retries.
                logger.error("Flow outbox entry %s of %s cannot be delivered, parked: %s", member, outbox, text)
                self._call(self.client.zadd, due, {member: PARKED}, xx=True)
                continue
            if after_deliver is not None:
                after_deliver()
            self._run("flow_ack", (outbox, due), (member, entry["seq"]))
            targets.append(entry["b"])
        return targets

    def outbox_size(self, queue: str) -> int:
        """Return how many flow steps wait in the outbox of ``queue`` (entries parked as undeliverable too)."""
        return int(self._call(self.client.zcard, self.keys(queue).outbox_due))

    # Operator actions deliver their flow steps at once (a worker's relay would within a tick).

    def _relayed(self, queue: str, result: _R) -> _R:
        """Relay ``queue`` now on a Redis Cluster (the action just recorded its flow steps); return ``result``."""
        if self.flow_outbox:
            self.relay(queue)
        return result

    def cancel(self, queue: str, job_id: str) -> int:
        return self._relayed(queue, super().cancel(queue, job_id))

    def cancel_many(self, queue: str, job_ids: Sequence[str]) -> list[int]:
        return self._relayed(queue, super().cancel_many(queue, job_ids))

    def retry_many(self, queue: str, job_ids: Sequence[str]) -> list[int]:
        return self._relayed(queue, super().retry_many(queue, job_ids))

    def delete_jobs(self, queue: str, job_ids: Sequence[str]) -> list[int]:
        return self._relayed(queue, super().delete_jobs(queue, job_ids))
