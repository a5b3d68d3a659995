"""Idle workers block on Redis instead of polling: they use almost no CPU."""

from __future__ import annotations

import time

import pytest

from tests.chaos.conftest import cpu_seconds

# On a Redis Cluster the three test queues live on different nodes: each worker blocks on one
# marker per queue (engine/cluster.py) instead of one BLPOP over all of them.
pytestmark = [pytest.mark.chaos, pytest.mark.parametrize("topology", ["server", "cluster"], indirect=True)]

#: How long the processes are measured, seconds (CPU time is counted in 10 ms ticks).
WINDOW = 5.0


def test_idle_workers_use_less_than_one_percent_cpu(chaos):
    sup = chaos.start("--processes=2", "--threads=8", ready=2)
    pids = [sup.pid, *sup.children()]
    # Let start-up work (imports, first heartbeats) finish before measuring.
    time.sleep(0.5)
    before = {pid: cpu_seconds(pid) for pid in pids}
    started = time.monotonic()
    time.sleep(WINDOW)  # the measurement window itself, not a wait for some state
    elapsed = time.monotonic() - started
    usage = {pid: (cpu_seconds(pid) - before[pid]) / elapsed for pid in pids}
    assert all(share < 0.01 for share in usage.values()), f"CPU share per process: {usage}"
    assert sorted([sup.pid, *sup.children()]) == sorted(pids)
    assert sup.stop() == 0
