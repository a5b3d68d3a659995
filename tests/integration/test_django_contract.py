"""Our backend behaves as Django's own task backends do wherever Django defines the behaviour.

The intent of Django's ``tests/tasks`` suite (ImmediateBackend, DummyBackend), ported to a real
Redis and a real worker: where Django runs a task synchronously, we enqueue it and run the worker.
"""

from __future__ import annotations

import logging

import pytest

from django_jobs.compat import TaskResultStatus, default_task_backend, task_finished
from tests.testapp import jobs, jobs_contract


@pytest.fixture
def finished():
    """Collect the results task_finished is sent with."""
    seen = []

    def receiver(sender, task_result, **kwargs):
        seen.append(task_result)

    task_finished.connect(receiver, dispatch_uid="contract-finished")
    yield seen
    task_finished.disconnect(dispatch_uid="contract-finished")


# -- a job raising SystemExit / KeyboardInterrupt ------------------------------------------------


@pytest.mark.parametrize(
    ("task", "args", "cls"),
    [
        (jobs_contract.exits, (1,), "builtins.SystemExit"),
        (jobs_contract.interrupts, (), "builtins.KeyboardInterrupt"),
        (jobs_contract.async_exits, (), "builtins.SystemExit"),
        (jobs_contract.isolated_exits, (), "builtins.SystemExit"),
    ],
)
def test_a_job_raising_systemexit_or_keyboardinterrupt_fails_with_its_real_class(work, finished, caplog, task, args, cls):
    caplog.set_level(logging.ERROR, logger="django_jobs.worker")
    result = task.enqueue(*args)
    after = jobs.add.enqueue(1, 2)
    assert work(threads=1) == 2  # the worker went on to the next job
    result.refresh()
    assert result.status == TaskResultStatus.FAILED
    assert [e.exception_class_path for e in result.errors] == [cls]
    assert "Traceback" in result.errors[0].traceback and cls.split(".")[1] in result.errors[0].traceback
    if not task.isolated:
        mine = [r for r in finished if r.id == result.id]
        assert len(mine) == 1 and mine[0].status == TaskResultStatus.FAILED
        assert [e.exception_class_path for e in mine[0].errors] == [cls]
        assert any(getattr(rec, "job_id", "") == result.id and rec.levelno == logging.ERROR for rec in caplog.records)
    after.refresh()
    assert after.return_value == 3


def test_task_finished_of_a_failed_task_carries_its_error(work, finished):
    result = jobs_contract.fails.enqueue("nope")
    work()
    (sent,) = [r for r in finished if r.id == result.id]
    assert sent.status == TaskResultStatus.FAILED
    assert sent.errors[-1].exception_class_path == "builtins.ValueError"
    assert "nope" in sent.errors[-1].traceback


def test_task_finished_of_a_successful_task_has_no_error(work, finished):
    result = jobs.add.enqueue(1, 1)
    work()
    (sent,) = [r for r in finished if r.id == result.id]
    assert sent.status == TaskResultStatus.SUCCESSFUL and sent.errors == [] and sent.return_value == 2


# -- Task.name ------------------------------------------------------------------------------------


def test_task_name_is_the_function_name_and_module_path_the_dotted_path():
    assert jobs.add.name == "add"
    assert jobs.add.module_path == "tests.testapp.jobs.add"
    assert jobs.plain_task.name == "plain_task"


def test_payloads_still_name_the_dotted_path(work, r, prefix):
    result = jobs.add.enqueue(1, 2)
    data = r.hget(f"{prefix}:{{default}}:job:{result.id}", "d")
    assert '"n":"tests.testapp.jobs.add"' in data
    work()
    assert jobs.add.get_result(result.id).return_value == 3


# -- validation at enqueue, like Django's backends ------------------------------------------------


def test_empty_tasks_queues_list_restricts_nothing_as_in_django(settings):
    from django_jobs.backends import RedisBackend

    backend = RedisBackend("x", {"BACKEND": "django_jobs.backends.RedisBackend", "QUEUES": []})
    assert backend.queues == {"default", "high", "low"}
    backend.validate_task(jobs.add.using(queue_name="high"))


