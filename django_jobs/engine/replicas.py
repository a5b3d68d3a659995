"""ENQUEUE_WAIT: an enqueue returns once replicas acknowledged it (Redis ``WAIT``), see docs/scaling.md.

Redis replicates asynchronously: a primary that dies loses the writes its replica had not
received yet, and the replica promoted in its place (Sentinel, Cluster) never saw them. With
ENQUEUE_WAIT, every enqueue call sends ``WAIT replicas timeout`` on the connection that ran it,
so it returns only once that many replicas hold the job (or the timeout passed, which is
logged: the job is enqueued on the primary but may be lost if the primary dies now).
"""

from __future__ import annotations

import logging
from typing import Any

logger = logging.getLogger("django_jobs.engine")

#: Scripts that create jobs: what ENQUEUE_WAIT waits for.
ENQUEUE_SCRIPTS = frozenset({"enqueue", "enqueue_guarded", "flow_enqueue", "flow_enqueue_part"})


def replica_wait(conn: Any, wait: tuple[int, int]) -> int:
    """Send ``WAIT`` on ``conn`` (the connection that just wrote); return how many replicas acknowledged."""
    conn.send_command("WAIT", *wait)
    return replica_acks(conn.read_response(), wait)


def replica_acks(reply: Any, wait: tuple[int, int]) -> int:
    """Log when fewer replicas than asked acknowledged within the timeout; return the count."""
    acked = int(reply)
    if acked < wait[0]:
        logger.warning(
            "ENQUEUE_WAIT: %d of %d replica(s) acknowledged the enqueue within %d ms; the job is on the primary "
            "but would be lost if it failed now.", acked, wait[0], wait[1],
        )
    return acked
