"""Worker recycling (``--max-jobs-per-child``, ``--max-memory-per-child``) with real ``runworkers`` processes."""

from __future__ import annotations

from collections import Counter

import pytest

from tests.chaos.conftest import pid_gone
from tests.redis_server import wait_until
from tests.testapp import jobs_timeouts

pytestmark = pytest.mark.chaos

INFO = {"DJJ_LOG_LEVEL": "INFO"}


def test_max_jobs_per_child_replaces_each_process_after_that_many_jobs_and_runs_every_job_once(chaos):
    sup = chaos.start("--processes=1", "--threads=2", "--max-jobs-per-child=5", ready=1, env=INFO)
    [first] = sup.children()
    results = jobs_timeouts.steady.enqueue_many([(f"j{i}", 0.02) for i in range(23)])
    tags = [f"j{i}" for i in range(23)]

    chaos.wait_ledger("end", tags, timeout=60)
    for result in results:
        assert chaos.wait_state(result.id, "completed")["a"] == "1"
    assert chaos.counts("start") == Counter({tag: 1 for tag in tags})
    assert chaos.counts("end") == Counter({tag: 1 for tag in tags})
    per_process = Counter(int(row[1]) for row in chaos.ledger() if row[0] == "end")
    assert sorted(per_process.values()) == [3, 5, 5, 5, 5], per_process
    assert first in per_process
    sup.wait_output("recycling: it claimed 5 job(s), the max jobs per child", count=4)
    sup.wait_output("recycled after", count=4)
    assert "restarting" not in sup.output, "a recycled process is not a crash"
    for pid, count in per_process.items():
        if count == 5:
            wait_until(lambda pid=pid: pid_gone(pid), 10, message=f"recycled process {pid} to exit")
    assert sup.stop() == 0
    chaos.check_invariants()


def test_max_jobs_per_child_setting_is_used_when_the_option_is_not_given(chaos):
    sup = chaos.start("--processes=1", "--threads=1", ready=1, env={**INFO, "DJJ_MAX_JOBS_PER_CHILD": "2"})
    assert "recycle:   after 2 job(s)" in sup.output
    results = jobs_timeouts.steady.enqueue_many([(f"j{i}", 0.0) for i in range(4)])
    for result in results:
        chaos.wait_state(result.id, "completed")
    per_process = Counter(int(row[1]) for row in chaos.ledger() if row[0] == "end")
    assert sorted(per_process.values()) == [2, 2]
    assert sup.stop() == 0
    chaos.check_invariants()


def test_max_memory_per_child_recycles_a_process_after_a_job_that_allocated_memory(chaos):
    # A worker starts at about 50 MB; the hog keeps 150 MB alive in its process.
    sup = chaos.start("--processes=1", "--threads=2", "--max-memory-per-child=120", ready=1, env=INFO)
    [first] = sup.children()
    running = jobs_timeouts.steady.enqueue("running", 2.0)
    chaos.wait_ledger("start", ["running"])
    hog = jobs_timeouts.hog.enqueue("hog", 150)

    chaos.wait_state(hog.id, "completed")
    sup.wait_output("recycling: it uses", timeout=10)
    assert "over the max memory per child of 120 MB" in sup.output
    # The job still running when the limit was hit finished there, once.
    chaos.wait_state(running.id, "completed")
    assert chaos.pids_of("end", "running") == [first]
    wait_until(lambda: pid_gone(first), 15, message="the recycled process to exit")
    [fresh] = chaos.wait_ready(sup, 1)
    assert fresh != first
    sup.wait_output("recycled after")

    after = jobs_timeouts.steady.enqueue("after", 0.0)
    chaos.wait_state(after.id, "completed")
    assert chaos.pids_of("end", "after") == [fresh]
    assert chaos.counts("start") == {"running": 1, "after": 1}
    assert chaos.counts("end") == {"running": 1, "hog": 1, "after": 1}
    assert sup.stop() == 0
    chaos.check_invariants()


def test_a_memory_limit_below_the_size_of_a_fresh_process_warns_instead_of_recycling_in_a_loop(chaos):
    sup = chaos.start("--processes=1", "--threads=1", "--max-memory-per-child=1", ready=1, env=INFO)
    [worker] = sup.children()
    sup.wait_output("before running any job, over the max memory per child of 1 MB")
    assert "recycling" not in sup.output
    # Once it has run a job, a fresh process does help: it is recycled after that job.
    result = jobs_timeouts.steady.enqueue("one", 0.0)
    chaos.wait_state(result.id, "completed")
    sup.wait_output("recycled after")
    wait_until(lambda: pid_gone(worker), 10, message="the recycled process to exit")
    assert chaos.counts("end") == {"one": 1}
    assert sup.stop() == 0
    chaos.check_invariants()


def test_a_sigterm_while_a_process_drains_for_recycling_is_a_clean_shutdown(chaos):
    sup = chaos.start("--processes=1", "--threads=2", "--max-jobs-per-child=2", "--grace=10", ready=1, env=INFO)
    [worker] = sup.children()
    # Jobs long enough that a loaded machine still sends the SIGTERM while they run.
    results = jobs_timeouts.steady.enqueue_many([("a", 5.0), ("b", 5.0), ("c", 0.0)])
    chaos.wait_ledger("start", ["a", "b"])
    sup.wait_output("recycling: it claimed 2 job(s)")
    assert sup.stop() == 0, "the jobs finished within the grace period"
    assert pid_gone(worker)
    assert "recycled after" not in sup.output, "stopping: not replaced"
    assert [chaos.state(r.id) for r in results] == ["completed", "completed", "waiting"]
    assert chaos.counts("end") == {"a": 1, "b": 1}
    chaos.check_invariants()
