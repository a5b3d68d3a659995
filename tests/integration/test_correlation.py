"""Correlation ids from the web request into every job it causes, structured logs, job middleware, signals."""

from __future__ import annotations

import json
import logging
import signal
import sys

import pytest
from django.test import AsyncClient, Client, override_settings

from django_jobs.correlation import (
    CorrelationIdFilter,
    JsonFormatter,
    correlation_id,
    get_correlation_id,
    process_correlation_id,
)

pytestmark = pytest.mark.usefixtures("testproject_on_path")


@pytest.fixture
def site(jobs_settings):
    """The testproject's middleware (CorrelationIdMiddleware first) with the test views."""
    from testproject import settings as demo_settings

    with override_settings(MIDDLEWARE=demo_settings.MIDDLEWARE, ROOT_URLCONF="tests.integration.observability_urls",
                           SESSION_ENGINE="django.contrib.sessions.backends.signed_cookies"):
        yield Client()


class Records(logging.Handler):
    """Collect the records of a logger, through the filter and the JSON formatter."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.addFilter(CorrelationIdFilter())
        self.setFormatter(JsonFormatter())
        self.lines: list[dict] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(json.loads(self.format(record)))


@pytest.fixture
def logs():
    handler = Records()
    loggers = [logging.getLogger(name) for name in ("django_jobs", "tests.observability")]
    levels = [(lg, lg.level) for lg in (*loggers, logging.getLogger("django_jobs.worker"))]
    for lg in loggers:
        lg.addHandler(handler)
    for lg, _ in levels:
        lg.setLevel(logging.DEBUG)
    yield handler.lines
    for lg in loggers:
        lg.removeHandler(handler)
    for lg, level in levels:
        lg.setLevel(level)


def test_a_request_id_reaches_the_json_logs_of_a_job_and_its_child_in_real_worker_processes(site, workers, prefix):
    from tests.testapp.jobs_observability import checkout, receipt

    response = site.get("/checkout/7/", HTTP_X_REQUEST_ID="abc123")
    assert response.status_code == 200 and response["X-Request-ID"] == "abc123"
    body = response.json()
    assert body["correlation_id"] == "abc123"

    proc = workers.start("--processes", "2", "--threads", "2", env={"DJANGO_SETTINGS_MODULE": "tests.integration.observability_settings"})
    parent = checkout.get_result(body["job_id"])
    try:
        parent.wait(timeout=20)
    except TimeoutError:
        proc.kill()
        raise AssertionError(proc.communicate()[0]) from None
    child = receipt.get_result(parent.return_value).wait(timeout=20)
    assert child.correlation_id == parent.correlation_id == "abc123" and child.parent_id == parent.id
    proc.send_signal(signal.SIGTERM)
    output, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0, output

    lines = [json.loads(line) for line in output.splitlines() if line.startswith("{")]
    for job_id, message in ((parent.id, "checking out order 7"), (child.id, "sending the receipt of order 7")):
        mine = [line for line in lines if line.get("job_id") == job_id]
        assert {line["message"] for line in mine} >= {message}, output
        assert any(line.get("action") == "job_succeeded" and line["duration_ms"] >= 0 for line in mine), output
        for line in mine:
            assert line["correlation_id"] == "abc123"
            assert line["queue"] == "default" and line["attempt"] == 1 and line["worker"].count(":") == 2
            assert line["job_name"] in (checkout.module_path, receipt.module_path)
            assert line["level"] in ("INFO", "DEBUG") and line["time"].endswith("+00:00")


@pytest.mark.parametrize("bad", ["<script>alert(1)</script>", "a" * 129, "two words", "", "é"])
def test_a_bad_request_id_header_is_replaced_by_a_fresh_one_and_never_logged_raw(site, logs, bad):
    response = site.get("/checkout/1/", HTTP_X_REQUEST_ID=bad)
    new = response["X-Request-ID"]
    assert new != bad and len(new) == 20 and response.json()["correlation_id"] == new
    assert all(bad not in json.dumps(line) for line in logs) or bad == ""


def test_a_request_without_the_header_gets_a_fresh_id_each_time(site):
    first, second = site.get("/checkout/1/")["X-Request-ID"], site.get("/checkout/2/")["X-Request-ID"]
    assert len(first) == len(second) == 20 and first != second
    assert get_correlation_id() == ""  # reset after the request


def test_the_middleware_also_serves_async_views(site):
    from asgiref.sync import async_to_sync

    response = async_to_sync(AsyncClient().get)("/async/", headers={"X-Request-ID": "req-async.1"})
    assert response["X-Request-ID"] == "req-async.1"
    assert response.json() == {"correlation_id": "req-async.1"}


def test_the_request_id_header_is_a_setting(site, jobs_settings):
    with override_settings(DJANGO_JOBS={**jobs_settings, "REQUEST_ID_HEADER": "X-Correlation-ID"}):
        response = site.get("/checkout/1/", HTTP_X_CORRELATION_ID="corr-9", HTTP_X_REQUEST_ID="ignored")
    assert response["X-Correlation-ID"] == "corr-9" and "X-Request-ID" not in response


def test_log_records_carry_the_job_fields_inside_a_job_and_blanks_outside(logs, work):
    from tests.testapp.jobs_observability import checkout

    with correlation_id("cid-42"):
        result = checkout.enqueue(5)
        logging.getLogger("tests.observability").info("enqueued")
    work()
    result.refresh()
    outside = next(line for line in logs if line["message"] == "enqueued")
    assert outside["correlation_id"] == "cid-42" and outside["job_id"] == "" and outside["attempt"] == 0
    inside = next(line for line in logs if line["message"] == "checking out order 5")
    assert inside["job_id"] == result.id and inside["job_name"] == checkout.module_path and inside["correlation_id"] == "cid-42"
    started = next(line for line in logs if line.get("action") == "job_started" and line["job_id"] == result.id)
    assert started["level"] == "DEBUG"


def test_retries_keep_the_correlation_id_and_failures_log_the_traceback(logs, work):
    from tests.testapp.jobs_observability import boom, fails_once

    with correlation_id("cid-retry"):
        flaky = fails_once.enqueue()
        broken = boom.enqueue()
    work()
    retrying = [line for line in logs if line.get("action") == "job_retrying"]
    assert [(line["job_id"], line["correlation_id"], line["attempt"]) for line in retrying] == [(flaky.id, "cid-retry", 1)]
    succeeded = next(line for line in logs if line.get("action") == "job_succeeded" and line["job_id"] == flaky.id)
    assert succeeded["attempt"] == 2 and succeeded["correlation_id"] == "cid-retry"
    failed = next(line for line in logs if line.get("action") == "job_failed" and line["job_id"] == broken.id)
    assert failed["level"] == "ERROR" and "ValueError: boom" in failed["exception"]


def test_jobs_enqueued_outside_any_request_carry_the_processes_own_correlation_id(work):
    from django_jobs.correlation import process_correlation_id
    from tests.testapp.jobs_observability import checkout, receipt

    parent = checkout.enqueue(3)
    other = checkout.enqueue(4)
    work()
    parent.refresh()
    child = receipt.get_result(parent.return_value)
    # One command run (one process) is one id, shared by everything it enqueued and their children.
    assert parent.correlation_id == other.correlation_id == child.correlation_id == process_correlation_id()
    assert len(parent.correlation_id) == 20 and child.parent_id == parent.id


def test_each_management_command_run_starts_a_fresh_correlation_id(redis_server, prefix):
    import subprocess

    from tests.conftest import ROOT
    from tests.redis_server import env_for

    code = "from tests.testapp.jobs import add; print('cid=' + add.enqueue(1, 2).correlation_id)"
    ids = [
        subprocess.run([sys.executable, "-m", "django", "shell", "-c", code], cwd=ROOT, env=env_for(redis_server, prefix),
                       capture_output=True, text=True, check=True).stdout.split("cid=")[1].strip()
        for _ in range(2)
    ]
    assert all(len(i) == 20 for i in ids) and ids[0] != ids[1]


# -- job middleware and signals ----------------------------------------------------------------

calls: list[tuple] = []


class Recorder:
    """A job middleware that records what it wraps (tests only)."""

    def __call__(self, job):
        calls.append(("before", job.task.name, get_correlation_id()))
        try:
            yield
        except Exception as exc:
            calls.append(("error", job.task.name, type(exc).__name__))
            raise
        calls.append(("after", job.task.name))


class Refuser:
    """Fails every attempt before the job runs."""

    def __call__(self, job):
        raise PermissionError("not today")
        yield  # pragma: no cover


def test_job_middleware_wraps_each_run_in_order_and_sees_failures(jobs_settings, work, logs):
    from tests.testapp.jobs_observability import boom, receipt

    calls.clear()
    chain = [*jobs_settings.get("MIDDLEWARE", ["django_jobs.middleware.JobCorrelationMiddleware", "django_jobs.middleware.JobLoggingMiddleware"]),
             f"{__name__}.Recorder"]
    with override_settings(DJANGO_JOBS={**jobs_settings, "MIDDLEWARE": chain}):
        with correlation_id("mw-1"):
            ok = receipt.enqueue(1)
        work()
        assert calls == [("before", receipt.name, "mw-1"), ("after", receipt.name)]
        calls.clear()
        bad = boom.enqueue()
        work()
        # Enqueued with no id: the job carries this process's own id (see process_correlation_id).
        assert calls == [("before", boom.name, process_correlation_id()), ("error", boom.name, "ValueError")]
    ok.refresh()
    bad.refresh()
    assert ok.state == "completed" and bad.state == "failed"


def test_a_middleware_that_raises_before_the_job_fails_the_attempt(jobs_settings, work, ledger_path):
    from tests.testapp.jobs import record

    with override_settings(DJANGO_JOBS={**jobs_settings, "MIDDLEWARE": [f"{__name__}.Refuser"]}):
        result = record.enqueue("never")
        work()
    result.refresh()
    assert result.state == "failed" and result.errors[-1].exception_class is PermissionError
    assert not ledger_path.exists()  # the job never ran


def test_without_the_builtin_middleware_there_is_no_lifecycle_logging_and_no_correlation(jobs_settings, work, logs):
    from tests.testapp.jobs_observability import receipt

    with override_settings(DJANGO_JOBS={**jobs_settings, "MIDDLEWARE": []}):
        with correlation_id("quiet"):
            result = receipt.enqueue(2)
        work()
    line = next(line for line in logs if line["message"] == "sending the receipt of order 2")
    assert line["correlation_id"] == "" and line["job_id"] == result.id  # not set while it ran
    assert not any(line.get("action") == "job_succeeded" for line in logs)


def test_job_signals_are_sent_with_the_result_in_the_process_that_runs_the_job(work):
    from django_jobs import signals
    from tests.testapp.jobs_observability import boom, fails_once, receipt

    seen: list[tuple] = []

    def on(name):
        def receiver(sender, task_result, **kwargs):
            seen.append((name, sender.name, task_result.id, task_result.state, sorted(kwargs.keys() - {"signal"})))
        return receiver

    signals.connect()  # (again: another test may have reset django.tasks' receivers)
    receivers = {name: on(name) for name in ("enqueued", "started", "succeeded", "failed", "retrying")}
    for name, receiver in receivers.items():
        getattr(signals, f"job_{name}").connect(receiver)
    try:
        ok = receipt.enqueue(3)
        retried = fails_once.enqueue()
        bad = boom.enqueue()
        work()
    finally:
        for name, receiver in receivers.items():
            getattr(signals, f"job_{name}").disconnect(receiver)
    assert ("enqueued", receipt.name, ok.id, "waiting", []) in seen
    assert ("started", receipt.name, ok.id, "active", []) in seen
    assert ("succeeded", receipt.name, ok.id, "completed", ["duration", "return_value"]) in seen
    assert ("retrying", fails_once.name, retried.id, "active", ["delay", "duration", "exception"]) in seen
    assert ("succeeded", fails_once.name, retried.id, "completed", ["duration", "return_value"]) in seen
    assert ("failed", boom.name, bad.id, "failed", ["duration", "exception"]) in seen
    assert [s[0] for s in seen if s[2] == ok.id] == ["enqueued", "started", "succeeded"]


def test_middleware_and_header_settings_are_checked(jobs_settings):
    from django.core import checks

    from django_jobs.conf import SettingError, build_settings

    with override_settings(DJANGO_JOBS={**jobs_settings, "MIDDLEWARE": ["nowhere.Missing", "json.dumps"]}):
        errors = [e for e in checks.run_checks(tags=["django_jobs"]) if e.id == "django_jobs.E008"]
    assert [("nowhere.Missing" in e.msg, "json.dumps" in e.msg) for e in errors] == [(True, False), (False, True)]
    for key, bad in (("MIDDLEWARE", "django_jobs.middleware.JobLoggingMiddleware"), ("REQUEST_ID_HEADER", "X Request"),
                     ("REQUEST_ID_HEADER", "HTTP_X_REQUEST_ID")):
        with pytest.raises(SettingError, match=key):
            build_settings({key: bad})
    assert build_settings({}).request_id_header == "X-Request-ID"




def test_job_middleware_also_wraps_async_jobs_with_their_correlation_id(jobs_settings, work):
    from tests.testapp.jobs import async_add

    calls.clear()
    with override_settings(DJANGO_JOBS={**jobs_settings, "MIDDLEWARE": ["django_jobs.middleware.JobCorrelationMiddleware", f"{__name__}.Recorder"]}):
        with correlation_id("async-cid"):
            result = async_add.enqueue(1, 2)
        work()
    result.refresh()
    assert result.return_value == 3
    assert calls == [("before", async_add.name, "async-cid"), ("after", async_add.name)]
