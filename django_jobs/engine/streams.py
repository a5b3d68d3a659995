"""Streams: every read of the queues' ``events`` streams (XREAD, XREADGROUP, XRANGE...).

- :class:`~django_jobs.events.QueueEvents` and ``JobResult.wait()``: :meth:`Streams.events_tip`,
  :meth:`Streams.events_read` (blocking XREAD on the blocking client); for a sharded queue's
  streams :meth:`Streams.events_tips` and :meth:`Streams.events_read_many`;
- the database mirror (django_jobs/mirror/): a consumer group per queue, ``mirror_*``;
- the admin's throughput: :meth:`Streams.throughput` (XRANGE by time).

None of this changes a job: the streams are written by the scripts only.
"""

from __future__ import annotations

import json
import time
from collections.abc import Container, Sequence
from dataclasses import dataclass
from typing import Any

import redis

from django_jobs.engine.cluster import wait_streams, xread_blocking
from django_jobs.engine.keys import MirrorKeys
from django_jobs.engine.runner import MAX_BLOCK, ScriptRunner
from django_jobs.exceptions import EngineError, RedisUnavailable


class MirrorGroupMissing(EngineError):
    """The mirror's consumer group is missing on a queue's events stream (create it and read again)."""


@dataclass(frozen=True, slots=True)
class MirrorLag:
    """How far the mirror is behind on one queue (:meth:`Streams.mirror_lag`)."""

    #: Entries of the queue's events stream the mirror has not acknowledged (unread + read, not
    #: yet written). A batch entry (one script call's same event of several jobs) counts once,
    #: as ``MIRROR["MAX_LAG"]`` counts them.
    behind: int
    #: Redis time (ms) of the oldest of them, None when none.
    oldest_ms: int | None
    #: Finished jobs Redis holds for the mirror (retention waits until it recorded them).
    unrecorded: int
    #: True when a mirror holds the queue now (lua/includes/mirror.lua).
    held: bool
    #: Redis' clock when this was read, ms.
    now_ms: int
    #: Finished jobs that left Redis before the mirror recorded them, ever (its ERROR log lines).
    lost: int = 0

    @property
    def age(self) -> float | None:
        """Seconds since the oldest unacknowledged event was added (None: nothing behind)."""
        return None if self.oldest_ms is None else max(0.0, (self.now_ms - self.oldest_ms) / 1000)


@dataclass(frozen=True, slots=True)
class MirrorRead:
    """What one :meth:`Streams.mirror_read` returned."""

    entries: list[tuple[str, dict[str, str]]]
    #: True when entries the group never read were trimmed away before this read.
    gap: bool
    #: The stream's last generated id (where to block from).
    tip: str


#: Jobs per ``mirror_snapshot`` script call (the mirror reads at most 10,000 events a batch).
SNAPSHOT_CHUNK = 5_000
#: One stream entry: ``(entry id, fields)``.
Entry = tuple[str, dict[str, str]]


def stream_id_key(entry_id: str) -> tuple[int, int]:
    """Return a stream entry id ``"<ms>-<seq>"`` as a sortable pair."""
    ms, _, seq = entry_id.partition("-")
    return int(ms or 0), int(seq or 0)


def entry_job_ids(fields: dict[str, str]) -> list[str]:
    """Return the ids of the jobs an events entry names: its ``j``, or the ``js`` list of a batch entry.

    >>> entry_job_ids({"e": "completed", "js": '["a","b"]'})
    ['a', 'b']
    >>> entry_job_ids({"e": "completed", "j": "a"})
    ['a']
    """
    batch = fields.get("js")
    if batch is not None:
        return [str(job_id) for job_id in json.loads(batch)]
    job_id = fields.get("j")
    return [job_id] if job_id else []


