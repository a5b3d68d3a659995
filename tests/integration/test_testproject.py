"""The demo site in testproject/: its page and buttons, ``manage.py check``, and the demo flow.

The views run in this process against the test Redis (the testproject's apps, middleware and
templates are installed with override_settings); ``manage.py`` runs in subprocesses with the
testproject's own settings and an embedded Redis in a temporary directory.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest
from django.conf import settings
from django.test import Client, override_settings

from django_jobs.compat import TaskResultStatus
from tests.conftest import ROOT, TESTPROJECT
from tests.redis_server import wait_until

#: button -> (job name, queue, state right after enqueue, number of jobs)
BUTTONS = {
    "fast": ("demo.jobs.fast", "default", "waiting", 1),
    "slow": ("demo.jobs.slow", "low", "waiting", 1),
    "flaky": ("demo.jobs.flaky", "default", "waiting", 1),
    "async": ("demo.jobs.fetch_async", "high", "waiting", 1),
    "bulk": ("demo.jobs.fast", "default", "waiting", 100),
    "delayed": ("demo.jobs.fast", "default", "scheduled", 1),
    "plain": ("demo.jobs.shout", "high", "waiting", 1),
    "order": ("demo.jobs.place_order", "default", "waiting", 1),
}


pytestmark = pytest.mark.usefixtures("testproject_on_path")


@pytest.fixture
def site(jobs_settings):
    """The demo app installed in the test settings, with the testproject's middleware and templates."""
    from testproject import settings as demo_settings

    with override_settings(
        INSTALLED_APPS=[
            *settings.INSTALLED_APPS,
            *(app for app in ("django.contrib.admin", "django.contrib.sessions", "django.contrib.messages") if app not in settings.INSTALLED_APPS),
            "demo",
        ],
        MIDDLEWARE=demo_settings.MIDDLEWARE,
        TEMPLATES=demo_settings.TEMPLATES,
        ROOT_URLCONF="testproject.urls",
        SESSION_ENGINE="django.contrib.sessions.backends.signed_cookies",  # no database needed
        DJANGO_JOBS={**jobs_settings, "QUEUES": demo_settings.DJANGO_JOBS["QUEUES"]},
    ):
        yield Client(enforce_csrf_checks=True)


def csrf_token(client: Client) -> str:
    page = client.get("/")
    match = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.content.decode())
    assert match, "the page has no CSRF token"
    return match.group(1)


def press(client: Client, kind: str) -> list[str]:
    """Press button ``kind``; return the ids it enqueued (from the session)."""
    response = client.post(f"/enqueue/{kind}/", {"csrfmiddlewaretoken": csrf_token(client)})
    assert response.status_code == 302 and response["Location"] == "/"
    entry = client.session["demo_jobs"][0]
    assert entry["kind"] == kind
    return entry["ids"]


def test_the_page_renders_every_button_as_a_post_form_with_a_csrf_token(site):
    response = site.get("/")
    assert response.status_code == 200
    html = response.content.decode()
    for kind in BUTTONS:
        assert f'<form method="post" action="/enqueue/{kind}/">' in html
    assert html.count('name="csrfmiddlewaretoken"') == len(BUTTONS) + 1  # + "Forget this list"
    assert "No jobs yet" in html
    assert 'href="/admin/"' in html


def test_a_post_without_the_csrf_token_is_refused_and_enqueues_nothing(site, engine):
    response = site.post("/enqueue/fast/")
    assert response.status_code == 403
    assert engine.counts("default")["waiting"] == 0


def test_buttons_only_accept_post(site):
    assert site.get("/enqueue/fast/").status_code == 405
    assert site.post("/enqueue/nothing/", {"csrfmiddlewaretoken": csrf_token(site)}).status_code == 404


