"""A worker process crashes (``os._exit``) at each step of the job protocol: nothing is lost.

The crash is armed with ``DJJ_FAULT_AT`` by the test settings ``tests.chaos.fault_settings``,
which install a crash hook in :mod:`django_jobs.worker.faults` at start-up, and fires
once, in the first worker process that reaches the step. Every test then checks the same
rules: every job completes once in Redis, with one attempt counted; a job runs again only
when its lease was recovered (``rec``); and the Redis invariants hold.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from django_jobs.worker.faults import EXIT_CODE
from tests.chaos.conftest import Chaos, Supervisor
from tests.testapp import jobs_chaos

pytestmark = pytest.mark.chaos


def crash_at(chaos: Chaos, tmp_path: Path, point: str, *, jobs: int, seconds: float) -> tuple[Supervisor, list, Path]:
    """Start 2 worker processes armed to crash once at ``point``; enqueue ``jobs`` slow jobs."""
    flag = tmp_path / "crashed"
    sup = chaos.start(
        "--processes=2", "--threads=2", "--grace=5", ready=2,
        env={"DJANGO_SETTINGS_MODULE": "tests.chaos.fault_settings", "DJJ_FAULT_AT": point, "DJJ_FAULT_ONCE": str(flag)},
    )
    results = jobs_chaos.slow.enqueue_many([(f"j{i}", seconds) for i in range(jobs)])
    return sup, results, flag


def finish(chaos: Chaos, sup: Supervisor, results: list, flag: Path) -> dict[str, dict[str, str]]:
    """Wait for every job; check the rules shared by all crash points; return the job hashes by tag."""
    for result in results:
        chaos.wait_state(result.id, "completed", timeout=40)
    assert flag.exists(), "the fault never fired"
    crashed = int(flag.read_text())
    sup.wait_output(f"Worker process {crashed} exited with {EXIT_CODE}", timeout=5)
    assert crashed not in chaos.wait_ready(sup, 2), "the crashed process was replaced"
    assert sup.stop() == 0
    starts, ends = chaos.counts("start"), chaos.counts("end")
    jobs = {f"j{i}": chaos.job(result.id) for i, result in enumerate(results)}
    for tag, job in jobs.items():
        runs = 1 + int(job.get("rec", 0))
        assert job["a"] == "1", f"{tag}: a crashed run must not count as an attempt: {job}"
        assert ends[tag] >= 1, f"{tag} completed without a finished run"
        assert starts[tag] <= runs, f"{tag} ran {starts[tag]} times with {runs - 1} recovery(ies): a duplicate without a fault"
    chaos.check_invariants()
    return jobs


def test_a_crash_after_fetch_before_running_loses_nothing_and_runs_nothing_twice(chaos, tmp_path):
    sup, results, flag = crash_at(chaos, tmp_path, "after_fetch", jobs=30, seconds=0.05)
    jobs = finish(chaos, sup, results, flag)
    # The claimed jobs never started in the crashed process: recovered, then run once.
    recovered = [tag for tag, job in jobs.items() if job.get("rec") == "1"]
    assert recovered, "the jobs claimed by the crashed fetch were recovered"
    assert set(chaos.counts("start").values()) == {1}
    assert set(chaos.counts("end").values()) == {1}


def test_a_crash_after_running_before_settling_reruns_only_the_unsettled_jobs(chaos, tmp_path):
    sup, results, flag = crash_at(chaos, tmp_path, "before_settle", jobs=30, seconds=0.05)
    jobs = finish(chaos, sup, results, flag)
    # The batch whose outcomes were never written ran twice (its effects happened, then recovery).
    twice = [tag for tag, count in chaos.counts("end").items() if count == 2]
    assert twice, "the unsettled batch ran again after recovery"
    assert all(jobs[tag]["rec"] == "1" for tag in twice)


def test_a_crash_after_settling_before_the_next_fetch_does_not_rerun_the_settled_jobs(chaos, tmp_path):
    sup, results, flag = crash_at(chaos, tmp_path, "after_settle", jobs=30, seconds=0.05)
    jobs = finish(chaos, sup, results, flag)
    crashed = {int(flag.read_text())}
    # Jobs the crashed process finished and settled stay completed: not recovered, not run again.
    settled = [tag for tag, job in jobs.items() if "rec" not in job and set(chaos.pids_of("end", tag)) & crashed]
    assert settled, "the crashed process settled at least one job before dying"
    assert all(chaos.counts("start")[tag] == 1 for tag in settled)


def test_a_crash_right_after_renewing_leases_reruns_the_running_jobs_once(chaos, tmp_path):
    # Jobs long enough for a renewal (every LEASE_SECONDS / 3 = 0.67 s) while they run.
    sup, results, flag = crash_at(chaos, tmp_path, "after_renew", jobs=6, seconds=1.0)
    jobs = finish(chaos, sup, results, flag)
    interrupted = [tag for tag, count in chaos.counts("start").items() if count == 2]
    assert interrupted, "the jobs running in the crashed process ran again"
    for tag in interrupted:
        assert jobs[tag]["rec"] == "1"
        assert chaos.counts("end")[tag] == 1, f"{tag}: the crashed run never finished; the takeover did"