def test_backend_queues_lists_the_configured_queues():
    assert default_task_backend.queues == {"default", "high", "low"}
    from django_jobs.backends import RedisBackend

    only = RedisBackend("y", {"BACKEND": "django_jobs.backends.RedisBackend", "QUEUES": ["high"]})
    assert only.queues == {"high"}


def test_enqueue_validates_the_task_against_the_current_settings(jobs_settings, settings):
    from django_jobs.compat import InvalidTask

    task = jobs.add.using(queue_name="low")
    task.enqueue(1, 2)
    settings.DJANGO_JOBS = {**jobs_settings, "QUEUES": {"default": {}, "high": {}}}
    with pytest.raises(InvalidTask, match="'low' is not configured"):
        task.enqueue(1, 2)


def test_aenqueue_validates_the_task_too(jobs_settings, settings):
    import asyncio

    from django_jobs.compat import InvalidTask

    task = jobs.add.using(queue_name="low")
    settings.DJANGO_JOBS = {**jobs_settings, "QUEUES": {"default": {}}}
    with pytest.raises(InvalidTask, match="'low' is not configured"):
        asyncio.run(task.aenqueue(1, 2))


@pytest.mark.parametrize(
    ("args", "kwargs", "problem"),
    [((), {}, "missing a required argument: 'user_id'"), ((42,), {"extra": 1}, "unexpected keyword argument 'extra'"),
     ((1, 2), {}, "too many positional arguments")],
)
def test_arguments_are_bound_to_the_signature_at_enqueue(r, prefix, args, kwargs, problem):
    from django_jobs import InvalidArguments

    with pytest.raises(TypeError, match=problem) as raised:
        jobs_contract.greet.enqueue(*args, **kwargs)
    assert isinstance(raised.value, InvalidArguments) and "tests.testapp.jobs_contract.greet" in str(raised.value)
    assert r.keys(f"{prefix}:*job:*") == []


def test_enqueue_many_binds_every_item_before_enqueuing_any(r, prefix):
    with pytest.raises(TypeError, match=r"item 1 of enqueue_many\(\)"):
        jobs_contract.greet.enqueue_many([(1,), {"nope": 2}])
    assert r.keys(f"{prefix}:*job:*") == []


def test_flow_signatures_that_do_not_fit_raise_typeerror():
    from django_jobs.flows import Flow

    with pytest.raises(TypeError, match="do not fit"):
        Flow(jobs_contract.greet.s(), children=[jobs_contract.noop.s()]).enqueue()


def test_a_context_task_binds_its_arguments_after_the_context():
    with pytest.raises(TypeError):
        jobs.context_task.enqueue()
    jobs.context_task.enqueue(3)


# -- results read back -----------------------------------------------------------------------------


def test_get_result_returns_the_task_with_its_run_after_and_options():
    from datetime import UTC, datetime, timedelta

    when = datetime.now(UTC) + timedelta(hours=1, microseconds=7)
    result = jobs.add.using(run_after=when, attempts=4, timeout=9.5).enqueue(1, 2)
    fresh = default_task_backend.get_result(result.id)
    assert fresh.task.run_after == when and fresh.task == result.task
    assert (fresh.task.attempts, fresh.task.timeout) == (4, 9.5)


def read_back(result) -> tuple:
    """What get_result() reads of ``result``'s job: its enqueue time and run_after."""
    fresh = default_task_backend.get_result(result.id)
    return fresh.enqueued_at, fresh.task.run_after


def mismatches(results) -> list:
    """The results whose enqueue time or run_after differ from what get_result() reads back."""
    return [(r.id, r.enqueued_at, r.task.run_after, read_back(r)) for r in results if (r.enqueued_at, r.task.run_after) != read_back(r)]


def script_calls(r) -> int:
    """How many scripts this Redis has run (EVALSHA and EVAL), from INFO commandstats."""
    stats = r.info("commandstats")
    return sum(stats.get(f"cmdstat_{name}", {}).get("calls", 0) for name in ("evalsha", "eval"))


