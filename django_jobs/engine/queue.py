"""The engine: every read and write of job state in Redis goes through :class:`Engine`.

:class:`Engine` is one façade over modules with one concern each:

- :mod:`~django_jobs.engine.runner`: the client, the one script registry, ``_run`` and its
  chunked form, error mapping;
- :mod:`~django_jobs.engine.transitions`: every state change (one Lua script call each);
- :mod:`~django_jobs.engine.relay`: the flow outbox relay of a Redis Cluster;
- :mod:`~django_jobs.engine.reads`: job hashes, counts, pages;
- :mod:`~django_jobs.engine.control`: pause/resume, queue limits, worker heartbeats;
- :mod:`~django_jobs.engine.cron`: the scheduler's leader and ticks;
- :mod:`~django_jobs.engine.streams`: every read of the events streams;
- :mod:`~django_jobs.engine.shards`: sharded queues, each call sent to its shards (first in the bases).

Methods take plain values and return plain values; the job API (:mod:`django_jobs.tasks`)
builds on them. Job hashes are decoded by :mod:`django_jobs.engine.record`.
"""

from __future__ import annotations

from django_jobs.engine.control import WORKER_TTL, Control
from django_jobs.engine.cron import Cron
from django_jobs.engine.reads import Reads
from django_jobs.engine.relay import RELAY_BATCH, Relay
from django_jobs.engine.runner import MAX_BLOCK, SCRIPT_RETRIES
from django_jobs.engine.shards import Sharding
from django_jobs.engine.streams import MirrorGroupMissing, MirrorRead, Streams, stream_id_key
from django_jobs.engine.transitions import (
    PROMOTE_LIMIT,
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
    jobs_like,
)

__all__ = [
    "MAX_BLOCK",
    "PROMOTE_LIMIT",
    "RECOVER_LIMIT",
    "RELAY_BATCH",
    "SCRIPT_RETRIES",
    "WORKER_TTL",
    "Claimed",
    "Engine",
    "Enqueued",
    "FetchResult",
    "FlowJob",
    "Guard",
    "MirrorGroupMissing",
    "MirrorRead",
    "NewJob",
    "NewJobs",
    "Outcome",
    "Recovery",
    "jobs_like",
    "stream_id_key",
]


class Engine(Sharding, Relay, Reads, Control, Cron, Streams):
    """Redis access for one process: a client, the key layout and the registered scripts."""
