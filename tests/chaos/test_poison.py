"""A poison job that kills its worker process every time ends failed as worker_lost."""

from __future__ import annotations

import pytest

from tests.redis_server import wait_until
from tests.testapp import jobs_chaos

pytestmark = pytest.mark.chaos


def test_a_job_that_kills_its_process_every_time_fails_as_worker_lost_and_the_rest_run(chaos):
    sup = chaos.start("--processes=1", "--threads=2", "--grace=5", ready=1, env={"DJJ_MAX_RECOVERIES": "1"})
    poison = jobs_chaos.poison.enqueue("p")
    job = chaos.wait_state(poison.id, "failed", timeout=40)
    assert job["why"] == "worker_lost"
    # One log line per job and event, written by the worker that ran the recovery.
    sup.wait_output(f"Job {poison.id} stalled", timeout=10)
    sup.wait_output(f"Job {poison.id} failed: its worker was lost", timeout=10)
    assert chaos.counts("start")["p"] == 2, "one run, then one recovery, then failed"
    # The supervisor kept replacing the killed process, and the queue still works.
    chaos.wait_ready(sup, 1)
    after = jobs_chaos.quick.enqueue("after")
    chaos.wait_state(after.id, "completed", timeout=20)
    assert sup.alive()
    result = jobs_chaos.poison.get_result(poison.id)
    assert result.failure_reason == "worker_lost"
    assert result.errors[-1].exception_class_path == "django_jobs.exceptions.LeaseLost"
    wait_until(lambda: chaos.counts("end")["after"] == 1, 5)
    assert sup.stop() == 0
    chaos.check_invariants()