def test_enqueue_returns_the_enqueued_at_and_run_after_that_get_result_reads_back(r):
    """One clock, one value: Redis' enqueue time, for every enqueue (it differed by 1 ms in 5-35 % of them)."""
    from datetime import UTC, datetime, timedelta

    later = datetime.now(UTC) + timedelta(hours=1, microseconds=7)
    kinds = [jobs.add, jobs.add.using(run_after=later), jobs.add.using(delay=60), jobs.add.using(priority=5)]
    jobs.add.enqueue(0, 0)  # loads the script
    before = script_calls(r)
    results = [kinds[n % len(kinds)].enqueue(n, 1) for n in range(400)]
    assert script_calls(r) - before == 400  # one script call per enqueue: the time comes back with it
    assert all(r.enqueued_at is not None for r in results)
    assert mismatches(results) == []
    assert {r.task.run_after for r in results} == {None, later}


def test_enqueue_many_returns_the_enqueued_at_and_run_after_that_get_result_reads_back(r):
    """Over several pipelined script calls (BULK_CHUNK jobs each), each result pairs with its own job."""
    from datetime import UTC, datetime, timedelta

    from django_jobs.backends import BULK_CHUNK

    jobs.add.enqueue(0, 0)  # loads the script
    before = script_calls(r)
    results = jobs.add.enqueue_many([(n, 1) for n in range(2 * BULK_CHUNK + 100)])
    assert script_calls(r) - before == 3  # one per chunk, as before
    later = datetime.now(UTC) + timedelta(minutes=5, microseconds=3)
    results += jobs.add.using(run_after=later).enqueue_many([(n, 2) for n in range(300)])
    assert all(r.enqueued_at is not None for r in results)
    assert mismatches(results) == []


def test_a_cancelled_job_has_an_error_that_says_so():
    from datetime import timedelta

    from django.utils import timezone

    result = jobs.add.using(run_after=timezone.now() + timedelta(hours=1)).enqueue(1, 2)
    assert result.cancel() == "cancelled"
    result.refresh()
    assert result.status == TaskResultStatus.FAILED
    assert result.errors[-1].exception_class_path == "django_jobs.exceptions.Cancel"
    assert "cancelled by a cancel request" in result.errors[-1].traceback


def test_keep_result_zero_deletes_the_job_when_it_finishes(work, r, prefix):
    from django_jobs.compat import TaskResultDoesNotExist

    gone = jobs.add.using(keep_result=0).enqueue(1, 2)
    kept = jobs.add.enqueue(1, 2)
    work()
    with pytest.raises(TaskResultDoesNotExist):
        default_task_backend.get_result(gone.id)
    assert default_task_backend.get_result(kept.id).return_value == 3


def test_check_tag_django_jobs_reports_our_queue_problems_once_and_a_plain_check_too(jobs_settings, settings):
    from django.core.checks import run_checks

    settings.DJANGO_JOBS = {**jobs_settings, "QUEUES": {"default": {}, "bad{name}": {}}}
    tagged = [m.id for m in run_checks(tags=["django_jobs"])]
    assert tagged.count("django_jobs.E004") == 1
    everything = [m.id for m in run_checks(databases=[])]  # Django's check_tasks calls backend.check(): no duplicate
    assert everything.count("django_jobs.E004") == 1
    assert default_task_backend.check() == []

    settings.DJANGO_JOBS = jobs_settings
    settings.TASKS = {"default": {**settings.TASKS["default"], "QUEUES": ["default", "nowhere"]}}
    assert [m.id for m in run_checks(tags=["django_jobs"])].count("django_jobs.E007") == 1
    assert [m.id for m in run_checks(databases=[])].count("django_jobs.E007") == 1


# -- manage.py jobs ----------------------------------------------------------------------------------


def test_jobs_show_redacts_arguments_like_the_admin():
    import io
    import json

    from django.core.management import call_command

    result = jobs_contract.login.enqueue("ann", "hunter2", profile={"api_token": "t0k", "city": "Oslo"})
    out = io.StringIO()
    call_command("jobs", "show", result.id, "--json", stdout=out)
    detail = json.loads(out.getvalue())
    assert detail["args"] == ["ann", "[redacted]"]
    assert detail["kwargs"] == {"profile": {"api_token": "[redacted]", "city": "Oslo"}}
    out = io.StringIO()
    call_command("jobs", "show", result.id, stdout=out)
    assert "hunter2" not in out.getvalue() and "t0k" not in out.getvalue()


