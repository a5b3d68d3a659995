"""The attempt history across operator retries (issue 13): errors of earlier runs are kept.

An operator's retry (:func:`django_jobs.operations.retry`, the admin, ``manage.py jobs retry``)
moves the ended run's errors (``err``) to the job hash's history ``eh`` and starts the job
over. ``JobResult.errors`` stays Django's (the current run's attempts); the earlier runs' errors
are ``JobView.earlier_errors``, ``JobResult.earlier_errors``, ``JobRecord.earlier_errors``, the
admin's attempts timeline (first, marked "before retry") and ``manage.py jobs show``.
"""

from __future__ import annotations

import json
import re

import pytest

from django_jobs import operations
from django_jobs.compat import TaskResultStatus
from django_jobs.engine.record import JobView
from django_jobs.flows import Flow
from django_jobs.mirror import mirror_once
from django_jobs.models import JobRecord
from django_jobs.testing import run_job, work_until_empty
from tests.integration.test_admin import change_url
from tests.integration.test_jobs_command import jobs, jobs_json
from tests.testapp import jobs_flows as jf
from tests.testapp.jobs import flaky

pytestmark = [pytest.mark.db, pytest.mark.django_db]

CHILD_FAILED = "django_jobs.exceptions.ChildFailed"


def last_lines(errors) -> list[str]:
    """The last traceback line of each error (``TaskError`` objects or recorded dicts)."""
    tbs = [e["traceback"] if isinstance(e, dict) else e.traceback for e in errors]
    return [tb.rstrip().splitlines()[-1] for tb in tbs]


def timeline_rows(page: str) -> list[tuple[str, str, str]]:
    """(number, "before retry" mark, outcome text) of each row of the admin's attempts timeline."""
    section = page[page.index('id="djj-attempts"'):page.index("<h2>State</h2>")]
    rows = re.findall(r'<tr class="djj-attempt([^"]*)"><td>(\d+)( <span class="djj-note">before retry</span>)?</td>.*?<strong>([^<]*)</strong>', section)
    assert all(("djj-before-retry" in classes) == bool(mark) for classes, _, mark, _ in rows), rows
    return [(number, "before retry" if mark else "", outcome) for _, number, mark, outcome in rows]


def test_a_job_retried_by_an_operator_keeps_the_errors_of_its_first_run(engine, admin_client, ledger_path):
    handle = flaky.using(attempts=2).enqueue("history", 4)  # fails its first 4 runs: 2 attempts a run
    assert run_job("default", handle.id) == "failed"
    first = flaky.get_result(handle.id)
    assert last_lines(first.errors) == ["RuntimeError: flaky failure 1", "RuntimeError: flaky failure 2"]
    assert first.earlier_errors == []

    assert operations.retry([("default", handle.id)]).done_count == 1
    first.refresh()  # Django's errors are the current run's: none yet; the first run's are kept
    assert (first.status, first.errors) == (TaskResultStatus.READY, [])
    assert last_lines(first.earlier_errors) == ["RuntimeError: flaky failure 1", "RuntimeError: flaky failure 2"]

    assert run_job("default", handle.id) == "failed"
    both = ["RuntimeError: flaky failure 1", "RuntimeError: flaky failure 2"], ["RuntimeError: flaky failure 3", "RuntimeError: flaky failure 4"]

    view = JobView.from_hash("default", handle.id, engine.get_job("default", handle.id))
    assert (last_lines(view.earlier_errors), last_lines(view.errors)) == both and not view.corrupt

    result = flaky.get_result(handle.id)
    assert result.status == TaskResultStatus.FAILED and result.attempts == 2
    assert (last_lines(result.earlier_errors), last_lines(result.errors)) == both
    assert {e.exception_class_path for e in [*result.earlier_errors, *result.errors]} == {"builtins.RuntimeError"}

    mirror_once()
    row = JobRecord.objects.get(pk=handle.id)
    assert (last_lines(row.earlier_errors), last_lines(row.errors)) == both
    assert row.error == "RuntimeError: flaky failure 4"  # the last error is the current run's

    page = admin_client.get(change_url(handle.id)).content.decode()
    assert timeline_rows(page) == [
        ("1", "before retry", "RuntimeError: flaky failure 1"),
        ("2", "before retry", "RuntimeError: flaky failure 2"),
        ("1", "", "RuntimeError: flaky failure 3"),
        ("2", "", "RuntimeError: flaky failure 4"),
    ]

    detail = jobs_json("show", handle.id)
    assert (last_lines(detail["earlier_errors"]), last_lines(detail["errors"])) == both
    text, _ = jobs("show", handle.id)
    shown = [line for line in text.splitlines() if re.match(r"(earlier )?error \d:", line)]
    assert shown == [
        "earlier error 1:   RuntimeError: flaky failure 1 (before retry)",
        "earlier error 2:   RuntimeError: flaky failure 2 (before retry)",
        "error 1:           builtins.RuntimeError",
        "error 2:           builtins.RuntimeError",
    ]
    assert text.rstrip().endswith("RuntimeError: flaky failure 4")  # the last traceback is the current run's


def test_a_flow_parent_retried_with_its_child_keeps_its_child_failed_record(engine, admin_client, ledger_path):
    handle = Flow(jf.gather.s("p"), children=[flaky.using(attempts=1).s("kid", 2)]).enqueue()
    [kid] = handle.children
    work_until_empty(["default"])
    assert engine.get_job("default", handle.id)["s"] == "failed"

    assert operations.retry([("default", handle.id), ("default", kid.id)]).done_count == 2
    work_until_empty(["default"])  # the child fails again (its second run), which fails the parent again

    view = JobView.from_hash("default", handle.id, engine.get_job("default", handle.id))
    assert (view.state, view.reason) == ("failed", "child_failed")
    assert [e["exception_class_path"] for e in view.earlier_errors] == [CHILD_FAILED]
    assert [e["exception_class_path"] for e in view.errors] == [CHILD_FAILED]
    assert f"Child job {kid.id} ended failed" in view.earlier_errors[0]["traceback"]
    result = jf.gather.get_result(handle.id)
    assert [e.exception_class_path for e in result.earlier_errors] == [CHILD_FAILED]
    kid_view = JobView.from_hash("default", kid.id, engine.get_job("default", kid.id))
    assert (last_lines(kid_view.earlier_errors), last_lines(kid_view.errors)) == (
        ["RuntimeError: flaky failure 1"], ["RuntimeError: flaky failure 2"])

    mirror_once()
    assert [e["exception_class_path"] for e in JobRecord.objects.get(pk=handle.id).earlier_errors] == [CHILD_FAILED]
    page = admin_client.get(change_url(handle.id)).content.decode()
    rows = timeline_rows(page)
    assert [(number, mark) for number, mark, _ in rows] == [("1", "before retry"), ("1", "")]
    assert [outcome for _, _, outcome in rows] == [f"ChildFailed: child …{kid.id[-8:]} ended failed"] * 2
    assert [e["exception_class_path"] for e in jobs_json("show", handle.id)["earlier_errors"]] == [CHILD_FAILED]

    # Its child retried alone re-opens it; now the child succeeds (third run) and so does the parent.
    assert operations.retry([("default", kid.id)]).done_count == 1
    work_until_empty(["default"])
    done = jf.gather.get_result(handle.id)
    assert (done.status, done.errors) == (TaskResultStatus.SUCCESSFUL, [])
    assert [e.exception_class_path for e in done.earlier_errors] == [CHILD_FAILED, CHILD_FAILED]
    assert json.loads(engine.get_job("default", handle.id)["r"]) == {kid.id: ["completed", "ok after 3"]}
