"""SIGTERM the supervisor: running jobs finish within the grace period or go back to waiting."""

from __future__ import annotations

import os
import signal
import time

import pytest

from tests.chaos.conftest import pid_gone
from tests.testapp import jobs_chaos

pytestmark = pytest.mark.chaos

#: Show the workers' INFO lines (shutdown steps) so tests can wait on them.
VERBOSE = {"DJJ_LOG_LEVEL": "INFO"}


def test_sigterm_lets_a_running_job_finish_and_leaves_the_rest_waiting(chaos):
    sup = chaos.start("--processes=1", "--threads=1", "--grace=10", ready=1, env=VERBOSE)
    # Longer than the 2 s lease: the lease must still be renewed while the worker stops.
    long = jobs_chaos.slow.enqueue("long", 3.0)
    later = jobs_chaos.quick.enqueue_many([(f"later{i}",) for i in range(5)])
    chaos.wait_ledger("start", ["long"])

    sup.signal(signal.SIGTERM)
    signalled = time.monotonic()
    sup.wait_output("stopping: finishing running jobs")
    # Any supervisor may run recovery at any time: a stopping worker's job must not look stalled.
    recovered = []
    while sup.alive() and time.monotonic() - signalled < 10:
        recovered.append(chaos.engine.recover("default"))
        time.sleep(0.2)
    assert sup.wait_exit(timeout=10) == 0
    assert time.monotonic() - signalled < 10
    assert all(pair == (0, 0) for pair in recovered), f"the running job's lease expired: {recovered}"

    assert chaos.state(long.id) == "completed"
    assert chaos.counts("start") == {"long": 1}
    assert chaos.counts("end") == {"long": 1}
    for result in later:
        job = chaos.job(result.id)
        assert job["s"] == "waiting", "a job that never started must stay waiting"
        assert job.get("a", "0") == "0"
    chaos.check_invariants()


@pytest.mark.parametrize("job", [jobs_chaos.slow, jobs_chaos.slow_async], ids=["sync", "async"])
def test_sigterm_with_a_short_grace_releases_the_running_job_at_the_deadline(chaos, job):
    sup = chaos.start("--processes=1", "--threads=1", "--grace=1", ready=1, env=VERBOSE)
    long = job.enqueue("long", 3.0)
    chaos.wait_ledger("start", ["long"])

    sup.signal(signal.SIGTERM)
    signalled = time.monotonic()
    assert sup.wait_exit(timeout=10) == 0
    took = time.monotonic() - signalled
    assert 1.0 <= took < 3.5, f"exited {took:.2f} s after SIGTERM with --grace=1"
    assert "released 1 unfinished job(s)" in sup.output

    job = chaos.job(long.id)
    assert job["s"] == "waiting"
    assert job.get("a", "0") == "0", "a released run is not an attempt"
    assert chaos.counts("end") == {}

    again = chaos.start("--processes=1", "--threads=1", "--grace=10")
    chaos.wait_ledger("end", ["long"])
    assert chaos.wait_state(long.id, "completed")["a"] == "1"
    assert again.stop() == 0
    assert chaos.counts("start") == {"long": 2}
    assert chaos.counts("end") == {"long": 1}
    chaos.check_invariants()


def test_second_sigterm_releases_running_jobs_at_once(chaos):
    sup = chaos.start("--processes=2", "--threads=2", "--grace=30", ready=2, env=VERBOSE)
    longs = jobs_chaos.slow.enqueue_many([(f"long{i}", 10.0) for i in range(3)])
    chaos.wait_ledger("start", [f"long{i}" for i in range(3)])

    sup.signal(signal.SIGTERM)
    signalled = time.monotonic()
    sup.wait_output("stopping: finishing running jobs", count=2)
    sup.signal(signal.SIGTERM)
    assert sup.wait_exit(timeout=10) == 0
    took = time.monotonic() - signalled
    assert took < 3, f"exited {took:.2f} s after the first SIGTERM (grace 30)"

    for result in longs:
        job = chaos.job(result.id)
        assert job["s"] == "waiting"
        assert job.get("a", "0") == "0"
    assert chaos.counts("start") == {f"long{i}": 1 for i in range(3)}
    assert chaos.counts("end") == {}
    chaos.check_invariants()


