"""SIGKILL a worker process or the supervisor in the middle of a job: nothing is lost."""

from __future__ import annotations

import os
import signal
import time

import pytest

from tests.chaos.conftest import pid_gone
from tests.redis_server import wait_until
from tests.testapp import jobs_chaos

pytestmark = pytest.mark.chaos


def test_killed_worker_process_is_restarted_and_its_job_recovered_while_the_batch_completes(chaos):
    # One slot per process: the process running the long job holds nothing else, so the
    # quick jobs must each run exactly once.
    sup = chaos.start("--processes=2", "--threads=1", "--grace=5", ready=2)
    long = jobs_chaos.slow.enqueue("long", 1.0)
    quick = jobs_chaos.quick.enqueue_many([(f"q{i}",) for i in range(50)])

    chaos.wait_ledger("start", ["long"])
    [victim] = chaos.pids_of("start", "long")
    assert victim in sup.children()

    os.kill(victim, signal.SIGKILL)

    chaos.wait_ledger("end", [f"q{i}" for i in range(50)])
    chaos.wait_ledger("end", ["long"], timeout=20)
    job = chaos.wait_state(long.id, "completed")
    assert job["rec"] == "1", "the killed run was recovered once"
    assert job["a"] == "1", "the killed run does not count as an attempt"
    # The supervisor replaced the dead process.
    children = chaos.wait_ready(sup, 2)
    assert victim not in children
    assert sup.alive()

    assert sup.stop() == 0
    assert chaos.counts("start")["long"] == 2
    assert chaos.counts("end")["long"] == 1
    assert victim not in chaos.pids_of("end", "long")
    ends = chaos.counts("end")
    assert all(ends[f"q{i}"] == 1 for i in range(50)), "a quick job ran twice without a fault"
    assert all(chaos.state(r.id) == "completed" for r in quick)
    chaos.check_invariants()


def test_killed_supervisor_takes_its_workers_down_and_their_jobs_go_back_to_waiting(chaos):
    sup = chaos.start("--processes=2", "--threads=1", "--grace=30", ready=2)
    children = sup.children()
    a = jobs_chaos.slow.enqueue("a", 2.0)
    b = jobs_chaos.slow.enqueue("b", 2.0)
    chaos.wait_ledger("start", ["a", "b"])
    assert set(chaos.pids_of("start", "a") + chaos.pids_of("start", "b")) == set(children)

    sup.signal(signal.SIGKILL)
    killed = time.monotonic()
    wait_until(lambda: all(pid_gone(pid) for pid in children), 5, message="orphaned workers to exit")
    # Released by the exiting workers, not recovered after the lease expired.
    for result in (a, b):
        job = chaos.wait_state(result.id, "waiting", timeout=5)
        assert job["a"] == "0"
        assert "rec" not in job
    assert time.monotonic() - killed < 5
    assert not chaos.counts("end"), "the jobs were interrupted, not finished"

    again = chaos.start("--processes=1", "--threads=2", "--grace=5")
    chaos.wait_ledger("end", ["a", "b"])
    for result in (a, b):
        assert chaos.wait_state(result.id, "completed")["a"] == "1"
    assert again.stop() == 0
    assert chaos.counts("start") == {"a": 2, "b": 2}
    assert chaos.counts("end") == {"a": 1, "b": 1}
    chaos.check_invariants()


def test_jobs_run_with_no_signal_blocked(chaos):
    # Subprocesses a job starts inherit its signal mask: the fork dance must not leak into it.
    sup = chaos.start("--processes=1", "--threads=1", ready=1)
    result = jobs_chaos.blocked_signals.enqueue()
    chaos.wait_state(result.id, "completed")
    assert sup.stop() == 0
    assert jobs_chaos.blocked_signals.get_result(result.id).return_value == []
