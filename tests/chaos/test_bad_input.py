"""Bad input: a payload naming no registered job, and bad ``runworkers`` arguments."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from django_jobs.engine.queue import NewJob
from tests.conftest import ROOT
from tests.redis_server import env_for
from tests.testapp import jobs_chaos

pytestmark = pytest.mark.chaos


def test_a_job_naming_a_missing_function_fails_clearly_and_the_worker_keeps_going(chaos):
    sup = chaos.start("--processes=1", "--threads=2", ready=1)
    [child] = sup.children()
    data = json.dumps({"v": 1, "n": "nope.missing", "a": [], "k": {}})
    assert chaos.engine.enqueue("default", [NewJob(id="missing-1", data=data)]) == [1]
    after = jobs_chaos.quick.enqueue_many([(f"q{i}",) for i in range(5)])

    job = chaos.wait_state("missing-1", "failed")
    [error] = json.loads(job["err"])
    assert "'nope.missing'" in error["traceback"]
    assert "no module registered" in error["traceback"]
    assert job["a"] == "1", "failed at once, without retries"
    for result in after:
        chaos.wait_state(result.id, "completed")
    assert sup.children() == [child]
    assert sup.stop() == 0
    assert "nope.missing" in sup.output, "the failure is logged"
    chaos.check_invariants()


def run_workers(server, prefix, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "django", "runworkers", *args], cwd=ROOT, env=env_for(server, prefix),
        capture_output=True, text=True, timeout=30,
    )


def test_unknown_queue_is_a_one_line_error(redis_server, prefix):
    done = run_workers(redis_server, prefix, "--queues=default,nope")
    assert done.returncode != 0
    lines = done.stderr.strip().splitlines()
    assert lines == ["CommandError: Unknown queue(s): 'nope'. Configured: default, high, low."]
    assert done.stdout == ""


@pytest.mark.parametrize(
    ("arg", "message"),
    [
        ("--processes=0", "argument --processes/-p: must be a whole number >= 1, not '0'"),
        ("--threads=x", "argument --threads/-t: must be a whole number >= 1, not 'x'"),
        ("--grace=-1", "CommandError: --grace must not be negative."),
    ],
)
def test_bad_numbers_are_refused_with_a_clear_message(redis_server, prefix, arg, message):
    done = run_workers(redis_server, prefix, arg)
    assert done.returncode != 0
    assert "Traceback" not in done.stderr
    assert message in done.stderr


def test_banner_shows_redis_target_queues_and_processes_times_threads(chaos, redis_server):
    sup = chaos.start("--processes=2", "--threads=3", "--queues=high,default", "--grace=7", ready=2)
    assert sup.lines[:5] == [
        "django_jobs workers",
        f"  redis:     {redis_server.url}",
        "  queues:    high, default",
        "  workers:   2 process(es) x 3 thread(s), grace 7 s",
        sup.lines[4],
    ]
    assert sup.lines[4].startswith("  jobs:      ") and sup.lines[4].endswith(" registered")
    assert sup.stop() == 0
