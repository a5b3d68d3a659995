"""Hard timeouts and isolated jobs, with real ``runworkers`` processes."""

from __future__ import annotations

import json
import signal

import pytest

from django_jobs.correlation import correlation_id
from tests.chaos.conftest import pid_gone
from tests.redis_server import wait_until
from tests.testapp import jobs_timeouts

pytestmark = pytest.mark.chaos


def errors(job: dict[str, str]) -> list[dict[str, str]]:
    return json.loads(job["err"])


def test_a_sync_job_past_its_timeout_is_retried_in_a_fresh_process_while_its_neighbours_finish_once(chaos):
    sup = chaos.start("--processes=1", "--threads=3", "--grace=5", ready=1)
    [first] = sup.children()
    others = [jobs_timeouts.steady.enqueue(f"o{i}", 1.0) for i in range(2)]
    stuck = jobs_timeouts.stuck.enqueue("stuck", 60.0)

    job = chaos.wait_state(stuck.id, "failed", timeout=30)
    assert [e["exception_class_path"] for e in errors(job)] == ["django_jobs.exceptions.JobTimeout"] * 2
    assert job["a"] == "2", "retried once (attempts=2), then failed"
    # Each attempt ran in its own process, and each of them was replaced.
    runs = chaos.pids_of("start", "stuck")
    assert len(runs) == 2 and runs[0] == first and runs[1] != first
    wait_until(lambda: all(pid_gone(pid) for pid in runs), 15, message="the processes of the stuck runs to exit")
    [fresh] = chaos.wait_ready(sup, 1)
    assert fresh not in runs
    sup.wait_output("passed its timeout and its thread cannot be stopped", count=2)
    sup.wait_output("exited after a job passed its timeout", count=2)

    # The neighbours of the first run finished in that process, once.
    for result in others:
        assert chaos.wait_state(result.id, "completed")["a"] == "1"
    assert chaos.counts("start") == {"o0": 1, "o1": 1, "stuck": 2}
    assert chaos.counts("end") == {"o0": 1, "o1": 1}
    assert set(chaos.pids_of("end", "o0") + chaos.pids_of("end", "o1")) == {first}
    assert sup.stop() == 0
    chaos.check_invariants()


def test_an_async_job_past_its_timeout_is_cancelled_and_its_process_goes_on(chaos):
    sup = chaos.start("--processes=1", "--threads=2", ready=1)
    [worker] = sup.children()
    result = jobs_timeouts.async_stuck.enqueue("a", 60.0)
    job = chaos.wait_state(result.id, "failed")
    assert [e["exception_class_path"] for e in errors(job)] == ["django_jobs.exceptions.JobTimeout"]
    after = jobs_timeouts.steady.enqueue("after", 0.0)
    chaos.wait_state(after.id, "completed")
    assert chaos.pids_of("end", "after") == [worker], "the same process runs the next job"
    assert sup.children() == [worker]
    assert chaos.counts("end") == {"after": 1}
    assert sup.stop() == 0
    chaos.check_invariants()


def test_an_isolated_job_past_its_timeout_kills_only_its_own_process(chaos):
    sup = chaos.start("--processes=1", "--threads=2", ready=1)
    [worker] = sup.children()
    neighbour = jobs_timeouts.steady.enqueue("neighbour", 1.5)
    isolated = jobs_timeouts.isolated_stuck.enqueue("iso", 60.0)

    job = chaos.wait_state(isolated.id, "failed", timeout=20)
    assert [e["exception_class_path"] for e in errors(job)] == ["django_jobs.exceptions.JobTimeout"] * 2
    runs = chaos.pids_of("start", "iso")
    assert len(set(runs)) == 2 and worker not in runs, "each attempt ran in a process of its own"
    assert all(pid_gone(pid) for pid in runs), "killed at the timeout"
    chaos.wait_state(neighbour.id, "completed")
    assert chaos.pids_of("end", "neighbour") == [worker]
    assert sup.children() == [worker], "the worker process was not replaced"
    assert chaos.counts("end") == {"neighbour": 1}
    assert sup.stop() == 0
    chaos.check_invariants()


def test_an_isolated_job_whose_process_dies_fails_with_the_reason_and_is_retried(chaos):
    sup = chaos.start("--processes=1", "--threads=1", ready=1)
    [worker] = sup.children()
    crash = jobs_timeouts.isolated_crash.enqueue("crash")
    job = chaos.wait_state(crash.id, "failed", timeout=20)
    errs = errors(job)
    assert [e["exception_class_path"] for e in errs] == ["django_jobs.exceptions.JobCrashed"] * 2
    assert "died before returning: exited with status 9" in errs[0]["traceback"]
    assert job["a"] == "2"
    runs = chaos.pids_of("start", "crash")
    assert len(set(runs)) == 2 and worker not in runs
    after = jobs_timeouts.steady.enqueue("after", 0.0)
    chaos.wait_state(after.id, "completed")
    assert sup.children() == [worker]
    assert sup.stop() == 0
    chaos.check_invariants()