def expand_entry(entry_id: str, fields: dict[str, str]) -> list[tuple[str, dict[str, str]]]:
    """Return the events of one events entry, one per job: ``[(event id, fields with "j")]``.

    A single-job entry (``e``, ``j``, fields) is one event whose id is the entry id. A batch
    entry (lua/includes/emit.lua: ``e``, ``js`` a JSON list of job ids, every other field a
    JSON list of per-job values) is one event per job, the i-th with id ``"<entry id>:<i>"``
    (:func:`split_event_id`) and its own values of the fields.

    >>> expand_entry("5-0", {"e": "retrying", "js": '["a","b"]', "delay": '["0","7"]'})
    [('5-0:0', {'e': 'retrying', 'delay': '0', 'j': 'a'}), ('5-0:1', {'e': 'retrying', 'delay': '7', 'j': 'b'})]
    """
    batch = fields.get("js")
    if batch is None:
        return [(entry_id, fields)]
    ids = json.loads(batch)
    columns = {name: json.loads(value) for name, value in fields.items() if name not in ("e", "js")}
    event = fields.get("e", "")
    found = []
    for i, job_id in enumerate(ids):
        one = {"e": event}
        for name, values in columns.items():
            one[name] = str(values[i])
        one["j"] = str(job_id)
        found.append((f"{entry_id}:{i}", one))
    return found


def split_event_id(event_id: str) -> tuple[str, int | None]:
    """Return ``(entry id, index)`` of an event id: the index of the job in a batch entry, None for a whole entry.

    >>> split_event_id("5-0:1")
    ('5-0', 1)
    >>> split_event_id("5-0")
    ('5-0', None)
    """
    entry_id, sep, index = event_id.partition(":")
    return (entry_id, int(index)) if sep else (entry_id, None)


def entry_before(entry_id: str) -> str:
    """Return the largest stream id below ``entry_id`` (to read from ``entry_id`` included with XREAD).

    >>> entry_before("5-3"), entry_before("5-0")
    ('5-2', '4-18446744073709551615')
    """
    ms, seq = stream_id_key(entry_id)
    if seq > 0:
        return f"{ms}-{seq - 1}"
    return f"{ms - 1}-18446744073709551615" if ms > 0 else "0-0"


def _pairs(fields: Any) -> dict[str, str]:
    if isinstance(fields, dict):
        return dict(fields)
    return dict(zip(fields[::2], fields[1::2]))


def _entries_by_stream(reply: Any) -> dict[str, list[Entry]]:
    """Return an XREAD / XREADGROUP reply (RESP2 list or RESP3 dict) as ``{stream key: [(entry id, fields)]}``."""
    if not reply:
        return {}
    streams = reply.items() if isinstance(reply, dict) else reply
    found: dict[str, list[Entry]] = {}
    for key, entries in streams:
        if entries and isinstance(entries[0], list) and len(entries) == 1 and isinstance(entries[0][0], list):
            entries = entries[0]  # RESP3 wraps the entries once more
        found.setdefault(str(key), []).extend((entry_id, _pairs(fields) if fields else {}) for entry_id, fields in entries)
    return found


def _stream_entries(reply: Any) -> list[Entry]:
    """Flatten an XREAD / XREADGROUP reply (RESP2 list or RESP3 dict) to ``[(entry id, fields)]``."""
    return [entry for entries in _entries_by_stream(reply).values() for entry in entries]


