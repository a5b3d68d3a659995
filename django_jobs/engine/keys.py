"""Redis key names. The only module that formats them.

Every key of one queue carries the queue's hash tag, ``{prefix}:{queue}:...``, so each
script touches a single Redis Cluster slot.
"""

from __future__ import annotations

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

    #: The state ZSETs, in DESIGN.md order; a job is in exactly one of them.
    STATE_SETS = ("wait", "scheduled", "active", "completed", "failed", "cancelled")


#: The state ZSET (a :attr:`QueueKeys.STATE_SETS` name) that holds a job in each state
#: (``waiting_children`` has none yet: flows are not built).
STATE_TO_SET = {
    "waiting": "wait",
    "scheduled": "scheduled",
    "active": "active",
    "completed": "completed",
    "failed": "failed",
    "cancelled": "cancelled",
}


def workers_key(prefix: str) -> str:
    """Return the global hash of worker heartbeats (no hash tag: single-key ops only)."""
    return f"{prefix}:workers"


#: The consumer group of the database mirror on every queue's ``events`` stream
#: (django_jobs/mirror.py). Not a key name, but kept with them: it lives inside the stream.
MIRROR_GROUP = "djj-mirror"
