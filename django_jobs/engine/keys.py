"""Redis key names. The only module that formats them.

Every key of one queue carries the queue's hash tag, ``{prefix}:{queue}:...``, so each
script touches a single Redis Cluster slot.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class QueueKeys:
    """Key names of one queue."""

    queue: str
    base: str

    @classmethod
    def build(cls, prefix: str, queue: str) -> QueueKeys:
        """Return the keys of ``queue`` under ``prefix``."""
        return cls(queue=queue, base=f"{prefix}:{{{queue}}}:")

    @property
    def job_prefix(self) -> str:
        return self.base + "job:"

    def job(self, job_id: str) -> str:
        return self.base + "job:" + job_id

    @property
    def wait(self) -> str:
        return self.base + "wait"

    @property
    def scheduled(self) -> str:
        return self.base + "scheduled"

    @property
    def active(self) -> str:
        return self.base + "active"

    @property
    def completed(self) -> str:
        return self.base + "completed"

    @property
    def failed(self) -> str:
        return self.base + "failed"

    @property
    def cancelled(self) -> str:
        return self.base + "cancelled"

    @property
    def events(self) -> str:
        return self.base + "events"

    @property
    def meta(self) -> str:
        return self.base + "meta"

    @property
    def marker(self) -> str:
        return self.base + "marker"

    @property
    def waiting_children(self) -> str:
        """Flow parents waiting for their children (score: enqueued at, ms)."""
        return self.base + "waiting_children"

    @property
    def outbox(self) -> str:
        """HASH of flow steps toward jobs on other slots: member -> entry JSON (includes/flow.lua, engine/relay.py)."""
        return self.base + "outbox"

    @property
    def outbox_due(self) -> str:
        """ZSET of the outbox members the relay delivers (score: recorded at, ms)."""
        return self.base + "outbox_due"

    @property
    def outbox_parts(self) -> str:
        """ZSET of the outbox's create entries (``c|...``: parts of a flow still to write; score: when a relay may)."""
        return self.base + "outbox_parts"

    def flow_part_mark(self, nonce: str, index: int) -> str:
        """STRING set when part ``index`` of the flow with ``nonce`` was written here, until its entry is acknowledged."""
        return f"{self.base}part:{nonce}:{index}"

    @property
    def rate(self) -> str:
        """ZSET of the job starts inside the queue's rate-limit window (docs/flow-control.md)."""
        return self.base + "rate"

    @property
    def unique_prefix(self) -> str:
        """Prefix of the unique-key locks: ``unique_prefix + key`` is a STRING holding a job id."""
        return self.base + "unique:"

    @property
    def limit_prefix(self) -> str:
        """Prefix of the per-key limit structures: ``limit_prefix + key + ":"`` + ``a`` / ``r`` / ``p``."""
        return self.base + "lim:"

    @property
    def mirror(self) -> str:
        """The database mirror's hold on the queue: a STRING (its MAX_LAG) with a PX (lua/includes/mirror.lua)."""
        return self.base + "mirror"

    @property
    def mirror_lost(self) -> str:
        """A counter of finished jobs that left Redis before the mirror recorded them (its metric)."""
        return self.base + "mirror:lost"

    def recorded(self, state: str) -> str:
        """The ZSET of finished jobs of ``state`` the mirror recorded (retention may delete them)."""
        return self.base + "rec:" + state

    #: The state ZSETs, in DESIGN.md order; a job is in exactly one of them.
    STATE_SETS = ("wait", "scheduled", "active", "completed", "failed", "cancelled", "waiting_children")

    def state_set(self, state: str) -> str:
        """Return the state ZSET that holds the jobs in ``state`` (``"waiting"``: :attr:`wait`).

        Raises:
            KeyError: ``state`` is not a job state.
        """
        return str(getattr(self, STATE_TO_SET[state]))


#: The state ZSET (a :attr:`QueueKeys.STATE_SETS` name) that holds a job in each state
STATE_TO_SET = {
    "waiting": "wait",
    "scheduled": "scheduled",
    "active": "active",
    "completed": "completed",
    "failed": "failed",
    "cancelled": "cancelled",
    "waiting_children": "waiting_children",
}


@dataclass(frozen=True, slots=True)
class CronKeys:
    """Key names of the cron scheduler (django_jobs/scheduler.py).

    They share the hash tag ``{cron}``, so each cron script touches one Redis Cluster slot.
    """

    #: The leader lease: a STRING "<epoch>|<holder>" with a PX.
    leader: str
    #: The epoch counter (incremented by each new leader: the fence of its writes).
    epoch: str
    #: The schedules' state HASH (last tick, its job, paused/resumed, triggered).
    state: str

    @classmethod
    def build(cls, prefix: str) -> CronKeys:
        """Return the cron keys under ``prefix``."""
        base = f"{prefix}:{{cron}}:"
        return cls(leader=base + "leader", epoch=base + "epoch", state=base + "state")


def workers_key(prefix: str) -> str:
    """Return the global hash of worker heartbeats (no hash tag: single-key ops only)."""
    return f"{prefix}:workers"


def restarts_key(prefix: str, host: str) -> str:
    """Return the list of recent worker-process restarts of one host (newest first, JSON entries)."""
    return f"{prefix}:restarts:{host}"


@dataclass(frozen=True, slots=True)
class MirrorKeys:
    """Key names of the database mirror's leader election (one mirror per deployment, docs/mirror.md)."""

    #: The leader lease: a STRING "<epoch>|<holder>" with a PX (lua/leader_acquire.lua).
    leader: str
    #: The epoch counter.
    epoch: str

    @classmethod
    def build(cls, prefix: str) -> MirrorKeys:
        """Return the mirror's election keys under ``prefix``."""
        base = f"{prefix}:{{mirror}}:"
        return cls(leader=base + "leader", epoch=base + "epoch")


