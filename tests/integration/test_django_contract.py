"""Our backend behaves as Django's own task backends do wherever Django defines the behaviour.

The intent of Django's ``tests/tasks`` suite (ImmediateBackend, DummyBackend), ported to a real
Redis and a real worker: where Django runs a task synchronously, we enqueue it and run the worker.
"""

from __future__ import annotations

import logging

import pytest
from django.tasks import TaskResultStatus, default_task_backend, task_backends
from django.tasks.signals import task_finished

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
