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

Workers call :meth:`Relay.relay` for their queues from the heartbeat (worker/heartbeat.py:
after each settle, else once a second), and operator actions (cancel, retry, delete) call it at once for the queue they touched.

A flow over several queues is written the same way (:meth:`Relay.enqueue_flow`): its first
part, the root's, records every other part in the root's outbox as a create entry (kind
``c``) in the same script; the producer then delivers those entries itself, at once. If it
dies between parts, a relay of the root's queue writes the rest, in order, once the
producer's grace (:data:`FLOW_PART_GRACE_MS`) is over: once the first call returned, the
whole flow gets written.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import redis

from django_jobs.engine.codes import ScriptCode
from django_jobs.engine.keys import QueueKeys
from django_jobs.engine.transitions import Enqueued, FlowJob, Transitions
from django_jobs.exceptions import ScriptError

logger = logging.getLogger("django_jobs.engine")

_R = TypeVar("_R")

#: Outbox entries one relay pass reads per queue.
RELAY_BATCH = 100
#: The due score of an entry that cannot be delivered: parked after every other, never read again.
PARKED = 2**52
#: How long after a flow's first part a relay may write its other parts (ms). The producer
#: writes them at once, in a few ms; a relay writes them only when it died (or stalled this long).
FLOW_PART_GRACE_MS = 5_000
#: How often a worker's idle relay pass looks for create entries (s). They are due only
#: :data:`FLOW_PART_GRACE_MS` after they were recorded, so this adds at most this much to that.
PARTS_PROBE_EVERY = 1.0
#: Values per job in a part's arguments (flow_enqueue.lua's groups).
_GROUP = 12

_compact = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _flow_parts(jobs: Sequence[FlowJob]) -> list[list[FlowJob]]:
    """Split a flow into its parts, one per (depth, queue), top down: parents before their children."""
    depth: dict[str, int] = {}
    parts: dict[tuple[int, str], list[FlowJob]] = {}
    for j in jobs:
        d = depth[j.job.id] = depth.get(j.job.parent_id or "", -1) + 1 if j.parent_queue else 0
        parts.setdefault((d, j.queue), []).append(j)
    return [part for _key, part in sorted(parts.items(), key=lambda item: item[0][0])]