def test_an_isolated_job_returns_its_value_or_its_exception_with_the_correlation_id_and_logging(chaos):
    # Buffered stdout, as in production: what the job prints must be flushed before its process exits.
    sup = chaos.start("--processes=1", "--threads=2", ready=1, env={"PYTHONUNBUFFERED": ""})
    [worker] = sup.children()
    with correlation_id("abc123"):
        info = jobs_timeouts.isolated_info.enqueue("info")
    fail = jobs_timeouts.isolated_fail.enqueue("fail")

    chaos.wait_state(info.id, "completed")
    value = jobs_timeouts.isolated_info.get_result(info.id).return_value
    assert value["ppid"] == worker and value["pid"] != worker
    assert value["correlation_id"] == "abc123"
    sup.wait_output("isolated job info says hello")
    sup.wait_output("isolated job info prints")

    job = chaos.wait_state(fail.id, "failed")
    [err] = errors(job)
    assert err["exception_class_path"] == "builtins.KeyError"
    assert "raise KeyError(tag)" in err["traceback"]
    assert chaos.counts("end") == {"info": 1, "fail": 1}
    assert sup.stop() == 0
    chaos.check_invariants()


def test_cancelling_a_running_isolated_job_kills_its_process(chaos):
    sup = chaos.start("--processes=1", "--threads=1", ready=1)
    [worker] = sup.children()
    result = jobs_timeouts.isolated_sleeper.enqueue("iso", 60.0)
    chaos.wait_ledger("start", ["iso"])
    [child] = chaos.pids_of("start", "iso")
    assert child != worker
    assert result.cancel() == "requested"
    job = chaos.wait_state(result.id, "cancelled", timeout=10)
    assert "Cancel" in errors(job)[-1]["exception_class_path"]
    wait_until(lambda: pid_gone(child), 5, message="the isolated process to be killed")
    assert sup.children() == [worker]
    assert chaos.counts("end") == {}
    assert sup.stop() == 0
    chaos.check_invariants()


def test_an_isolated_job_running_at_the_end_of_the_grace_period_is_killed_then_released(chaos):
    sup = chaos.start("--processes=1", "--threads=1", "--grace=0.5", ready=1)
    result = jobs_timeouts.isolated_sleeper.enqueue("iso", 60.0)
    chaos.wait_ledger("start", ["iso"])
    [child] = chaos.pids_of("start", "iso")
    assert sup.stop() == 0
    assert pid_gone(child)
    job = chaos.wait_state(result.id, "waiting", timeout=5)
    assert job["a"] == "0", "a released run does not count as an attempt"
    assert chaos.counts("end") == {}
    chaos.check_invariants()


def test_a_killed_supervisor_takes_down_its_workers_and_their_isolated_processes(chaos):
    sup = chaos.start("--processes=1", "--threads=2", "--grace=30", ready=1)
    [worker] = sup.children()
    iso = jobs_timeouts.isolated_sleeper.enqueue("iso", 60.0)
    plain = jobs_timeouts.steady.enqueue("plain", 60.0)
    chaos.wait_ledger("start", ["iso", "plain"])
    [child] = chaos.pids_of("start", "iso")

    sup.signal(signal.SIGKILL)
    wait_until(lambda: pid_gone(worker) and pid_gone(child), 5, message="the worker and its isolated process to exit")
    for result in (iso, plain):
        job = chaos.wait_state(result.id, "waiting", timeout=5)
        assert job["a"] == "0" and "rec" not in job, "released by the exiting worker, not recovered later"
    assert chaos.counts("end") == {}
    sup.wait_exit(5)
    chaos.check_invariants()


@pytest.mark.parametrize(
    ("how", "reason"),
    [("segfault", "killed by signal SIGSEGV"), ("oom", "killed by signal SIGKILL (often the out-of-memory killer)")],
)
def test_an_isolated_job_killed_by_a_signal_fails_with_how_it_died(chaos, how, reason):
    sup = chaos.start("--processes=1", "--threads=1", ready=1)
    [worker] = sup.children()
    result = jobs_timeouts.isolated_signal.enqueue(how, how)
    job = chaos.wait_state(result.id, "failed")
    [err] = errors(job)
    assert err["exception_class_path"] == "django_jobs.exceptions.JobCrashed"
    assert f"died before returning: {reason}." in err["traceback"]
    assert sup.children() == [worker], "the worker process is unharmed"
    assert sup.stop() == 0
    chaos.check_invariants()


def test_a_neighbour_still_running_when_the_grace_period_ends_is_released_and_runs_again_in_the_fresh_process(chaos):
    sup = chaos.start("--processes=1", "--threads=2", "--grace=1", ready=1)
    [first] = sup.children()
    neighbour = jobs_timeouts.steady.enqueue("neighbour", 4.0)
    chaos.wait_ledger("start", ["neighbour"])
    stuck = jobs_timeouts.stuck.using(attempts=1).enqueue("stuck", 60.0)

    assert chaos.wait_state(stuck.id, "failed")["a"] == "1"
    job = chaos.wait_state(neighbour.id, "completed", timeout=30)
    assert job["a"] == "1", "the released run does not count as an attempt"
    assert "rec" not in job, "released, not recovered after its lease expired"
    runs = chaos.pids_of("start", "neighbour")
    assert runs[0] == first and runs[1] != first
    assert chaos.pids_of("end", "neighbour") == [runs[1]], "the interrupted run never finished"
    assert sup.stop() == 0
    chaos.check_invariants()