#: The consumer group of the database mirror on every queue's ``events`` stream
#: (django_jobs/mirror/). Not a key name, but kept with them: it lives inside the stream.
MIRROR_GROUP = "djj-mirror"


# -- sharded queues (docs/scaling.md#sharded-queues) -------------------------------------------

#: Between a sharded queue's name and a shard's number in the shard's name (``hot#3``, whose keys
#: carry the hash tag ``{hot#3}``). No queue name may hold it, so a shard is never a configured queue.
SHARD_SEP = "#"
#: Between a job id and the number of its shard (``<id>.3``): the id tells where the job is.
SHARD_ID_SEP = "."


def shard_queue(queue: str, index: int) -> str:
    """Return the name of shard ``index`` of ``queue`` (its keys: ``{prefix}:{queue#index}:...``)."""
    return f"{queue}{SHARD_SEP}{index}"


def base_queue(name: str) -> str:
    """Return the queue a shard's name belongs to (``hot#3`` -> ``hot``); any other name unchanged."""
    return name.partition(SHARD_SEP)[0]


def shard_job_id(job_id: str, index: int) -> str:
    """Return ``job_id`` marked as living on shard ``index``."""
    return f"{job_id}{SHARD_ID_SEP}{index}"


def key_shard(key: str, shards: int) -> int:
    """Return the shard a placement key decides (CRC-32, the same in every process and release)."""
    import zlib

    return zlib.crc32(key.encode()) % shards


def job_shard(job_id: str, shards: int) -> int:
    """Return the shard of ``job_id`` on a queue of ``shards`` shards.

    The number after the id's last ``.`` when there is one below ``shards`` (ids made by
    :func:`shard_job_id`); otherwise, for an id chosen by the caller, its :func:`key_shard`.
    """
    head, sep, tail = job_id.rpartition(SHARD_ID_SEP)
    if sep and head and tail.isdigit() and tail.isascii() and int(tail) < shards:
        return int(tail)
    return key_shard(job_id, shards)


#: The id alphabet: base62 in ASCII order, so ids sort as their times do (``str`` and Redis order alike).
ID_ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
#: Length of an id made by :func:`new_job_id`: 8 characters of time, 12 random ones.
JOB_ID_LENGTH = 20
# One random byte -> one id character (byte % 62: each character carries ~5.95 bits).
_RANDOM_CHARS = bytes(ord(ID_ALPHABET[i % 62]) for i in range(256))
# (ms, its 8 characters): the time part, computed once per millisecond (bulk enqueues share it).
_time_part: tuple[int, str] = (0, "")
# Random bytes drawn from os.urandom 1,536 at a time (one system call per 128 ids, not one per id):
# each thread takes from its own buffer, and a forked child starts with none (no id twice).
_RANDOM_BATCH = 12 * 128
_random = threading.local()


def _forget_random() -> None:
    global _random
    _random = threading.local()


os.register_at_fork(after_in_child=_forget_random)


def _random_chars() -> str:
    """Return 12 random id characters."""
    lane = _random
    pos = getattr(lane, "pos", _RANDOM_BATCH)
    if pos >= _RANDOM_BATCH:
        lane.buf, pos = os.urandom(_RANDOM_BATCH).translate(_RANDOM_CHARS).decode(), 0
    lane.pos = pos + 12
    chars: str = lane.buf[pos : pos + 12]
    return chars


def id_time_part(ms: int) -> str:
    """Return the 8 base62 characters of ``ms`` (milliseconds since the epoch) that begin a job id."""
    out = []
    for _ in range(8):
        ms, digit = divmod(ms, 62)
        out.append(ID_ALPHABET[digit])
    return "".join(reversed(out))


def _time_head() -> str:
    """Return the time part of an id made now (:func:`id_time_part` of the clock's ms, kept while the ms lasts)."""
    global _time_part
    ms = time.time_ns() // 1_000_000
    cached = _time_part
    if cached[0] != ms:
        cached = _time_part = (ms, id_time_part(ms))
    return cached[1]


def new_job_id() -> str:
    """Return a new job id: 20 base62 characters, time-ordered.

    8 characters of the millisecond clock (enough until the year 8900) then 12 random ones (~71
    bits from ``os.urandom``: unique across processes and hosts with no coordination, as a UUIDv7's
    74). Ids sort by their creation time (to the ms; ids of one ms in random order). 20 characters
    rather than 32 hex digits keep every copy of the id in Redis (the job hash's key, its state
    set's member, its events) small (docs/performance.md, "Enqueue cost").

    A job of a sharded queue gets its shard as a suffix when it is placed (``Engine.place``).
    """
    return _time_head() + _random_chars()


def new_job_ids(count: int) -> list[str]:
    """Return ``count`` new job ids at once (a bulk enqueue's chunk): :func:`new_job_id`'s, made together.

    One clock read for them all (they share the millisecond they were made in, as ids made in
    one loop mostly do) and one ``os.urandom`` of ``12 * count`` bytes, each id a slice of it:
    no per-id call, clock read or thread-local look-up (docs/performance.md, "Bulk enqueue,
    Python per job"). The same form, alphabet and randomness as :func:`new_job_id`.
    """
    head = _time_head()
    chars = os.urandom(12 * count).translate(_RANDOM_CHARS).decode()
    return [head + chars[start : start + 12] for start in range(0, 12 * count, 12)]