def _part_member(nonce: str, index: int) -> str:
    """The outbox member of part ``index`` of the flow with ``nonce`` (fixed width: members sort in order)."""
    return f"c|{nonce}|{index:06d}"


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

    def relay(
        self, queue: str, *, limit: int = RELAY_BATCH, after_deliver: Callable[[], None] | None = None, now_ms: int = 0
    ) -> int:
        """Deliver and acknowledge the outbox entries of ``queue``; return how many were delivered.

        Then the queues those deliveries wrote entries into (a failed parent's own parent, the
        children of a cancelled child) are relayed too, up to ``limit`` entries in all.
        Safe to call from any process at any time, concurrently too: a second delivery of an
        entry changes nothing, an acknowledgement removes only the entry it delivered.
        ``after_deliver``: called between each delivery and its acknowledgement (fault tests).
        ``now_ms``: the time create entries are due by (0: Redis' clock; tests pass a later one).
        """
        return self._relay_bases([self.keys(queue).base], limit, after_deliver, now_ms)

    def relay_queues(
        self, queues: Sequence[str], *, after_deliver: Callable[[], None] | None = None, parts_now: bool = False
    ) -> int:
        """Relay the outboxes of ``queues`` as :meth:`relay` does each; return how many entries were delivered.

        A worker's pass from the heartbeat: when every outbox is empty (the idle case) it is
        one round trip for all of them (a pipeline, one ``ZRANGEBYSCORE`` per outbox), so a
        flow step is still delivered within a tick. Create entries (due only
        :data:`FLOW_PART_GRACE_MS` after they were recorded) are looked for in the same round
        trip once per :data:`PARTS_PROBE_EVERY` (``parts_now``: this time too, a burst worker's
        last pass), and on every pass that finds steps.
        """
        bases = self._relay_bases_of(queues)
        now = time.monotonic()
        probe_parts = parts_now or now >= self._parts_probe_at
        if probe_parts:
            self._parts_probe_at = now + PARTS_PROBE_EVERY
        with self.client.pipeline(transaction=False) as pipe:
            for base in bases:
                keys = QueueKeys(queue="", base=base)
                pipe.zrangebyscore(keys.outbox_due, "-inf", f"({PARKED}", start=0, num=1)
                if probe_parts:
                    pipe.exists(keys.outbox_parts)
            replies = self._call(pipe.execute)
        step = 2 if probe_parts else 1
        busy = [base for i, base in enumerate(bases) if any(replies[i * step:(i + 1) * step])]
        return sum(self._relay_bases([base], RELAY_BATCH, after_deliver) for base in busy)

    #: When :meth:`relay_queues` looks for create entries next (``time.monotonic()``).
    _parts_probe_at = 0.0

    def _relay_bases_of(self, queues: Sequence[str]) -> list[str]:
        """Return the key bases of the outboxes of ``queues`` (each shard's, on a sharded queue)."""
        return [self.keys(queue).base for queue in queues]

    def _relay_bases(self, pending: list[str], limit: int, after_deliver: Callable[[], None] | None, now_ms: int = 0) -> int:
        """Relay the outboxes of the queue key bases ``pending`` and of those their deliveries wrote to."""
        delivered = 0
        while pending and delivered < limit:
            base = pending.pop()
            for target_base in self._relay_base(base, limit - delivered, after_deliver, now_ms):
                delivered += 1
                if target_base not in pending:
                    pending.append(target_base)
        return delivered

    def _relay_base(self, base: str, limit: int, after_deliver: Callable[[], None] | None, now_ms: int) -> list[str]:
        """Deliver up to ``limit`` entries of the outbox of queue key base ``base``; return each one's target base."""
        keys = QueueKeys(queue="", base=base)
        items = self._outbox_read(keys, limit, now_ms)
        if not items:
            return []
        targets: list[str] = []
        stopped: set[str] = set()  # flows whose next part could not be written: their later parts wait too
        # In order of recording (seq): two steps recorded in one ms (a child retried, then ended)
        # are delivered in the order they happened, and the parts of a flow top down.
        for member, raw_entry in sorted(items, key=_seq)[:limit]:
            text = _text(raw_entry)
            entry: dict[str, Any] = {}
            try:
                entry = json.loads(text)
                if entry["k"] == "c":
                    if entry["fn"] not in stopped:
                        written = self._relay_part(keys, member, text, entry, after_deliver)
                        if written is None:
                            stopped.add(entry["fn"])
                        targets += written or []
                    continue
                target = entry["b"] + "job:" + (entry["id"] if entry["k"] in ("x", "o") else entry["par"])
                code = self._run("flow_deliver", (target,), (self.maxlen, text))
            except (ValueError, KeyError, TypeError, IndexError, redis.ResponseError) as exc:
                code, text = ScriptCode.BAD_REQUEST, f"{text} ({exc!r})"
            if code == ScriptCode.BAD_REQUEST:
                # Not deliverable (a hand edit, an entry of a newer version): parked for an operator,
                # the others still go. Connection errors propagate: the next pass retries.
                logger.error("Flow outbox entry %s of %s cannot be delivered, parked: %s", member, keys.outbox, text)
                if member.startswith("c|"):
                    stopped.add(str(entry.get("fn", "")))
                    self._park_parts(keys, member, entry)
                else:
                    self._call(self.client.zadd, keys.outbox_due, {member: PARKED}, xx=True)
                continue
            if after_deliver is not None:
                after_deliver()
            self._run("flow_ack", (keys.outbox, keys.outbox_due), (member, entry["seq"]))
            targets.append(entry["b"])
        return targets

    def _outbox_read(self, keys: QueueKeys, limit: int, now_ms: int) -> list[tuple[str, Any]]:
        """Return ``(member, entry)`` of the entries of an outbox a relay may deliver now (unordered).

        Steps are due when recorded; create entries once their producer's grace is over, by
        Redis' clock (``now_ms``: a later one, for tests). The idle case, an empty outbox, is two
        plain commands in one round trip; the ``outbox_read`` script runs only while create
        entries exist (for a few ms per flow written in parts, unless its producer died).
        """
        with self.client.pipeline(transaction=False) as pipe:
            pipe.zrangebyscore(keys.outbox_due, "-inf", f"({PARKED}", start=0, num=limit)
            pipe.exists(keys.outbox_parts)
            steps, parts = self._call(pipe.execute)
        if parts:
            raw = self._run("outbox_read", (keys.outbox, keys.outbox_due, keys.outbox_parts), (limit, PARKED, now_ms))
            return [(_text(raw[i]), raw[i + 1]) for i in range(0, len(raw), 2) if raw[i + 1] is not None]
        if not steps:
            return []
        members = [_text(m) for m in steps]
        entries = self._call(self.client.hmget, keys.outbox, members)
        return [(m, e) for m, e in zip(members, entries, strict=True) if e is not None]

    def _relay_part(
        self, keys: QueueKeys, member: str, text: str, entry: dict[str, Any], after_deliver: Callable[[], None] | None
    ) -> list[str] | None:
        """Write a part of a flow from its create entry (its producer died, or is late), then acknowledge it.

        Returns the bases written to (the part's, and those of jobs cancelled because their
        parent ended meanwhile), or None when the part was refused (a job of it exists with
        another nonce, a reused id): it is parked with the flow's later parts.
        """
        args: list[str] = entry["a"]
        code, _found = self._run("flow_deliver", (args[0] + "job:" + args[1],), (self.maxlen, text), creates=True)
        if int(code) == 0:
            logger.error(
                "Part %s of flow %s (outbox %s) cannot be written: a job of it exists with another nonce (a reused id). "
                "It is parked with the later parts; cancel the flow's root job.", entry["i"], entry["fn"], keys.outbox,
            )
            self._park_parts(keys, member, entry)
            return None
        cancelled = self._cancel_orphans([args])
        if after_deliver is not None:
            after_deliver()
        self._run("flow_ack", (keys.outbox, keys.outbox_parts), (member, entry["seq"]))
        self._call(self.client.delete, QueueKeys(queue="", base=args[0]).flow_part_mark(entry["fn"], entry["i"]))
        return [args[0], *cancelled]

    def _park_parts(self, keys: QueueKeys, member: str, entry: dict[str, Any]) -> None:
        """Park create entry ``member`` and the later parts of its flow (never written under a job of another flow)."""
        parked = {member: PARKED}
        try:
            parked.update({_part_member(entry["fn"], i): PARKED for i in range(int(entry["i"]) + 1, int(entry["n"]))})
        except (KeyError, TypeError, ValueError):
            pass  # a malformed entry: only itself
        self._call(self.client.zadd, keys.outbox_parts, parked, xx=True)

    def _cancel_orphans(self, parts: Sequence[Sequence[str]]) -> list[str]:
        """Cancel each job of ``parts`` (flow part arguments, just written) whose parent no longer waits for it.

        A parent that ended (cancelled, deleted, failed by another child) before this part was
        written sent its cancel toward a job that did not exist yet: it changed nothing. Read
        after the write, the parent's state tells: a job written under a parent that is not
        waiting for its children is cancelled now (why = parent_ended), as that cancel would
        have; a parent that ends later finds the job. Returns the bases of the jobs cancelled.
        """
        jobs = [(a[g], a[g + 1], a[g + 8], a[g + 7]) for a in parts for g in range(0, len(a), _GROUP)]
        parents = sorted({(pb, par) for _b, _id, pb, par in jobs if pb and par})
        with self.client.pipeline(transaction=False) as pipe:
            for pb, par in parents:
                pipe.hget(pb + "job:" + par, "s")
            states = {p: (None if s is None else _text(s)) for p, s in zip(parents, self._call(pipe.execute), strict=True)}
        bases: list[str] = []
        for base, job_id, pb, par in jobs:
            if pb and par and states[(pb, par)] != "waiting_children":
                cancel = _compact.encode({"k": "x", "b": base, "id": job_id})
                if self._run("flow_deliver", (base + "job:" + job_id,), (self.maxlen, cancel)) == 1 and base not in bases:
                    bases.append(base)
        return bases

    def outbox_size(self, queue: str) -> int:
        """Return how many flow steps and parts wait in the outbox of ``queue`` (entries parked as undeliverable too)."""
        k = self.keys(queue)
        with self.client.pipeline(transaction=False) as pipe:
            pipe.zcard(k.outbox_due)
            pipe.zcard(k.outbox_parts)
            return sum(int(n) for n in self._call(pipe.execute))

    # -- a flow over several queues on a Redis Cluster: written in parts, complete in effect --

    def enqueue_flow(self, jobs: Sequence[FlowJob]) -> Enqueued:
        """Create a whole flow: 1 created, 0 a job of it existed (nothing written).

        On one Redis server (or Sentinel), or when the whole flow is on one queue, it is one
        script call, all of it or nothing (:meth:`Transitions.enqueue_flow`). On a Redis
        Cluster a flow over several queues is written in parts (:meth:`_enqueue_flow_parts`):
        once the first part is written, so is the rest, by this call or by a relay.
        """
        if len({j.queue for j in jobs}) > 1 and self._is_cluster():
            return self._enqueue_flow_parts(jobs)
        return super().enqueue_flow(jobs)

    def _enqueue_flow_parts(self, jobs: Sequence[FlowJob], *, after_first: Callable[[], None] | None = None) -> Enqueued:
        """Write a flow over several queues of a Redis Cluster: one part per (depth, queue), top down.

        One read (``HGET e`` per job, pipelined) refuses a flow with an id that exists, as the
        one-call path does (0, that job's ``e``). Then one ``flow_enqueue_part`` call writes the
        first part (the root's) and records each other part, with its arguments and the
        flow's nonce, as a create entry in the root's outbox (``c|<nonce>|<index>``, in
        order): from then on the flow gets written whole. This call delivers those entries
        itself (``flow_deliver``, in order: a parent is written, waiting for its children,
        before them), cancels a job whose parent ended meanwhile (:meth:`_cancel_orphans`),
        acknowledges the entries (one ``flow_ack``) and removes the parts' marks. If it dies
        anywhere after the first call, a relay of the root's queue writes what is missing once
        :data:`FLOW_PART_GRACE_MS` passed, with the same script: a part written already (its
        mark, or its jobs with this nonce) is not written again.
        ``after_first``: called once the first part is written (fault tests).

        Raises:
            ScriptError: a job of a later part exists with another nonce (a reused id): the flow
                is partly written, its later parts are parked; cancel its root job.
        """
        parts = _flow_parts(jobs)
        # A job id that exists already (a reused id, or a replay of this call): nothing is written.
        with self.client.pipeline(transaction=False) as pipe:
            for j in jobs:
                pipe.hget(self.keys(j.queue).job(j.job.id), "e")
            found = self._call(pipe.execute)
        for stored in found:
            if stored is not None:
                return Enqueued(0, int(stored))
        nonce = uuid.uuid4().hex
        root = self.keys(parts[0][0].queue)
        # Every value a string: flow_deliver reads them as the ARGV of flow_enqueue_part would be.
        rest = [[str(a) for j in part for a in self._flow_job_args(j)] for part in parts[1:]]
        creates = [
            (_part_member(nonce, index), _compact.encode({"k": "c", "b": args[0], "fn": nonce, "i": index, "n": len(parts), "a": args}))
            for index, args in enumerate(rest, 1)
        ]
        head: list[Any] = [self.maxlen, 0, nonce, FLOW_PART_GRACE_MS, len(creates)]
        for member, body in creates:
            head += [member, body]
        for j in parts[0]:
            head += self._flow_job_args(j)
        reply = self._run("flow_enqueue_part", (root.meta,), head)
        if int(reply[0]) == 0:
            return Enqueued(0, reply[1])
        enqueued_ms, seqs = int(reply[1]), [int(seq) for seq in reply[2:]]
        if after_first is not None:
            after_first()
        for (member, body), args, seq in zip(creates, rest, seqs, strict=True):
            # The entry as recorded (flow_enqueue_part.lua): its seq and the flow's enqueue time first.
            entry = f'{{"seq":{seq},"e":{enqueued_ms},{body[1:]}'
            # ENQUEUE_WAIT: each part is on its slot's replicas before its entry is acknowledged.
            code, _found = self._run("flow_deliver", (args[0] + "job:" + args[1],), (self.maxlen, entry), creates=True)
            if int(code) == 0:
                self._park_parts(root, member, json.loads(entry))
                raise ScriptError(
                    f"A job of this flow on {args[0]!r} already exists (a reused id): the flow is partly written and "
                    "its later parts are parked. Cancel its root job."
                )
        cancelled = self._cancel_orphans(rest)
        if creates:
            self._run("flow_ack", (root.outbox, root.outbox_parts), [v for (member, _b), seq in zip(creates, seqs, strict=True) for v in (member, seq)])
            with self.client.pipeline(transaction=False) as pipe:
                for index, args in enumerate(rest, 1):
                    pipe.delete(QueueKeys(queue="", base=args[0]).flow_part_mark(nonce, index))
                self._call(pipe.execute)
        if cancelled:
            self._relay_bases(cancelled, RELAY_BATCH, None)
        return Enqueued(1, enqueued_ms)

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