def test_jobs_subcommands_accept_djangos_common_options_after_the_subcommand(redis_server, prefix):
    import subprocess
    import sys

    from tests.conftest import ROOT
    from tests.redis_server import env_for

    env = env_for(redis_server, prefix)
    env["DJANGO_SETTINGS_MODULE"] = "no.such.settings"
    done = subprocess.run([sys.executable, "-m", "django", "jobs", "stats", "--json", "--settings", "tests.settings", "-v", "2"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    import json

    assert "default" in json.dumps(json.loads(done.stdout))


# -- cron ARGS/KWARGS are checked against the job ----------------------------------------------------


def test_cron_args_that_do_not_fit_the_job_are_e022(jobs_settings, settings):
    from django_jobs.checks import check_cron_jobs

    settings.DJANGO_JOBS = {**jobs_settings, "CRON": [
        {"NAME": "bad", "JOB": "tests.testapp.jobs_contract.greet", "EVERY": 60, "KWARGS": {"user": 1}},
        {"NAME": "good", "JOB": "tests.testapp.jobs_contract.greet", "EVERY": 60, "ARGS": [1]},
    ]}
    found = check_cron_jobs()
    assert [m.id for m in found] == ["django_jobs.E022"] and "'bad'" in found[0].msg and found[0].hint


# -- ported from Django's tests/tasks/test_immediate_backend.py and test_tasks.py --------------------


def test_a_failed_result_has_its_timestamps_in_order_and_no_return_value(work):
    result = jobs_contract.raises_system_exit_with_message.enqueue()
    work()
    result.refresh()
    assert result.status == TaskResultStatus.FAILED and result.is_finished
    with pytest.raises(ValueError, match="Task failed"):
        result.return_value  # noqa: B018 - Django raises here for a failed task
    assert result.enqueued_at <= result.started_at <= result.finished_at and result.last_attempted_at
    assert result.errors[0].exception_class is SystemExit
    assert result.errors[0].traceback.endswith("SystemExit: This Task failed due to SystemExit\n")
    assert (result.task, result.args, result.kwargs) == (jobs_contract.raises_system_exit_with_message, [], {})


def test_a_complex_exception_is_recorded_whole(work):
    result = jobs_contract.complex_exception.enqueue()
    work()
    result.refresh()
    assert result.errors[0].exception_class is ValueError
    assert 'ValueError(ValueError("This task failed"))' in result.errors[0].traceback


def test_a_return_value_json_cannot_carry_fails_the_task_with_a_type_error(work):
    result = jobs_contract.complex_return_value.enqueue()
    work()
    result.refresh()
    assert result.status == TaskResultStatus.FAILED and result._return_value is None
    assert result.errors[0].exception_class is TypeError and "not JSON serializable" in result.errors[0].traceback


def test_a_task_that_takes_context_sees_its_own_id(work):
    result = jobs_contract.get_task_id.enqueue()
    work()
    assert jobs_contract.get_task_id.get_result(result.id).return_value == result.id


def test_enqueue_through_the_backend_and_read_the_result_back(work):
    result = default_task_backend.enqueue(jobs_contract.calculate_meaning_of_life, [], {})
    assert result.status == TaskResultStatus.READY and result.attempts == 0
    work()
    result.refresh()
    assert (result.status, result.return_value, result.attempts) == (TaskResultStatus.SUCCESSFUL, 42, 1)


def test_get_result_of_another_task_or_of_no_job_raises_djangos_exceptions():
    from django_jobs.compat import TaskResultDoesNotExist, TaskResultMismatch

    result = jobs.add.enqueue(1, 2)
    with pytest.raises(TaskResultMismatch):
        jobs_contract.calculate_meaning_of_life.get_result(result.id)
    with pytest.raises(TaskResultDoesNotExist):
        default_task_backend.get_result("0" * 32)


def test_using_returns_a_new_task_and_leaves_the_original_alone():
    high = jobs.add.using(priority=10, queue_name="high")
    assert (high.priority, high.queue_name) == (10, "high")
    assert (jobs.add.priority, jobs.add.queue_name) == (0, "default")
    assert high.func is jobs.add.func and high.name == jobs.add.name == "add"
