"""A worker frozen past its lease (SIGSTOP) wakes up and cannot overwrite the takeover's outcome."""

from __future__ import annotations

import os
import signal

import pytest

from django_jobs.engine.streams import expand_entry
from tests.redis_server import wait_until
from tests.testapp import jobs_chaos

pytestmark = pytest.mark.chaos


def test_a_worker_paused_past_its_lease_cannot_complete_the_job_another_worker_took_over(chaos, r, engine):
    first = chaos.start("--processes=1", "--threads=1", "--grace=5", ready=1)
    result = jobs_chaos.slow_pid.enqueue("x", 3.0)
    chaos.wait_ledger("start", ["x"])
    [paused] = chaos.pids_of("start", "x")
    os.kill(paused, signal.SIGSTOP)
    try:
        second = chaos.start("--processes=1", "--threads=1", "--grace=5", ready=1)
        [taker] = second.children()
        # The lease (2 s in the test settings) expires, the second worker recovers and runs the job.
        job = chaos.wait_state(result.id, "completed", timeout=20)
        assert job["r"] == str(taker)
        assert job["rec"] == "1"
    finally:
        os.kill(paused, signal.SIGCONT)
    # The paused run wakes, finishes its function, and its outcome is refused by the fence.
    wait_until(lambda: chaos.counts("end")["x"] == 2, 10, message="the paused run to finish")
    first.wait_output("lease lost", timeout=10)
    job = chaos.job(result.id)
    assert job["s"] == "completed"
    assert job["r"] == str(taker), "the stale worker overwrote the result"
    events = r.xrange(engine.keys("default").events)
    completed = [e for item in events for _, e in expand_entry(*item) if e["j"] == result.id and e["e"] == "completed"]
    assert len(completed) == 1
    assert first.stop() == 0
    assert second.stop() == 0
    assert chaos.counts("start")["x"] == 2, "one run per claim: the original and the takeover"
    chaos.check_invariants()