def test_sigint_stops_like_sigterm(chaos):
    sup = chaos.start("--processes=1", "--threads=1", "--grace=10", ready=1)
    job = jobs_chaos.slow.enqueue("long", 0.5)
    chaos.wait_ledger("start", ["long"])
    sup.signal(signal.SIGINT)
    assert sup.wait_exit(timeout=10) == 0
    assert chaos.state(job.id) == "completed"
    chaos.check_invariants()


def test_sigterm_to_the_whole_process_group_is_one_graceful_stop(chaos):
    # systemd (KillMode=control-group) and some process managers signal every process:
    # each worker then gets SIGTERM twice (directly and from the supervisor).
    sup = chaos.start("--processes=2", "--threads=1", "--grace=10", ready=2, env=VERBOSE)
    longs = jobs_chaos.slow.enqueue_many([("a", 1.5), ("b", 1.5)])
    chaos.wait_ledger("start", ["a", "b"])

    os.killpg(sup.pid, signal.SIGTERM)
    assert sup.wait_exit(timeout=10) == 0
    assert chaos.counts("end") == {"a": 1, "b": 1}, "the running jobs finish instead of being released"
    assert all(chaos.state(result.id) == "completed" for result in longs)
    assert "releasing running jobs now" not in sup.output
    chaos.check_invariants()


def test_sigterm_right_after_start_stops_cleanly(chaos):
    sup = chaos.start("--processes=2", "--threads=1", "--grace=5")
    # The worker processes are being forked and set up their own signal handling now.
    sup.wait_output("  jobs:")
    sup.signal(signal.SIGTERM)
    assert sup.wait_exit(timeout=10) == 0
    assert "Traceback" not in sup.output
    assert not chaos.engine.workers(), "every worker that started forgot its heartbeat"


def test_a_stuck_worker_is_killed_after_the_grace_period_and_its_job_recovered(chaos):
    sup = chaos.start("--processes=1", "--threads=1", "--grace=1", ready=1, env=VERBOSE)
    long = jobs_chaos.slow.enqueue("long", 1.0)
    chaos.wait_ledger("start", ["long"])
    [child] = sup.children()
    os.kill(child, signal.SIGSTOP)  # frozen: handles no signal, renews no lease

    sup.signal(signal.SIGTERM)
    signalled = time.monotonic()
    assert sup.wait_exit(timeout=15) == 1, "a killed worker is an unclean exit"
    took = time.monotonic() - signalled
    assert took < 1 + 5 + 4, f"the supervisor took {took:.1f} s to give up on the stuck worker"
    assert "Killing 1 worker process(es)" in sup.output
    assert pid_gone(child)

    again = chaos.start("--processes=1", "--threads=1")
    chaos.wait_ledger("end", ["long"])
    job = chaos.wait_state(long.id, "completed")
    assert job["rec"] == "1"
    assert again.stop() == 0
    chaos.check_invariants()


def test_a_job_past_its_timeout_does_not_hold_up_the_shutdown(chaos):
    sup = chaos.start("--processes=1", "--threads=2", "--grace=10", ready=1)
    stuck = jobs_chaos.overrun.enqueue("stuck", 6.0)
    job = chaos.wait_state(stuck.id, "failed")
    assert "JobTimeout" in job["err"]

    sup.signal(signal.SIGTERM)
    signalled = time.monotonic()
    assert sup.wait_exit(timeout=10) == 0
    took = time.monotonic() - signalled
    assert took < 3, f"shutdown waited {took:.1f} s for a job that had already timed out"
    assert chaos.counts("end") == {}
    chaos.check_invariants()
