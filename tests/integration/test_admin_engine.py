"""The engine calls behind the admin's bulk actions: cancel_many, delete_jobs, retry_many, get_jobs.

Each against the real test Redis: return codes, events, replays, chunking, and the store's
invariants (every job in exactly one state set, no orphans) afterwards.
"""

from __future__ import annotations

import pytest

from django_jobs.testing import work_until_empty
from tests.chaos.invariants import invariant_violations
from tests.testapp.jobs import add, always_fails

# Every test also runs against a real Redis Cluster (tests/conftest.py).
pytestmark = pytest.mark.parametrize("topology", ["server", "cluster"], indirect=True)

QUEUES = ("default", "high", "low")


@pytest.fixture(autouse=True)
def invariants(engine, r, prefix):
    yield
    assert invariant_violations(r, prefix, QUEUES) == []


def events(engine, queue: str = "default") -> list[tuple[str, str]]:
    from django_jobs.engine.streams import expand_entry

    entries = engine.client.xrange(engine.keys(queue).events)
    return [(f["e"], f["j"]) for item in entries for _, f in expand_entry(*item)]


def test_cancel_many_cancels_waiting_and_scheduled_asks_running_and_skips_the_rest(engine):
    waiting = add.enqueue(1, 1).id
    scheduled = add.using(delay=3600).enqueue(1, 1).id
    running = add.enqueue(2, 2).id
    engine.claim("default", running, lease_ms=60_000, worker_id="w")
    ids = [waiting, scheduled, running, "missing"]
    assert engine.cancel_many("default", ids) == [1, 1, 2, -1]
    assert engine.counts("default") == {"waiting": 0, "scheduled": 0, "waiting_children": 0, "active": 1, "completed": 0, "failed": 0, "cancelled": 2}
    assert engine.get_job("default", running)["cx"] == "1"
    before = events(engine)
    assert engine.cancel_many("default", ids) == [0, 0, 2, -1]  # a replay: nothing written
    assert events(engine) == before
    assert ("cancelled", waiting) in before and ("cancel_requested", running) in before
    engine.client.delete(engine.keys("default").job(running), engine.keys("default").active)  # leave no lease behind


def test_delete_jobs_removes_hashes_and_set_members_except_running_ones(engine):
    done = add.enqueue(1, 1).id
    failed = always_fails.using(attempts=1).enqueue().id
    work_until_empty()
    scheduled = add.using(delay=3600).enqueue(1, 1).id
    running = add.enqueue(2, 2).id
    engine.claim("default", running, lease_ms=60_000, worker_id="w")
    assert engine.delete_jobs("default", [done, failed, scheduled, running]) == [1, 1, 1, 0]
    assert engine.get_jobs([("default", i) for i in (done, failed, scheduled, running)])[:3] == [{}, {}, {}]
    assert engine.counts("default") == {"waiting": 0, "scheduled": 0, "waiting_children": 0, "active": 1, "completed": 0, "failed": 0, "cancelled": 0}
    assert [e for e in events(engine) if e[0] == "deleted"] == [("deleted", done), ("deleted", failed), ("deleted", scheduled)]
    assert engine.delete_jobs("default", [done]) == [-1]  # a replay finds nothing
    engine.client.delete(engine.keys("default").job(running), engine.keys("default").active)


@pytest.mark.single_server("counts the pipelined calls of one server; a cluster sends one call per chunk")
def test_bulk_calls_send_one_script_call_per_chunk_in_one_round_trip(engine, monkeypatch):
    monkeypatch.setattr(type(engine), "BULK_CHUNK", 4)
    ids = [r.id for r in always_fails.using(attempts=1).enqueue_many([() for _ in range(10)])]
    work_until_empty()
    sent: list[int] = []
    from django_jobs.engine import runner

    real_packed, real_call = runner._packed, engine._scripts["enqueue"].__class__.__call__

    def packing(conn, command):  # one server: every call is packed by hiredis on the thread's own connection
        if command[0] == "EVALSHA":
            sent.append(len(command) - 3 - int(command[2]))
        return real_packed(conn, command)

    def counting(self, keys=None, args=None, client=None):  # a cluster: through redis-py's Script
        sent.append(len(args or []))
        return real_call(self, keys=keys, args=args, client=client)

    monkeypatch.setattr(runner, "_packed", packing)
    monkeypatch.setattr(engine._scripts["enqueue"].__class__, "__call__", counting)
    assert engine.retry_many("default", [*ids, "missing"]) == [1] * 10 + [-1]
    assert sent == [2 + 4, 2 + 4, 2 + 3]  # head (prefix, maxlen) + ids: 4, 4 and 3 ids
    assert engine.counts("default")["waiting"] == 10
    assert engine.retry_many("default", []) == [] and engine.cancel_many("default", []) == [] and engine.delete_jobs("high", []) == []
    assert engine.cancel_many("default", ids) == [1] * 10
