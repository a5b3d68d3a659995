"""Connections dropped again and again (CLIENT KILL) under load: every job completes, none is lost."""

from __future__ import annotations

import time

import pytest

from tests.testapp import jobs_chaos

pytestmark = pytest.mark.chaos


def test_jobs_complete_while_every_connection_is_killed_every_100_ms(chaos, r):
    sup = chaos.start("--processes=2", "--threads=4", ready=2)
    children = sorted(sup.children())
    tags = [f"k{i}" for i in range(400)]
    results = []
    kills = 0
    deadline = time.monotonic() + 3.0
    i = 0
    while time.monotonic() < deadline:
        # Keep enqueueing while connections die: the enqueue path reconnects too.
        if i < len(tags):
            results += jobs_chaos.slow.enqueue_many([(tag, 0.01) for tag in tags[i : i + 40]])
            i += 40
        kills += int(r.execute_command("CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes"))
        time.sleep(0.1)
    assert kills > 20, "the storm really dropped connections"
    assert len(results) == len(tags)
    for result in results:
        chaos.wait_state(result.id, "completed", timeout=30)
    assert sup.alive()
    assert sorted(sup.children()) == children, "no worker process exited"
    ends = chaos.counts("end")
    assert set(ends) == set(tags), "every job ran"
    # A dropped reply is replayed (fetch, settle) or recovered after its lease: no job runs twice.
    assert max(ends.values()) == 1, {t: n for t, n in ends.items() if n > 1}
    assert sup.stop() == 0
    chaos.check_invariants()
