"""A sharded queue served by real ``runworkers`` processes: no busy polling, every shard served."""

from __future__ import annotations

import time

import pytest

from tests.chaos.conftest import QUEUES, cpu_seconds
from tests.conftest import SHARDS

# On a Redis Cluster the shards live on different nodes: a worker blocks on one marker per shard.
pytestmark = [
    pytest.mark.chaos,
    pytest.mark.parametrize("topology", ["server", "cluster"], indirect=True),
    pytest.mark.usefixtures("sharded"),
]

#: The workers' settings get the same queue (tests/settings.py reads DJJ_SHARDS).
ENV = {"DJJ_SHARDS": str(SHARDS)}
#: How long the idle processes are measured, seconds (CPU time is counted in 10 ms ticks).
WINDOW = 5.0


def test_idle_workers_of_a_sharded_queue_use_less_than_one_percent_cpu(chaos):
    sup = chaos.start("--processes=2", "--threads=8", "--queues=default,hot", ready=2, env=ENV)
    pids = [sup.pid, *sup.children()]
    time.sleep(0.5)  # start-up work (imports, first heartbeats) is not measured
    before = {pid: cpu_seconds(pid) for pid in pids}
    started = time.monotonic()
    time.sleep(WINDOW)  # the measurement window itself, not a wait for some state
    elapsed = time.monotonic() - started
    usage = {pid: (cpu_seconds(pid) - before[pid]) / elapsed for pid in pids}
    assert all(share < 0.01 for share in usage.values()), f"CPU share per process: {usage}"
    assert sup.stop() == 0


def test_jobs_on_every_shard_wake_idle_workers_and_all_run_once(chaos):
    from django_jobs.engine import get_engine
    from tests.testapp.jobs_chaos import quick

    engine = get_engine()
    sup = chaos.start("--processes=2", "--threads=2", "--queues=hot", ready=2, env=ENV)
    tags = [f"s{i}" for i in range(40)]
    ids = [quick.using(queue_name="hot").enqueue(tag).id for tag in tags]
    assert {i.rpartition(".")[2] for i in ids} == {str(n) for n in range(SHARDS)}
    chaos.wait_ledger("end", tags)
    assert all(n == 1 for n in chaos.counts("end").values())
    assert sup.stop() == 0
    assert engine.counts("hot")["completed"] == len(tags)
    chaos.check_invariants()
    from tests.chaos.invariants import assert_invariants

    assert_invariants(chaos.r, chaos.prefix, [*QUEUES, *engine.shards("hot")])
