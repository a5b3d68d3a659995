"""A wrong setting never crashes with a traceback: check lists it, runworkers refuses it, a web process logs it.

The settings module (tests/settings_problems.py) has a URLconf that imports a module with @job,
as a project's views do.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest
from django.test import override_settings

from tests.conftest import ROOT
from tests.redis_server import env_for

BAD = {
    "QUEUE": {"emails": {}},
    "QUEUES": {"default": {"RATE_LIMIT": "ten/s"}},
    "CRON": [{"NAME": "nightly", "JOB": "tests.testapp.jobs.add", "SCHEDULE": "61 * * * *"}],
}


def manage(redis_server, prefix, *args: str, patch: dict | None = None, timeout: float = 60, **env: str) -> subprocess.CompletedProcess[str]:
    environment = env_for(redis_server, prefix, DJANGO_SETTINGS_MODULE="tests.settings_problems",
                          DJJ_JOBS_PATCH=json.dumps(patch or {}), **env)
    return subprocess.run([sys.executable, "-m", "django", *args], cwd=ROOT, env=environment,
                          capture_output=True, text=True, timeout=timeout, check=False)


def test_check_lists_every_problem_with_its_id_and_no_traceback(redis_server, prefix):
    done = manage(redis_server, prefix, "check", patch=BAD)
    out = done.stdout + done.stderr
    assert done.returncode == 1 and "Traceback" not in out
    assert "(django_jobs.E001) Unknown DJANGO_JOBS key 'QUEUE'." in out and "Did you mean 'QUEUES'?" in out
    assert "(django_jobs.E004) DJANGO_JOBS['QUEUES']['default']['RATE_LIMIT']" in out
    assert "(django_jobs.E020) DJANGO_JOBS['CRON']['nightly']['SCHEDULE'] is '61 * * * *'" in out


@pytest.mark.parametrize("skip_checks", [False, True])
def test_runworkers_refuses_to_start_and_prints_the_same_list(redis_server, prefix, skip_checks):
    done = manage(redis_server, prefix, "runworkers", "--burst", *(["--skip-checks"] if skip_checks else []), patch=BAD)
    out = done.stdout + done.stderr
    assert done.returncode != 0 and "Traceback" not in out
    for check_id in ("E001", "E004", "E020"):
        assert f"(django_jobs.{check_id})" in out
    assert "django_jobs workers" not in out  # it never started


def test_a_web_process_logs_each_problem_once_at_start_up(redis_server, prefix):
    script = "import django; django.setup(); django.setup(); from django.urls import resolve; resolve('/admin/')"
    environment = env_for(redis_server, prefix, DJANGO_SETTINGS_MODULE="tests.settings_problems",
                          DJJ_JOBS_PATCH=json.dumps({"REDIS_URI": "redis://elsewhere:6379/0"}), DJJ_LOG_LEVEL="INFO")
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=environment, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    lines = [line for line in done.stderr.splitlines() if "django_jobs.E001" in line]
    assert len(lines) == 1 and "'REDIS_URI'" in lines[0] and "Did you mean 'REDIS_URL'?" in lines[0]


def _later(x: int) -> int:
    return x


def test_declaring_a_job_never_raises_for_a_settings_problem(jobs_settings):
    from django_jobs import job
    from django_jobs.conf import SettingError

    with override_settings(DJANGO_JOBS={**jobs_settings, "LEASE_SECONDS": "soon"}):
        task = job(_later)
        with pytest.raises(SettingError, match="LEASE_SECONDS"):
            task.enqueue(1)


# -- the embedded Redis is for development ---------------------------------------------------------


def test_without_redis_and_debug_false_the_embedded_server_is_refused(jobs_settings, tmp_path):
    from django_jobs.conf import SettingError
    from django_jobs.engine import get_engine, reset_engine
    from tests.testapp import jobs

    value = {k: v for k, v in jobs_settings.items() if k != "REDIS_URL"} | {"EMBEDDED_DIR": str(tmp_path / "e")}
    with override_settings(DJANGO_JOBS=value, DEBUG=False):
        reset_engine()
        with pytest.raises(SettingError, match="the embedded Redis is for development"):
            get_engine()
        with pytest.raises(SettingError, match="EMBEDDED'\\] = True"):
            jobs.add.enqueue(1, 2)
        from django_jobs.problems import problems

        assert "django_jobs.E010" in [m.id for m in problems()]
    assert not (tmp_path / "e").exists()  # no server was started


def test_runworkers_refuses_the_embedded_server_without_debug(redis_server, prefix, tmp_path):
    done = manage(redis_server, prefix, "runworkers", "--burst", patch={"REDIS_URL": None, "EMBEDDED_DIR": str(tmp_path / "e")})
    out = done.stdout + done.stderr
    assert done.returncode != 0 and "(django_jobs.E010)" in out and "Traceback" not in out
    assert not (tmp_path / "e").exists()


def test_embedded_true_allows_it_without_debug_and_false_refuses_it_even_with_debug(jobs_settings, tmp_path):
    from django_jobs.conf import embedded_refusal, get_settings

    base = {k: v for k, v in jobs_settings.items() if k != "REDIS_URL"}
    with override_settings(DJANGO_JOBS={**base, "EMBEDDED": True}, DEBUG=False):
        assert embedded_refusal(get_settings()) is None
    with override_settings(DJANGO_JOBS={**base, "EMBEDDED": False}, DEBUG=True):
        assert "is False" in str(embedded_refusal(get_settings()))
    with override_settings(DJANGO_JOBS=base, DEBUG=True):
        assert embedded_refusal(get_settings()) is None


# -- refused credentials ---------------------------------------------------------------------------


def test_runworkers_against_a_redis_that_refuses_the_password_exits_with_one_line(redis_server, prefix):
    from tests.redis_server import RedisServer

    server = RedisServer(appendonly=False)
    server.start()
    try:
        with server.client() as client:
            client.config_set("requirepass", "right")
        url = f"redis://:wrong@127.0.0.1:{server.port}/0"
        done = manage(redis_server, prefix, "runworkers", "--burst", "--skip-checks", patch={"REDIS_URL": url}, timeout=30)
    finally:
        server.kill()
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert done.returncode != 0
    assert len(lines) == 1 and "refused the credentials" in lines[0] and "wrong" not in lines[0].replace("wrong password", "")


# -- job middleware vs web middleware ----------------------------------------------------------------


def test_a_job_middleware_in_djangos_middleware_is_an_error_with_a_hint(settings):
    from django_jobs.problems import check_django_middleware

    settings.MIDDLEWARE = [*settings.MIDDLEWARE, "django_jobs.middleware.CorrelationMiddleware"]
    (error,) = check_django_middleware()
    assert error.id == "django_jobs.E009" and "django_jobs.correlation.CorrelationIdMiddleware" in error.hint
    settings.MIDDLEWARE = [*settings.MIDDLEWARE[:-1], "django_jobs.middleware.JobLoggingMiddleware"]
    assert [e.id for e in check_django_middleware()] == ["django_jobs.E009"]


def test_the_web_middleware_in_djangos_job_middleware_is_an_error_and_old_names_warn(jobs_settings):
    from django_jobs.problems import check_middleware

    web = "django_jobs.correlation.CorrelationIdMiddleware"
    with override_settings(DJANGO_JOBS={**jobs_settings, "MIDDLEWARE": [web, "django_jobs.middleware.LoggingMiddleware"]}):
        found = check_middleware()
    assert [m.id for m in found] == ["django_jobs.E008", "django_jobs.W004"]
    assert "JobLoggingMiddleware" in found[1].hint


def test_the_old_job_middleware_names_are_deprecated_aliases():
    from django_jobs import middleware

    with pytest.warns(DeprecationWarning, match="JobCorrelationMiddleware"):
        assert middleware.CorrelationMiddleware is middleware.JobCorrelationMiddleware


# -- runworkers --reload -------------------------------------------------------------------------------


def test_runworkers_reload_restarts_the_workers_when_a_job_module_changes(redis_server, prefix, tmp_path):
    import os
    import signal

    module = tmp_path / "reload_probe.py"
    module.write_text("from django_jobs import job\n\n@job\ndef probe() -> int:\n    return 1\n")
    patch = {"IMPORT_MODULES": ["tests.testapp.jobs", "reload_probe"]}
    environment = env_for(redis_server, prefix, DJANGO_SETTINGS_MODULE="tests.settings_problems", DJJ_JOBS_PATCH=json.dumps(patch),
                          PYTHONPATH=os.pathsep.join([str(tmp_path), str(ROOT), os.environ.get("PYTHONPATH", "")]))
    proc = subprocess.Popen([sys.executable, "-m", "django", "runworkers", "--reload", "-p", "1", "-t", "1", "--no-mirror"],
                            cwd=ROOT, env=environment, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    seen: list[str] = []

    def read_until(text: str, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            seen.append(line)
            if text in line:
                return
        raise AssertionError(f"{text!r} not seen in {''.join(seen)}")

    try:
        read_until("django_jobs workers")
        time.sleep(1.1)  # mtime resolution
        module.write_text(module.read_text() + "\n# changed\n")
        read_until("reload_probe.py changed, restarting the workers.")
        read_until("django_jobs workers")
        os.killpg(proc.pid, signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        proc.stdout.close()


# -- one line per Redis outage (scheduler, mirror) -----------------------------------------------------


def _dead_redis_settings(jobs_settings):
    from tests.redis_server import free_port

    return {**jobs_settings, "REDIS_URL": f"redis://127.0.0.1:{free_port()}/0"}


def _outage_lines(caplog, who: str) -> list:
    return [r for r in caplog.records if r.getMessage().startswith(who)]


def test_the_scheduler_logs_one_line_per_redis_outage_not_a_traceback_per_retry(jobs_settings, caplog):
    import logging

    from django_jobs.engine import reset_engine
    from django_jobs.scheduler import Scheduler

    caplog.set_level(logging.INFO, logger="django_jobs")
    with override_settings(DJANGO_JOBS=_dead_redis_settings(jobs_settings)):
        reset_engine()
        scheduler = Scheduler(schedules=[])
        scheduler.start()
        deadline = time.monotonic() + 10
        while scheduler._errors < 4 and time.monotonic() < deadline:
            time.sleep(0.05)
        scheduler.stop()
        reset_engine()
    assert scheduler._errors >= 4  # it retried, and
    lines = _outage_lines(caplog, "Scheduler")
    assert len(lines) == 1 and "cannot reach Redis" in lines[0].getMessage() and lines[0].exc_info is None


def test_the_mirror_logs_one_line_per_redis_outage(jobs_settings, caplog, db):
    import logging
    import threading

    from django_jobs.engine import reset_engine
    from django_jobs.mirror import Mirror

    caplog.set_level(logging.INFO, logger="django_jobs")
    stop = threading.Event()
    with override_settings(DJANGO_JOBS=_dead_redis_settings(jobs_settings)):
        reset_engine()
        mirror = Mirror(["default"])
        thread = threading.Thread(target=mirror.run, args=(stop.is_set,), daemon=True)
        thread.start()
        time.sleep(2.5)  # ~5 failed steps with the backoff
        stop.set()
        thread.join(10)
        reset_engine()
    lines = _outage_lines(caplog, "Mirror")
    assert len(lines) == 1 and "cannot reach Redis" in lines[0].getMessage() and lines[0].exc_info is None


def test_an_invalid_job_cron_option_never_raises_at_declaration_and_check_reports_it(jobs_settings):
    from django_jobs import job, scheduler
    from django_jobs.checks import check_cron_jobs

    try:
        task = job(cron="61 * * * *")(_nightly)
        assert task.module_path.endswith("._nightly")
        found = check_cron_jobs()
        assert [m.id for m in found] == ["django_jobs.E020"]
        assert "@job(cron=...)" in found[0].msg and "'61 * * * *'" in found[0].msg
        assert all(s.job != task.module_path for s in scheduler.load_schedules())
    finally:
        scheduler._declare_errors.clear()


def _nightly() -> None:
    pass


def _on_a_gone_queue() -> None:
    pass


def test_a_job_on_a_queue_the_settings_lack_is_declared_then_reported_and_refused_at_enqueue(jobs_settings):
    from django_jobs import job, registry
    from django_jobs.checks import check_job_queues
    from django_jobs.compat import InvalidTask

    task = job(queue="archive")(_on_a_gone_queue)  # no 'archive' in QUEUES: declaring does not raise
    try:
        _check_the_gone_queue(task, jobs_settings, check_job_queues, InvalidTask)
    finally:
        registry._registry.pop(task.module_path, None)  # later checks judge only the suite's own jobs


def _check_the_gone_queue(task, jobs_settings, check_job_queues, invalid_task) -> None:
    found = [m for m in check_job_queues() if task.module_path in m.msg]
    assert [m.id for m in found] == ["django_jobs.E011"] and "'archive'" in found[0].msg and "default" in found[0].hint
    with pytest.raises(invalid_task, match="'archive' is not configured"):
        task.enqueue()
    with pytest.raises(invalid_task, match="'archive' is not configured"):
        task.using(priority=3)  # a copy made later is validated at once, as in Django
    with override_settings(DJANGO_JOBS={**jobs_settings, "QUEUES": {**jobs_settings["QUEUES"], "archive": {}}}):
        assert [m for m in check_job_queues() if task.module_path in m.msg] == []
        task.enqueue()