@pytest.mark.parametrize("kind", list(BUTTONS))
def test_each_button_enqueues_its_job(site, engine, r, kind):
    from demo.views import ACTIONS, DELAY_SECONDS

    name, queue, state, count = BUTTONS[kind]
    ids = press(site, kind)
    assert len(ids) == count == len(set(ids))
    for job_id in ids[:3]:
        result = ACTIONS[kind].task.get_result(job_id)
        assert result.task.module_path == name
        assert result.queue == queue
        assert result.state == state
    assert engine.counts(queue)[state] == count
    if kind == "flaky":
        assert result.task.attempts == 3
        assert result.kwargs == {"reason": "demo button"}
    if kind == "delayed":
        due_ms = r.zscore(engine.keys(queue).scheduled, ids[0])
        seconds, micros = r.time()
        now_ms = seconds * 1000 + micros // 1000
        assert DELAY_SECONDS * 1000 - 2000 < due_ms - now_ms <= DELAY_SECONDS * 1000
    assert f'<tr class="job" data-kind="{kind}">' in site.get("/").content.decode()


def test_the_job_list_shows_live_states_and_results(site, work):
    for kind in ("fast", "bulk", "plain", "async"):
        press(site, kind)
    before = site.get("/jobs/").content.decode()
    assert before.count('<tr class="job"') == 4
    assert "waiting 100" in before

    assert work() == 103
    html = site.get("/jobs/").content.decode()
    assert "completed 100" in html
    assert "→ 49" in html  # fast(7)
    assert "→ &#x27;HELLO FROM DJANGO.TASKS!&#x27;" in html  # the plain @task
    assert "→ {&#x27;name&#x27;: &#x27;demo&#x27;, &#x27;waited&#x27;: 0.5}" in html  # the async job
    assert html == site.get("/").content.decode().split('<div id="jobs" data-url="/jobs/">')[1].split("</div>")[0]

    site.post("/clear/", {"csrfmiddlewaretoken": csrf_token(site)})
    assert "No jobs yet" in site.get("/jobs/").content.decode()


# -- manage.py and the launcher, in subprocesses with the testproject's own settings ----------


@pytest.fixture
def demo_env(tmp_path) -> dict[str, str]:
    """Environment of a testproject subprocess: its settings, a temporary database and embedded Redis."""
    return {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH", "")])),
        "DJANGO_SETTINGS_MODULE": "testproject.settings",  # pytest-django exported tests.settings
        "DEMO_EMBEDDED_DIR": str(tmp_path / "emb"),
        "DEMO_DATABASE": str(tmp_path / "db.sqlite3"),
        "PYTHONUNBUFFERED": "1",
    }


def manage(env: dict[str, str], *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "manage.py", *args], cwd=TESTPROJECT, env=env,
        capture_output=True, text=True, timeout=timeout,
    )


def start_demo_workers(env: dict[str, str], *args: str) -> subprocess.Popen[str]:
    """Start the testproject's runworkers and wait until it has started the embedded Redis."""
    directory = Path(env["DEMO_EMBEDDED_DIR"]).resolve()
    workers = subprocess.Popen(
        [sys.executable, "manage.py", "runworkers", *args, "--grace", "5"],
        cwd=TESTPROJECT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        start_new_session=True,
    )
    wait_until(lambda: (directory / "users" / str(workers.pid)).exists() or workers.poll() is not None,
               timeout=15, message="runworkers to start the embedded Redis")
    assert workers.poll() is None, workers.stdout.read()
    return workers


def embedded_gone(directory: Path) -> bool:
    from django_jobs.engine import embedded

    return embedded.server_pid(directory) is None and not list((directory / "users").iterdir())


def test_manage_py_check_of_the_testproject_passes(demo_env):
    result = manage(demo_env, "check", "--fail-level", "WARNING")
    assert result.returncode == 0, result.stderr
    assert "System check identified no issues" in result.stdout


def test_runworkers_of_the_testproject_runs_jobs_on_the_embedded_redis_and_stops_it(demo_env):
    from django_jobs.engine import embedded

    directory = Path(demo_env["DEMO_EMBEDDED_DIR"]).resolve()
    workers = start_demo_workers(demo_env, "--processes", "1", "--threads", "4")
    try:

        result = manage(demo_env, "demo_enqueue", "--kinds", "fast,async,plain,bulk", "--wait", "15")
        assert result.returncode == 0, result.stderr
        assert result.stdout.count(": completed") == 103

        # Another process reads the outcome from the same server.
        fast_id = re.search(r"enqueued fast +1 job\(s\), first id (\w+)", result.stdout).group(1)
        from demo import jobs

        from testproject import settings as demo_settings

        sock = embedded.socket_path(directory)
        with override_settings(DJANGO_JOBS={**demo_settings.DJANGO_JOBS, "REDIS_URL": f"unix://{sock}"}):
            outcome = jobs.fast.get_result(fast_id)
            assert outcome.status == TaskResultStatus.SUCCESSFUL
            assert outcome.return_value == 49
    finally:
        os.kill(workers.pid, signal.SIGTERM)
        output, _ = workers.communicate(timeout=20)
    assert workers.returncode == 0, output
    assert "(embedded)" in output
    assert "Job demo.jobs.fetch_async" in output and "succeeded" in output
    assert "Stopped the embedded Redis" in output
    assert embedded_gone(directory)


