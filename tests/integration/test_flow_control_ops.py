"""Pause and resume all queues, bulk cancel and retry by filter: code API and ``manage.py jobs``."""

from __future__ import annotations

import io
import json

import pytest
from django.core.management import CommandError, call_command

from django_jobs import InvalidJob
from django_jobs.engine import get_engine
from django_jobs.limits import cancel_jobs, pause_queues, resume_queues, retry_jobs
from tests.testapp import jobs_limits
from tests.testapp.jobs import add

# Every test also runs against a real Redis Cluster (tests/conftest.py).
pytestmark = pytest.mark.parametrize("topology", ["server", "cluster"], indirect=True)


def jobs_json(*args: str) -> object:
    out = io.StringIO()
    call_command("jobs", *args, "--json", stdout=out)
    return json.loads(out.getvalue())


def test_pausing_all_queues_stops_every_queue_and_enqueue_still_works(work):
    assert pause_queues() == ["default", "high", "low"]
    engine = get_engine()
    assert all(engine.is_paused(q) for q in ("default", "high", "low"))
    result = add.enqueue(1, 2)
    fetched = engine.fetch("default", 5, lease_ms=10_000, worker_id="w")
    assert fetched.paused and fetched.jobs == []
    assert resume_queues() == ["default", "high", "low"]
    assert not any(engine.is_paused(q) for q in ("default", "high", "low"))
    work()
    result.refresh()
    assert result.return_value == 3


def test_manage_py_jobs_pause_and_resume_all():
    assert jobs_json("pause", "--all") == {"queues": ["default", "high", "low"], "paused": True}
    assert get_engine().is_paused("low")
    assert jobs_json("resume", "--all") == {"queues": ["default", "high", "low"], "paused": False}
    assert not get_engine().is_paused("low")
    with pytest.raises(CommandError):
        call_command("jobs", "pause", "default", "--all", stdout=io.StringIO(), stderr=io.StringIO())


def test_bulk_cancel_by_queue_state_and_job_name():
    adds = [add.enqueue(i, i) for i in range(3)]
    later = add.using(delay=60).enqueue(9, 9)
    others = [jobs_limits.noop.enqueue(f"n{i}") for i in range(2)]
    assert cancel_jobs("default", name=add.module_path) == {"cancelled": 4, "requested": 0, "finished": 0}
    for r in [*adds, later]:
        r.refresh()
        assert r.state == "cancelled"
    assert get_engine().counts("default")["waiting"] == 2
    assert jobs_json("cancel", "--queue", "default", "--state", "waiting", "--yes") == {
        "queue": "default", "cancelled": 2, "requested": 0, "finished": 0,
    }
    assert get_engine().counts("default")["cancelled"] == 6
    # ...and they can all be retried by filter.
    assert retry_jobs("default", states=("cancelled",), name=jobs_limits.noop.module_path) == 2
    assert [r.refresh() or r.state for r in others] == ["waiting", "waiting"]
    cancel_jobs("default")


def test_bulk_actions_refuse_bad_input():
    with pytest.raises(InvalidJob, match="'completed'"):
        cancel_jobs("default", states=("completed",))
    with pytest.raises(InvalidJob, match="'nope' is not configured"):
        pause_queues("nope")
    with pytest.raises(InvalidJob, match="Only failed or cancelled"):
        retry_jobs("default", states=("waiting",))


@pytest.mark.django_db  # the model checks of JSONField ask the database what it supports
def test_manage_py_check_reports_a_bad_queue_limit(jobs_settings):
    from django.core.checks import run_checks
    from django.test import override_settings

    queues = {"default": {}, "emails": {"RATE_LIMIT": "100 a minute"}}
    with override_settings(DJANGO_JOBS={**jobs_settings, "QUEUES": queues}):
        errors = [e for e in run_checks() if e.id.startswith("django_jobs.")]
    assert [e.id for e in errors] == ["django_jobs.E004"]
    assert "'100 a minute' is not valid" in errors[0].msg


def test_manage_py_jobs_limits_shows_and_changes_queue_limits_at_run_time():
    rows = jobs_json("limits")
    assert rows[0] == {"queue": "default", "rate": None, "concurrency": None, "overridden": False}
    assert jobs_json("limits", "default", "--rate", "10/s", "--concurrency", "3") == [
        {"queue": "default", "rate": "10/s", "concurrency": 3, "overridden": True},
    ]
    assert jobs_json("limits", "default", "--rate", "none") == [
        {"queue": "default", "rate": None, "concurrency": 3, "overridden": True},
    ]
    assert jobs_json("limits", "default", "--reset")[0]["overridden"] is False
    with pytest.raises(CommandError, match="exactly one queue"):
        call_command("jobs", "limits", "--rate", "1/s", stdout=io.StringIO())
    with pytest.raises(CommandError, match="is not valid"):
        call_command("jobs", "limits", "default", "--rate", "fast", stdout=io.StringIO())
    with pytest.raises(CommandError, match="whole number"):
        call_command("jobs", "limits", "default", "--concurrency", "x", stdout=io.StringIO())
