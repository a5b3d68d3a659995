"""``manage.py jobs``: every subcommand against a real Redis, and its error cases."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import time

import pytest
from django.core.management import CommandError, call_command

from django_jobs.management.commands import jobs as jobs_command
from django_jobs.testing import immediate, run_job
from tests.conftest import ROOT
from tests.redis_server import env_for
from tests.testapp.jobs import add, always_fails, echo


def jobs(*args: str) -> tuple[str, str]:
    out, err = io.StringIO(), io.StringIO()
    call_command("jobs", *args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def jobs_json(*args: str) -> object:
    return json.loads(jobs(*args, "--json")[0])


def run_cli(redis_server, prefix, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "django", "jobs", *args], cwd=ROOT, env=env_for(redis_server, prefix, **env),
        capture_output=True, text=True, timeout=60,
    )


def failed_jobs(count: int) -> list[str]:
    with immediate():
        return [always_fails.enqueue().id for _ in range(count)]


def completed_jobs(count: int) -> list[str]:
    with immediate():
        return [add.enqueue(i, i).id for i in range(count)]


# -- stats -------------------------------------------------------------------------------------


def test_stats_counts_jobs_by_state_with_throughput_of_the_last_minute(engine):
    completed_jobs(3)
    failed_jobs(1)
    add.enqueue(1, 1)
    echo.using(delay=60).enqueue("later")

    stats = jobs_json("stats")
    assert stats["default"] == {
        "waiting": 1, "scheduled": 0, "active": 0, "completed": 3, "failed": 1, "cancelled": 0, "waiting_children": 0, "paused": False,
        "completed_last_minute": 3, "failed_last_minute": 1, "oldest_waiting_seconds": stats["default"]["oldest_waiting_seconds"],
        # No mirror ran: every event of the stream is unread (3 per completed job, 5 for the
        # failed one's two attempts, 1 waiting).
        "mirror_behind_events": 15, "mirror_lag_seconds": stats["default"]["mirror_lag_seconds"],
        "mirror_unrecorded_jobs": 0, "mirror_lost_jobs": 0,
    }
    assert 0 <= stats["default"]["oldest_waiting_seconds"] < 10
    assert 0 <= stats["default"]["mirror_lag_seconds"] < 60
    assert stats["high"]["scheduled"] == 1 and stats["high"]["oldest_waiting_seconds"] is None
    text, _ = jobs("stats", "default")
    header, rule, row = text.splitlines()
    assert header.split()[:4] == ["queue", "paused", "waiting", "scheduled"]
    assert row.split()[:8] == ["default", "no", "1", "0", "0", "3", "1", "0"]


def test_stats_reports_the_oldest_waiting_job_whatever_its_priority(engine, r):
    old = add.using(priority=-50).enqueue(1, 1)
    add.using(priority=50).enqueue(2, 2)
    add.enqueue(3, 3)
    now_ms = engine.server_time_ms()
    r.hset(engine.keys("default").job(old.id), "e", now_ms - 300_000)  # pretend it waits for 5 minutes

    age = jobs_json("stats", "default")["default"]["oldest_waiting_seconds"]
    assert 300 <= age < 310
    assert "5.0 min" in jobs("stats", "default")[0]


def test_stats_shows_a_paused_queue(engine):
    jobs("pause", "low")
    assert jobs_json("stats", "low")["low"]["paused"] is True
    jobs("resume", "low")
    assert jobs_json("stats", "low")["low"]["paused"] is False


# -- list and show -----------------------------------------------------------------------------


def test_list_pages_through_waiting_jobs_in_the_order_they_will_run(engine):
    ids = [r.id for r in add.enqueue_many([(i, i) for i in range(25)])]

    page = jobs_json("list", "default", "--page", "2", "--per-page", "10")
    assert (page["total"], page["page"], page["pages"], page["state"]) == (25, 2, 3, "waiting")
    assert [j["id"] for j in page["jobs"]] == ids[10:20]
    assert page["jobs"][0]["name"] == add.module_path
    text, _ = jobs("list", "default", "--page", "3", "--per-page", "10")
    assert ids[24] in text and ids[0] not in text
    assert "page 3 of 3, 25 waiting job(s) in 'default'" in text
    assert "No waiting jobs in 'default' on page 4 of 3" in jobs("list", "default", "--page", "4", "--per-page", "10")[0]


def test_list_shows_failed_jobs_newest_first(engine):
    ids = failed_jobs(3)

    listed = jobs_json("list", "default", "--state", "failed")
    assert [j["id"] for j in listed["jobs"]] == ids[::-1]
    assert {j["state"] for j in listed["jobs"]} == {"failed"} and listed["jobs"][0]["attempts"] == 2


def test_show_prints_a_job_with_its_errors_and_last_traceback(engine):
    [job_id] = failed_jobs(1)

    detail = jobs_json("show", job_id)
    assert (detail["id"], detail["queue"], detail["state"], detail["attempts"]) == (job_id, "default", "failed", 2)
    assert [e["exception_class_path"] for e in detail["errors"]] == ["builtins.ValueError"] * 2
    text, _ = jobs("show", job_id)
    assert f"id:                {job_id}" in text
    assert "error 2:" in text and "ValueError: this job always fails" in text


def test_show_prints_a_completed_jobs_result(engine):
    [job_id] = completed_jobs(1)
    detail = jobs_json("show", job_id)
    assert detail["result"] == 0 and detail["args"] == [0, 0] and detail["state"] == "completed"


# -- retry -------------------------------------------------------------------------------------


def test_retry_puts_a_failed_job_back_to_waiting_with_its_attempts_reset(engine):
    [job_id] = failed_jobs(1)

    out, _ = jobs("retry", job_id)
    assert f"Job {job_id} is waiting again in 'default'." in out
    result = always_fails.get_result(job_id)
    assert (result.state, result.attempts, result.errors) == ("waiting", 0, [])
    last_event = engine.client.xrevrange(engine.keys("default").events, count=1)[0][1]
    assert last_event == {"e": "waiting", "j": job_id, "why": "retried"}
    assert engine.client.llen(engine.keys("default").marker) == 1  # a worker is woken
    assert run_job("default", job_id) == "failed"
    assert always_fails.get_result(job_id).attempts == 2  # two fresh attempts


def test_retry_refuses_a_job_that_did_not_fail(engine):
    [job_id] = completed_jobs(1)
    with pytest.raises(CommandError, match=r"is 'completed'; only failed or cancelled jobs can be retried"):
        jobs("retry", job_id)


def test_retry_failed_retries_every_failed_job_of_a_queue_in_batches(engine, monkeypatch):
    monkeypatch.setattr(jobs_command, "BATCH", 2)
    ids = failed_jobs(5)

    out, err = jobs("retry", "--failed", "default", "--yes")
    assert "Retried 5 failed job(s) of 'default'." in out
    assert err.split() == ["retried", "2/5", "retried", "4/5", "retried", "5/5"]
    assert engine.counts("default")["failed"] == 0 and engine.counts("default")["waiting"] == 5
    assert {always_fails.get_result(i).state for i in ids} == {"waiting"}


def test_retry_failed_asks_for_confirmation(engine, monkeypatch):
    failed_jobs(2)
    with pytest.raises(CommandError, match="pass --yes"):
        jobs("retry", "--failed", "default")  # no terminal to ask on
    monkeypatch.setattr(sys.stdin, "isatty", lambda: True, raising=False)
    answers = iter(["n", "y"])
    monkeypatch.setattr("builtins.input", lambda prompt: next(answers))
    with pytest.raises(CommandError, match="Aborted; nothing changed."):
        jobs("retry", "--failed", "default")
    assert engine.counts("default")["failed"] == 2
    assert jobs_json("retry", "--failed", "default") == {"queue": "default", "retried": 2}


# -- cancel, pause, resume -----------------------------------------------------------------------


def test_cancel_cancels_a_waiting_job_and_reports_a_finished_one(engine):
    waiting = add.enqueue(1, 1)
    [done] = completed_jobs(1)

    assert jobs_json("cancel", waiting.id, "--yes") == {"id": waiting.id, "queue": "default", "result": "cancelled"}
    assert add.get_result(waiting.id).state == "cancelled"
    out, _ = jobs("cancel", done, "--yes")
    assert "had already finished (completed); nothing changed." in out
    with pytest.raises(CommandError, match="pass --yes"):
        jobs("cancel", add.enqueue(2, 2).id)


def test_cancel_queue_selects_flow_parents_waiting_for_their_children(engine):
    from django_jobs.flows import Flow
    from tests.testapp import jobs_flows as jf

    flow = Flow(jf.gather.s("p"), children=[jf.value.s(1), jf.value.s(2)]).enqueue()  # no worker: the parent waits
    assert engine.get_job("default", flow.id)["s"] == "waiting_children"
    out = jobs_json("cancel", "--queue", "default", "--state", "waiting_children", "--yes")
    assert out == {"queue": "default", "cancelled": 1, "requested": 0, "finished": 0}
    assert engine.get_job("default", flow.id)["s"] == "cancelled"
    assert all(engine.get_job("default", child.id)["s"] == "cancelled" for child in flow.children)


def test_pause_and_resume_a_queue(engine):
    out, _ = jobs("pause", "high")
    assert "Queue 'high' is paused" in out and engine.is_paused("high")
    out, _ = jobs("resume", "high")
    assert "Queue 'high' is running again." in out and not engine.is_paused("high")


# -- purge -------------------------------------------------------------------------------------


def test_purge_deletes_the_finished_jobs_of_one_state_with_progress(engine, r, monkeypatch):
    monkeypatch.setattr(jobs_command, "BATCH", 2)
    done = completed_jobs(3)
    [failed] = failed_jobs(1)

    out, err = jobs("purge", "default", "--state", "completed", "--yes")
    assert "Deleted 3 completed job(s) of 'default'." in out
    assert err.split() == ["deleted", "2/3", "deleted", "3/3"]
    assert engine.counts("default")["completed"] == 0 and engine.counts("default")["failed"] == 1
    assert [r.exists(engine.keys("default").job(i)) for i in done] == [0, 0, 0]
    assert r.exists(engine.keys("default").job(failed)) == 1
    assert jobs_json("purge", "default", "--state", "completed") == {"queue": "default", "state": "completed", "deleted": 0}


def test_purge_asks_for_confirmation_and_refuses_unfinished_states(engine):
    completed_jobs(1)
    with pytest.raises(CommandError, match="pass --yes"):
        jobs("purge", "default", "--state", "completed")
    assert engine.counts("default")["completed"] == 1
    with pytest.raises(CommandError, match="invalid choice: 'waiting'"):
        jobs("purge", "default", "--state", "waiting", "--yes")


# -- workers -----------------------------------------------------------------------------------


def test_workers_lists_live_workers(engine):
    assert jobs("workers")[0].strip() == "No live workers."
    engine.heartbeat("host-a:42:abcdef", {"host": "host-a", "pid": 42, "queues": ["default", "high"], "threads": 8,
                                          "running": 3, "processed": 120, "started": time.time() - 90})

    listed = jobs_json("workers")
    assert listed["host-a:42:abcdef"]["processed"] == 120
    header, _, row = jobs("workers")[0].splitlines()
    assert row.split()[:7] == ["host-a:42:abcdef", "host-a", "42", "default,high", "8", "3", "120"]
    assert "1.5 min" in row


# -- errors: one clear line and a non-zero exit --------------------------------------------------


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("list", "nope"), "CommandError: Unknown queue 'nope'. Configured: default, high, low."),
        (("show", "0123abc"), "CommandError: No job '0123abc' in queues default, high, low (it may have been trimmed)."),
        (("retry", "--failed", "nope", "--yes"), "CommandError: Unknown queue 'nope'. Configured: default, high, low."),
    ],
)
def test_errors_are_one_clear_line_and_a_non_zero_exit(redis_server, prefix, args, message):
    proc = run_cli(redis_server, prefix, *args)
    assert proc.returncode == 1
    assert proc.stderr.strip() == message
    assert proc.stdout == ""


def test_an_unreachable_redis_is_one_clear_line_not_a_traceback(redis_server, prefix):
    proc = run_cli(redis_server, prefix, "stats", DJJ_REDIS_URL="redis://127.0.0.1:1/0")
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("CommandError: Cannot reach Redis at redis://127.0.0.1:1/0")
    assert "Traceback" not in proc.stderr


def test_the_command_works_from_the_shell_with_json_output(redis_server, prefix, engine):
    completed_jobs(2)
    proc = run_cli(redis_server, prefix, "stats", "default", "--json")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["default"]["completed"] == 2


# -- the engine operations behind the command ---------------------------------------------------


def test_the_retry_script_reports_unknown_and_unfinished_jobs_and_is_replay_safe(engine):
    [failed] = failed_jobs(1)
    waiting = add.enqueue(1, 1).id

    assert engine.retry("default", [failed, waiting, "missing"]) == [1, 0, -1]
    assert engine.retry("default", [failed]) == [0]  # a replay: already waiting, nothing written
    assert engine.counts("default")["waiting"] == 2
    events = [f["e"] for _, f in engine.client.xrange(engine.keys("default").events)]
    assert events.count("waiting") == 3  # two enqueues and one retry: the replay emitted nothing


def test_the_retry_script_also_revives_a_cancelled_job_at_the_back_of_its_line(engine):
    first = add.enqueue(1, 1)
    assert first.cancel() == "cancelled"
    second = add.enqueue(2, 2)

    assert engine.retry("default", [first.id]) == [1]
    total, page = engine.list_jobs("default", "waiting")
    assert total == 2 and [job_id for job_id, _ in page] == [second.id, first.id]


def test_the_purge_script_deletes_in_bounded_batches_oldest_first(engine, r):
    ids = completed_jobs(5)

    assert engine.purge("default", "completed", limit=2) == 2
    assert [bool(r.exists(engine.keys("default").job(i))) for i in ids] == [False, False, True, True, True]
    assert engine.purge("default", "completed", limit=10) == 3
    assert engine.purge("default", "completed", limit=10) == 0
    with pytest.raises(ValueError, match="Only finished jobs can be purged"):
        engine.purge("default", "waiting")


def test_the_claim_script_takes_a_scheduled_job_out_of_line(engine):
    later = add.using(delay=3600).enqueue(1, 1)

    claimed = engine.claim("default", later.id, lease_ms=10_000, worker_id="w:1:abc")
    assert claimed is not None and claimed.attempt == 1 and claimed.id == later.id
    counts = engine.counts("default")
    assert (counts["scheduled"], counts["active"]) == (0, 1)
    assert engine.claim("default", later.id, lease_ms=10_000, worker_id="w:1:abc") is None  # already active
    assert add.get_result(later.id).state == "active"