def test_the_demo_launcher_serves_the_site_runs_sample_jobs_and_stops_everything_on_ctrl_c(demo_env, tmp_path):
    from tests.redis_server import free_port

    port = free_port()
    log_path = tmp_path / "demo.log"
    with open(log_path, "w") as log:
        launcher = subprocess.Popen(
            [sys.executable, "testproject/rundemo.py", "--no-venv", "--port", str(port),
             "--processes", "1", "--threads", "4", "--samples", "fast,async,plain"],
            cwd=ROOT, env=demo_env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )
    try:
        wait_until(lambda: "The demo runs at" in log_path.read_text() or launcher.poll() is not None,
                   timeout=40, interval=0.1, message="the demo to start")
        assert launcher.poll() is None, log_path.read_text()
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as response:
            assert response.status == 200
            assert "django_jobs demo" in response.read().decode()
        wait_until(lambda: log_path.read_text().count(" succeeded in ") >= 3, timeout=15,
                   message="the sample jobs to run")
    finally:
        launcher.send_signal(signal.SIGINT)  # what Ctrl-C in the terminal does
        launcher.wait(timeout=40)
    text = log_path.read_text()
    assert launcher.returncode == 0, text
    assert f"The demo runs at http://127.0.0.1:{port}/" in text
    assert "user admin, password admin" in text
    assert "stopping the web server (SIGINT)" in text
    assert "stopping the workers" in text and "SIGTERM" in text
    assert "The embedded Redis has shut down" in text
    assert embedded_gone(Path(demo_env["DEMO_EMBEDDED_DIR"]).resolve())
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=1).close()


def test_a_request_id_sent_to_the_testproject_reaches_the_json_logs_of_its_job_and_child(demo_env):
    """X-Request-ID: abc123 on a real testproject request; the workers' JSON lines of both jobs carry it."""
    assert manage(demo_env, "migrate", "--noinput").returncode == 0
    workers = start_demo_workers(demo_env, "--processes", "2", "--threads", "2")
    try:
        # The request goes through the testproject's whole middleware stack and its real view.
        code = (
            "from django.test import Client; from django_jobs.compat import TaskResultStatus; from demo import jobs\n"
            "c = Client(SERVER_NAME='localhost')\n"
            "r = c.post('/enqueue/order/', HTTP_X_REQUEST_ID='abc123')\n"
            "assert r.status_code == 302 and r['X-Request-ID'] == 'abc123', r\n"
            "[entry] = c.session['demo_jobs'][:1]\n"
            "parent = jobs.place_order.get_result(entry['ids'][0]).wait(timeout=20)\n"
            "child = jobs.send_receipt.get_result(parent.return_value).wait(timeout=20)\n"
            "print('ids', parent.id, child.id, parent.correlation_id, child.correlation_id, child.parent_id)\n"
        )
        result = manage(demo_env, "shell", "-c", code)
        assert result.returncode == 0, result.stderr + result.stdout
        parent_id, child_id, *cids, child_parent = result.stdout.split("ids ", 1)[1].split()
        assert cids == ["abc123", "abc123"] and child_parent == parent_id
    finally:
        os.kill(workers.pid, signal.SIGTERM)
        output, _ = workers.communicate(timeout=20)
    assert workers.returncode == 0, output
    lines = [json.loads(line) for line in output.splitlines() if line.startswith("{")]
    for job_id, message in ((parent_id, "placing order 7"), (child_id, "sending the receipt of order 7")):
        mine = [line for line in lines if line.get("job_id") == job_id]
        assert message in {line["message"] for line in mine}, output
        assert any(line.get("action") == "job_succeeded" for line in mine), output
        assert all(line["correlation_id"] == "abc123" for line in mine), output
