"""django_jobs.testing: immediate and capture modes, the TestingBackend setting, isolated queues."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest
from django.core.checks import run_checks
from django.test import override_settings

from django_jobs import ConfigurationError, JobNotFound, JobTimeout
from django_jobs.engine import get_engine
from django_jobs.testing import (
    TEST_WORKER_ID,
    capture,
    default_captured,
    immediate,
    isolated_queues,
    run_job,
)
from tests.testapp.jobs import add, always_fails, enqueue_child, plain_task, record, too_slow

ROOT = Path(__file__).resolve().parents[2]


def mode_backend(mode: str) -> dict[str, dict[str, object]]:
    return {"default": {"BACKEND": "django_jobs.testing.TestingBackend", "OPTIONS": {"MODE": mode}}}


def test_immediate_mode_runs_the_job_through_the_same_scripts_and_events_as_a_worker(engine):
    with immediate():
        result = add.enqueue(2, 3)

    assert (result.state, result.return_value, result.attempts) == ("completed", 5, 1)
    assert result.worker_ids == [TEST_WORKER_ID]
    events = [fields["e"] for _, fields in engine.client.xrange(engine.keys("default").events)]
    assert events == ["waiting", "active", "completed"]
    assert engine.counts("default")["completed"] == 1


def test_immediate_mode_runs_a_delayed_job_at_once(engine):
    with immediate():
        result = add.using(delay=3600).enqueue(1, 1)

    assert result.state == "completed"
    assert engine.counts("default")["scheduled"] == 0


def test_immediate_mode_uses_up_the_attempts_and_fails_the_job_without_raising(engine):
    with immediate():
        result = always_fails.enqueue()

    assert result.state == "failed"
    assert [e.exception_class for e in result.errors] == [ValueError, ValueError]


def test_a_job_enqueued_by_an_immediate_job_runs_at_once_with_its_parent_id(engine):
    with immediate():
        parent = enqueue_child.enqueue("p")

    child = record.get_result(parent.return_value)
    assert child.state == "completed" and child.parent_id == parent.id


def test_immediate_mode_records_a_timeout_when_a_sync_job_outruns_it(engine):
    with immediate():
        result = too_slow.enqueue(0.6)

    assert result.state == "failed"
    assert result.errors[-1].exception_class is JobTimeout


def test_plain_django_tasks_follow_the_modes_too(engine):
    with capture() as jobs:
        result = plain_task.enqueue(21)
    jobs.assert_enqueued(plain_task.module_path, [21], priority=5)
    assert jobs.run_all() == 1
    assert result.return_value == 42


def test_the_modes_restore_the_configured_backend_afterwards(engine):
    from django_jobs.compat import task_backends

    with immediate():
        assert type(task_backends["default"]).__name__ == "TestingBackend"
    assert type(task_backends["default"]).__name__ == "RedisBackend"
    result = add.enqueue(1, 2)
    assert result.state == "waiting"
    assert add.get_result(result.id).state == "waiting"


def test_the_immediate_mode_setting_runs_every_enqueue(engine):
    with override_settings(TASKS=mode_backend("immediate")):
        assert add.enqueue(4, 4).return_value == 8
        assert run_checks(tags=["django_jobs"]) == []


def test_the_capture_mode_setting_records_into_default_captured(engine):
    default_captured.clear()
    with override_settings(TASKS=mode_backend("capture")):
        result = add.enqueue(5, 5)
        default_captured.assert_enqueued(add, [5, 5], queue="default", count=1)
        assert default_captured.run_all() == 1
    assert result.return_value == 10
    default_captured.clear()
    assert len(default_captured) == 0


def test_an_unknown_mode_in_the_setting_is_a_configuration_error(engine):
    with override_settings(TASKS=mode_backend("eager")):
        with pytest.raises(ConfigurationError, match="'eager'"):
            add.enqueue(1, 1)


def test_capture_keeps_the_jobs_waiting_in_redis_until_run(engine):
    with capture() as jobs:
        first = add.enqueue(1, 2)
        later = add.using(delay=60, priority=3).enqueue(3, 4)

    assert [j.id for j in jobs] == [first.id, later.id]
    assert engine.counts("default")["waiting"] == 1 and engine.counts("default")["scheduled"] == 1
    captured = jobs.assert_enqueued(add, args=(3, 4), delay=60, priority=3)
    assert captured.result is later
    assert jobs.run_all() == 2
    assert (first.return_value, later.return_value) == (3, 7)
    assert jobs.run_all() == 0  # nothing pending


@pytest.mark.parametrize("count", [3, 1_203], ids=["one-call", "streamed"])
def test_capture_records_every_job_of_a_bulk_enqueue_with_its_shared_options(engine, count):
    with capture() as jobs:
        results = add.using(delay=60, priority=3).enqueue_many([(n, 1) for n in range(count)])

    assert [j.id for j in jobs] == [r.id for r in results]
    assert [(j.args, j.kwargs, j.priority, j.delay, j.queue) for j in jobs] == [([n, 1], {}, 3, 60.0, "default") for n in range(count)]
    assert all(j.result is r for j, r in zip(jobs, results, strict=True))
    assert engine.counts("default")["scheduled"] == count


def test_run_job_leaves_a_finished_job_alone_and_refuses_an_unknown_one(engine):
    with immediate():
        done = add.enqueue(1, 1)
    assert run_job("default", done.id) is None
    assert add.get_result(done.id).attempts == 1
    with pytest.raises(JobNotFound):
        run_job("default", "no-such-job")


def test_a_cancelled_captured_job_does_not_run(engine):
    with capture() as jobs:
        result = add.enqueue(1, 1)
        assert result.cancel() == "cancelled"
        assert jobs.run_all() == 0
    assert result.state == "cancelled"


def test_isolated_queues_use_their_own_prefix_and_delete_its_keys_afterwards(r, prefix):
    with isolated_queues() as own:
        assert get_engine().prefix == own != prefix
        add.enqueue(1, 1)
        assert r.keys(f"{own}:*")
    assert r.keys(f"{own}:*") == []
    assert get_engine().prefix == prefix


def test_the_pytest_plugin_is_declared_as_a_pytest11_entry_point():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert project["project"]["entry-points"]["pytest11"] == {"django_jobs": "django_jobs.pytest_plugin"}
    import django_jobs.pytest_plugin as plugin

    assert {"jobs_isolated", "jobs_immediate", "jobs_capture", "jobs_worker"} <= set(vars(plugin))




# -- immediate and capture run jobs through the worker's run path --------------------------------

seen: list[tuple[str, ...]] = []


class Wrapper:
    """A job middleware that records what it wraps (tests only)."""

    def __call__(self, job):
        seen.append(("before", job.task.name, job.state))
        try:
            yield
        except Exception as exc:
            seen.append(("error", type(exc).__name__))
            raise
        seen.append(("after", job.task.name))


@pytest.fixture
def wrapped(jobs_settings):
    seen.clear()
    chain = ["django_jobs.middleware.JobCorrelationMiddleware", "django_jobs.middleware.JobLoggingMiddleware", f"{__name__}.Wrapper"]
    with override_settings(DJANGO_JOBS={**jobs_settings, "MIDDLEWARE": chain}):
        yield seen


def test_immediate_mode_runs_job_middleware_and_the_job_signals(engine, wrapped):
    from django_jobs import runtime, signals
    from django_jobs.compat import task_started
    from tests.testapp.jobs import async_add

    sent: list[tuple[str, str]] = []

    def on(name):
        def receiver(sender, task_result, **kwargs):
            sent.append((name, task_result.id))
            if name == "job_started":  # the job is registered with the runtime while it runs
                assert runtime.get(task_result.id) is not None and runtime.current_job_id() == task_result.id
        return receiver

    receivers = {"job_started": on("job_started"), "job_succeeded": on("job_succeeded"), "job_failed": on("job_failed")}
    started = on("task_started")
    for name, receiver in receivers.items():
        getattr(signals, name).connect(receiver)
    task_started.connect(started)
    try:
        with immediate():
            ok = add.enqueue(2, 2)
            slow = async_add.enqueue(1, 1)
            bad = always_fails.enqueue()
    finally:
        for name, receiver in receivers.items():
            getattr(signals, name).disconnect(receiver)
        task_started.disconnect(started)
    assert (ok.return_value, slow.return_value, bad.state) == (4, 2, "failed")
    assert ("job_started", ok.id) in sent and ("job_succeeded", ok.id) in sent and ("task_started", ok.id) in sent
    assert ("job_started", slow.id) in sent and ("job_succeeded", slow.id) in sent
    assert ("job_started", bad.id) in sent and ("job_failed", bad.id) in sent
    assert wrapped[:2] == [("before", add.name, "active"), ("after", add.name)]
    assert ("before", async_add.name, "active") in wrapped and ("error", "ValueError") in wrapped
    assert runtime.running_ids() == []  # nothing left registered


def test_capture_run_all_runs_job_middleware(engine, wrapped):
    with capture() as jobs:
        result = add.enqueue(5, 5)
        assert wrapped == []  # captured: not run yet
        assert jobs.run_all() == 1
    assert result.return_value == 10
    assert wrapped == [("before", add.name, "active"), ("after", add.name)]