class Streams(ScriptRunner):
    """Reads of the events streams."""

    # -- QueueEvents and JobResult.wait() (django_jobs/events.py) -------------------------

    def _events_call(self, queue: str, func: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            raise RedisUnavailable(f"Cannot read the events of {queue!r}: {exc}") from exc

    def events_tip(self, queue: str) -> str:
        """Return the id of the newest entry of ``queue``'s events stream (``"0-0"``: empty)."""
        newest = self._events_call(queue, self.blocking_client().xrevrange, self.keys(queue).events, count=1)
        return str(newest[0][0]) if newest else "0-0"

    def events_read(self, queue: str, after: str, *, count: int, block_ms: int) -> list[Entry] | None:
        """Read up to ``count`` entries of ``queue``'s events newer than ``after``.

        Blocks up to ``block_ms`` ms for the first one (0: no wait; at most the blocking
        client's socket timeout). Returns None when nothing came (as XREAD does).
        """
        reply = self._events_call(
            queue, self.blocking_client().xread, {self.keys(queue).events: after}, count=count, block=block_ms or None
        )
        return _stream_entries(reply) if reply else None

    def events_tips(self, queues: Sequence[str]) -> list[str]:
        """Return the id of the newest entry of each of ``queues``' events streams (``"0-0"``: empty).

        One pipelined round trip (on a cluster RedisCluster splits it per node); each tip is
        read when its node answers, all of them before this returns.
        """
        def read() -> list[Any]:
            with self.client.pipeline(transaction=False) as pipe:
                for queue in queues:
                    pipe.xrevrange(self.keys(queue).events, count=1)
                return list(pipe.execute())

        newest = self._events_call(queues[0] if queues else "", read)
        return [str(found[0][0]) if found else "0-0" for found in newest]

    def events_read_many(self, queues: Sequence[str], afters: Sequence[str], *, count: int, block_ms: int) -> list[list[Entry]]:
        """Read up to ``count`` entries of each of ``queues``' events streams newer than ``afters[i]``.

        Returns one list per queue, in the order of ``queues`` (empty: nothing new there). Each
        stream gives at most ``count`` entries, so a busy stream never crowds out the others.
        Blocks up to ``block_ms`` ms (0: no wait) until one of them has an entry, with no CPU
        used meanwhile:

        - one server: one XREAD over every stream (``COUNT`` holds per stream);
        - a Redis Cluster: one XREAD cannot name streams in several slots, so first a
          non-blocking XREAD of every stream (one pipelined round trip, split per node by
          RedisCluster); when that found nothing, one blocking XREAD per stream, all at once
          (:func:`~django_jobs.engine.cluster.xread_blocking`), until the first answers.
        """
        if not queues:
            return []
        keys = [self.keys(queue).events for queue in queues]
        if not self._cluster:
            reply = self._events_call(
                queues[0], self.blocking_client().xread, dict(zip(keys, afters, strict=True)),
                count=count, block=block_ms or None,
            )
            found = _entries_by_stream(reply)
            return [found.get(key, []) for key in keys]

        def sweep() -> list[Any]:
            with self.client.pipeline(transaction=False) as pipe:
                for key, after in zip(keys, afters, strict=True):
                    pipe.xread({key: after}, count=count)
                return list(pipe.execute())

        swept = [_stream_entries(reply) for reply in self._events_call(queues[0], sweep)]
        if any(swept) or not block_ms:
            return swept
        replies = self._events_call(
            queues[0], xread_blocking, self.blocking_client(), list(zip(keys, afters, strict=True)),
            count=count, block_ms=block_ms,
        )
        return [_stream_entries(reply) for reply in replies]

    # -- the admin ------------------------------------------------------------------------

    def throughput(self, queue: str, *, seconds: float = 60.0) -> dict[str, int]:
        """Count ``completed``, ``failed`` and ``retrying`` events of the last ``seconds``.

        Read from the events stream by time (its ids are Redis ms), so the count stops at
        what the stream still holds (``EVENTS_MAXLEN``).
        """
        k = self.keys(queue)
        start = f"{self.server_time_ms() - int(seconds * 1000)}-0"
        counts = {"completed": 0, "failed": 0, "retrying": 0}
        while True:
            batch = self._call(self.client.xrange, k.events, start, "+", count=10_000)
            for _, fields in batch:
                event = fields.get("e")
                if event in counts:
                    counts[event] += len(entry_job_ids(fields))  # a batch entry counts each of its jobs
            if len(batch) < 10_000:
                return counts
            start = "(" + batch[-1][0]

    # -- the database mirror --------------------------------------------------------------
    # The mirror follows each queue's events stream with a consumer group and reads the job
    # hashes for the current truth. None of this changes a job: plain stream and hash commands.

    def mirror_ensure_group(self, queue: str, group: str) -> bool:
        """Create consumer group ``group`` on the events stream of ``queue`` (from its start).

        Returns True when the group was created, False when it existed already.
        """
        try:
            self._call(self.client.xgroup_create, self.keys(queue).events, group, id="0", mkstream=True)
        except redis.ResponseError as exc:
            if "BUSYGROUP" in str(exc):
                return False
            raise
        return True

    def mirror_read(self, queue: str, group: str, consumer: str, *, count: int) -> MirrorRead:
        """Read up to ``count`` new entries of ``queue``'s events for ``consumer`` of ``group``.

        One MULTI: the group's read count and the stream's added and kept counts are read
        with the entries, so :attr:`MirrorRead.gap` says exactly whether entries the group
        never saw were trimmed away (``MAXLEN``) before this read.

        Raises:
            MirrorGroupMissing: the group (or the stream) does not exist, e.g. after Redis lost its data.
        """
        key = self.keys(queue).events

        def read() -> list[Any]:
            with self.client.pipeline(transaction=True) as pipe:
                pipe.execute_command("XINFO", "GROUPS", key)
                pipe.execute_command("XINFO", "STREAM", key)
                pipe.xreadgroup(group, consumer, {key: ">"}, count=count)
                return list(pipe.execute(raise_on_error=False))

        groups, stream, reply = self._call(read)
        for item in (groups, stream, reply):
            if isinstance(item, redis.ResponseError):
                if "NOGROUP" in str(item) or "no such key" in str(item):
                    raise MirrorGroupMissing(f"No mirror group on {key!r}.")
                raise self._response_error(item)
        mine = next((g for g in groups if g.get("name") == group), None)
        if mine is None:
            raise MirrorGroupMissing(f"No mirror group on {key!r}.")
        # Trimming removes the oldest entries and a group reads in order. Entries the group
        # never read are gone only when its last read entry is older than the oldest entry
        # left, and more entries were removed than it read (the count is unknown for a new
        # group, and only grows by what is read, so after a gap it may overstate: at worst
        # one needless resync, never a missed gap).
        removed = int(stream.get("entries-added") or 0) - int(stream.get("length") or 0)
        read_so_far = mine.get("entries-read")
        first = str(stream.get("recorded-first-entry-id") or "0-0")
        behind = stream_id_key(str(mine.get("last-delivered-id") or "0-0")) < stream_id_key(first)
        gap = behind and removed > 0 and (read_so_far is None or removed > int(read_so_far))
        tip = str(stream.get("last-generated-id") or "0-0")
        return MirrorRead(entries=_stream_entries(reply), gap=gap, tip=tip)

    def mirror_pending(
        self, queue: str, group: str, consumer: str, *, count: int, claim_idle_ms: int = 0, after: str = "0",
        known: Container[str] = (),
    ) -> tuple[list[Entry], int]:
        """Return entries read by ``group`` but never acknowledged, and how many were trimmed.

        First this consumer's own pending entries newer than ``after``, less the ``known`` ones
        (a mirror's deferred entries: pages of only those are read past); with
        ``claim_idle_ms`` > 0 and none of its own, it takes over entries other consumers left
        unacknowledged for that long (XAUTOCLAIM). Trimmed entries (their job is unknown) are
        acknowledged here and counted, so the caller can resync the queue.
        """
        key = self.keys(queue).events
        start = after or "0"
        while True:
            try:
                reply = self._call(self.client.xreadgroup, group, consumer, {key: start}, count=count)
            except redis.ResponseError as exc:
                if "NOGROUP" in str(exc):
                    raise MirrorGroupMissing(f"No mirror group on {key!r}.") from exc
                raise
            page = _stream_entries(reply)
            gone = [entry_id for entry_id, fields in page if not fields]
            entries = [(entry_id, fields) for entry_id, fields in page if fields and entry_id not in known]
            if entries or gone or len(page) < count:
                break
            start = page[-1][0]  # a full page of known entries: read past it
        if not entries and not gone and claim_idle_ms > 0:
            raw = self._call(
                self.client.execute_command, "XAUTOCLAIM", key, group, consumer, claim_idle_ms, "0-0", "COUNT", count
            )
            for item in raw[1] or ():
                if item and item[0] and item[1]:
                    if item[0] not in known:
                        entries.append((item[0], _pairs(item[1])))
                elif item and item[0]:
                    gone.append(item[0])
            gone += list(raw[2] if len(raw) > 2 else ())
        if gone:
            self.mirror_ack(queue, group, gone)
        return entries, len(gone)

    def mirror_wait(self, tips: dict[str, str], timeout: float) -> bool:
        """Block until an entry newer than ``tips[queue]`` reaches one of the queues' events streams.

        Returns False after ``timeout`` seconds without one.
        """
        if not tips:
            time.sleep(timeout)
            return False
        streams = {self.keys(queue).events: tip for queue, tip in tips.items()}
        if self._cluster:  # streams on several slots: no single blocking XREAD (engine/cluster.py)
            return bool(self._call(wait_streams, self.client, streams, min(timeout, MAX_BLOCK)))
        block = max(1, int(min(timeout, MAX_BLOCK) * 1000))
        return bool(self._call(self.blocking_client().xread, streams, count=1, block=block))

    def mirror_snapshot(self, queue: str, job_ids: Sequence[str], *, lean: int = 0) -> tuple[str, list[dict[str, str]]]:
        """Read the hashes of ``job_ids`` (empty dict: gone) and the events stream's newest id, at one instant.

        Of the first ``lean`` jobs, one still waiting comes back as ``{"s": "waiting"}`` only (a
        mirror that is behind defers such a job's row: one field read, not the hash).

        The hashes hold exactly the effect of every event up to that id, which makes the id
        a version: a snapshot with a larger one is never older. One ``MULTI`` of bare reads
        (:meth:`_snapshot_bare`; on a cluster one script call, lua/mirror_snapshot.lua) per
        :data:`SNAPSHOT_CHUNK` jobs; with several, the first one's id is returned, the oldest,
        which every hash read includes (a version too small only makes a later event re-read
        its job, never skips one).
        """
        k = self.keys(queue)
        if not self._cluster:
            return self._snapshot_bare(k.events, k.job_prefix, job_ids, lean)
        newest = ""
        hashes: list[Any] = []
        for start in range(0, max(1, len(job_ids)), SNAPSHOT_CHUNK):
            chunk = job_ids[start : start + SNAPSHOT_CHUNK]
            tip, *got = self._run("mirror_snapshot", (k.events,), (k.job_prefix, max(0, min(len(chunk), lean - start)), *chunk))
            newest = newest or tip
            hashes += got
        return newest, [_pairs(h) if h else {} for h in hashes]

    def _snapshot_bare(self, events: str, prefix: str, job_ids: Sequence[str], lean: int) -> tuple[str, list[dict[str, str]]]:
        """:meth:`mirror_snapshot` in bare commands (one server, Sentinel): what ``mirror_snapshot.lua`` reads, for less of Redis' CPU.

        The lean jobs' states first (one pipelined ``HGET`` each): those waiting are answered
        ``{"s": "waiting"}`` (nothing is built from such a reply: a mirror behind defers their
        rows, their next event brings them). Then the others' hashes and the stream's newest id
        at one instant: ``XREVRANGE`` and an ``HGETALL`` per job in ``MULTI`` / ``EXEC``, per
        :data:`SNAPSHOT_CHUNK` jobs (the first chunk's id returned: the oldest, a version every
        hash read includes). Redis does for each job what the script did, without the Lua
        tables built from the replies and back (``python -m bench.mirror_scripts``).
        """
        hashes: list[dict[str, str] | None] = [None] * len(job_ids)
        lean = max(0, min(lean, len(job_ids)))
        if lean:
            states = self._reads([("HGET", prefix + job_id, "s") for job_id in job_ids[:lean]])
            for i, state in enumerate(states):
                if state == "waiting":
                    hashes[i] = {"s": "waiting"}
        rest = [i for i in range(len(job_ids)) if hashes[i] is None]
        newest = ""
        for start in range(0, max(1, len(rest)), SNAPSHOT_CHUNK):
            chunk = rest[start : start + SNAPSHOT_CHUNK]
            tip, *got = self._reads([("XREVRANGE", events, "+", "-", "COUNT", 1),
                                     *(("HGETALL", prefix + job_ids[i]) for i in chunk)], atomic=True)
            newest = newest or (tip[0][0] if tip else "0-0")
            for i, fields in zip(chunk, got, strict=True):
                hashes[i] = _pairs(fields) if fields else {}
        return newest, [h if h is not None else {} for h in hashes]

    def mirror_ack(self, queue: str, group: str, entry_ids: Sequence[str]) -> int:
        """Acknowledge entries of ``queue``'s events stream for ``group``; returns how many were pending."""
        if not entry_ids:
            return 0
        return int(self._call(self.client.xack, self.keys(queue).events, group, *entry_ids))

    def mirror_group_info(self, queue: str, group: str) -> dict[str, Any] | None:
        """Return XINFO GROUPS' record of ``group`` on ``queue`` (None: no such group)."""
        try:
            groups = self._call(self.client.execute_command, "XINFO", "GROUPS", self.keys(queue).events)
        except redis.ResponseError:
            return None
        return next((dict(g) for g in groups if g.get("name") == group), None)

    # -- lossless: the mirror's hold, its writes, its lag (lua/includes/mirror.lua) ----------

    def mirror_hold(self, queues: Sequence[str], *, cap: int, hold_ms: int) -> None:
        """Hold ``queues`` for the mirror for ``hold_ms``: their streams are trimmed at ``cap`` only,
        and retention deletes only finished jobs the mirror recorded (see :meth:`mirror_done`)."""
        def hold() -> None:
            with self.client.pipeline(transaction=False) as pipe:
                for queue in queues:
                    pipe.set(self.keys(queue).mirror, int(cap), px=max(1, int(hold_ms)))
                pipe.execute()

        self._call(hold)

    def mirror_count_lost(self, queue: str, count: int) -> None:
        """Add ``count`` to the queue's count of jobs lost to the mirror (:attr:`MirrorLag.lost`)."""
        self._call(self.client.incrby, self.keys(queue).mirror_lost, count)

    def mirror_release(self, queues: Sequence[str]) -> None:
        """Drop the mirror's hold on ``queues`` (trimming and retention work as without a mirror)."""
        if queues:
            self._call(self.client.delete, *[self.keys(queue).mirror for queue in queues])

    def mirror_done(
        self, queue: str, group: str, entry_ids: Sequence[str], recorded: Sequence[tuple[str, str]] = ()
    ) -> tuple[int, int, int]:
        """Acknowledge ``entry_ids``, let retention delete the ``recorded`` finished jobs, trim the stream.

        ``recorded`` pairs a job id with the finish time (its hash's ``f``) of the snapshot
        the mirror committed. Returns (acknowledged, recorded, events trimmed). One script
        (lua/mirror_done.lua); call it only after the rows are committed.
        """
        k = self.keys(queue)
        _, c_count = self.settings.keep(queue, "COMPLETED")
        _, f_count = self.settings.keep(queue, "FAILED")
        flat = [value for pair in recorded for value in pair]
        got = self._run(
            "mirror_done", (k.events, k.completed, k.failed, k.cancelled),
            (group, k.job_prefix, self.maxlen, c_count, f_count, len(entry_ids), *entry_ids, *flat),
        )
        return int(got[0]), int(got[1]), int(got[2])

    def mirror_lag(self, queue: str, group: str) -> MirrorLag:
        """Return how far the mirror (consumer group ``group``) is behind on ``queue``."""
        k = self.keys(queue)

        def read() -> list[Any]:
            with self.client.pipeline(transaction=False) as pipe:
                pipe.execute_command("XINFO", "GROUPS", k.events)
                pipe.execute_command("XPENDING", k.events, group)
                pipe.xinfo_stream(k.events)
                pipe.exists(k.mirror)
                pipe.get(k.mirror_lost)
                for state in ("completed", "failed", "cancelled"):
                    pipe.zcard(k.state_set(state))
                    pipe.zcard(k.recorded(state))
                return list(pipe.execute(raise_on_error=False))

        groups, pending, stream, held, lost, c, rc, f, rf, x, rx = self._call(read)
        now_ms = self.server_time_ms()  # not in the pipeline: a cluster pipeline refuses TIME
        unrecorded = max(0, c - rc) + max(0, f - rf) + max(0, x - rx) if held else 0
        mine = None
        if not isinstance(groups, Exception):
            mine = next((g for g in groups if g.get("name") == group), None)
        if mine is None or isinstance(stream, Exception):
            # No mirror group yet: every event the stream holds is unread.
            length = 0 if isinstance(stream, Exception) else int(stream.get("length") or 0)
            first = None if isinstance(stream, Exception) or not stream.get("first-entry") else stream["first-entry"][0]
            return MirrorLag(behind=length, oldest_ms=stream_id_key(first)[0] if first else None,
                             unrecorded=unrecorded, held=bool(held), now_ms=now_ms, lost=int(lost or 0))
        count = 0
        oldest: str | None = None
        if not isinstance(pending, Exception) and pending:
            count = int(pending.get("pending", 0) if isinstance(pending, dict) else pending[0] or 0)
            low = pending.get("min") if isinstance(pending, dict) else pending[1]
            oldest = str(low) if low else None
        lag = mine.get("lag")
        if lag is None:  # Redis cannot tell (entries deleted in the middle): count them
            after = self._call(self.client.xrange, k.events, "(" + str(mine.get("last-delivered-id") or "0-0"), "+")
            lag = len(after)
        lag = int(lag)
        if oldest is None and lag:
            nxt = self._call(self.client.xrange, k.events, "(" + str(mine.get("last-delivered-id") or "0-0"), "+", count=1)
            oldest = str(nxt[0][0]) if nxt else None
        return MirrorLag(behind=count + lag, oldest_ms=stream_id_key(oldest)[0] if oldest else None,
                         unrecorded=unrecorded, held=bool(held), now_ms=now_ms, lost=int(lost or 0))

    # -- one mirror per deployment: a leader lease like the scheduler's (engine/cron.py) -----

    def mirror_lead(self, holder: str, *, lease_ms: int) -> str:
        """Try to become the deployment's mirror; return the lease token ("<epoch>|<holder>"), '' when another leads."""
        k = MirrorKeys.build(self.prefix)
        got, _now, current = self._run("leader_acquire", (k.leader, k.epoch), (holder, lease_ms))
        return str(current) if int(got) else ""

    def mirror_renew(self, token: str, *, lease_ms: int) -> bool:
        """Extend the mirror lease held as ``token`` (``lease_ms=0``: resign); False when it is lost."""
        ok, _now = self._run("leader_renew", (MirrorKeys.build(self.prefix).leader,), (token, lease_ms))
        return bool(ok)

    def mirror_leader(self) -> str:
        """Return the mirror lease "<epoch>|<holder>" ('' when no mirror leads)."""
        return str(self._call(self.client.get, MirrorKeys.build(self.prefix).leader) or "")
