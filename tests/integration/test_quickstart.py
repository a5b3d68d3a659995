"""docs/quickstart.md, followed literally in an empty directory, works.

The test reads the quickstart's blocks in order and performs them, so the page and the test
cannot drift apart:

- each ```` ```shell ```` block (without ``test``): every line is a command, run with bash in
  the current directory (``cd`` changes it, ``source .venv/bin/activate`` puts the venv first
  on PATH);
- each ```` ```python ```` block whose first line is ``# <path>`` is that file's whole content;
  ``# <path>: add at the end`` appends the block to the file.

Where a person and a test must differ, the command is adapted, and only there:

- ``pip install django-jobs-redis`` installs the wheel built from this checkout (its
  dependencies come from the package index, through pip's cache);
- ``createsuperuser`` runs with ``--noinput`` and the ``DJANGO_SUPERUSER_*`` variables;
- ``runworkers`` and ``runserver`` run in the background (as in their own terminals),
  ``runserver`` on a free port without the auto-reloader; ``curl`` is sent to that port.

Then the job enqueued by the view must run on ``runworkers`` and show as completed in the
admin's job list, read over HTTP after logging in.
"""

from __future__ import annotations

import http.cookiejar
import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time
import tomllib
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.redis_server import free_port, wait_until

ROOT = Path(__file__).resolve().parents[2]
QUICKSTART = ROOT / "docs" / "quickstart.md"
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
DIST_NAME = PROJECT["name"]

FENCE = re.compile(r"^```(?P<lang>\w+)(?P<flags>[^\n]*)\n(?P<code>.*?)^```\s*$", re.MULTILINE | re.DOTALL)
FILE_HEADER = re.compile(r"^# (?P<path>[\w./-]+\.py)(?P<append>: add at the end)?$")
ADMIN_USER, ADMIN_PASSWORD = "admin", "quickstart-Passw0rd"

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]


@dataclass
class Step:
    """One thing the quickstart tells the reader to do."""

    kind: str  # "command" | "write" | "append"
    text: str  # the command line, or the file's content
    path: str = ""


def quickstart_steps() -> list[Step]:
    """The commands and files of docs/quickstart.md, in order."""
    steps: list[Step] = []
    for match in FENCE.finditer(QUICKSTART.read_text()):
        lang, flags, code = match["lang"], match["flags"].split(), match["code"]
        if lang == "shell" and "test" not in flags:
            for line in code.splitlines():
                line = line.split(" #", 1)[0].strip()
                if line and not line.startswith("#"):
                    steps.append(Step("command", line))
        elif lang == "python":
            first, _, rest = code.partition("\n")
            header = FILE_HEADER.match(first.strip())
            if header:
                steps.append(Step("append" if header["append"] else "write", rest, header["path"]))
    return steps


def test_the_quickstart_has_the_steps_a_newcomer_needs() -> None:
    """The page covers the whole path, so the literal run below exercises all of it."""
    steps = quickstart_steps()
    commands = [s.text for s in steps if s.kind == "command"]
    files = {s.path: s for s in steps if s.kind != "command"}
    for expected in (
        "python3 -m venv .venv", f"pip install {DIST_NAME}", "django-admin startproject mysite .",
        "python manage.py startapp myapp", "python manage.py migrate", "python manage.py createsuperuser",
        "python manage.py runworkers", "python manage.py runserver",
    ):
        assert expected in commands, expected
    assert any(".django_jobs/" in c and ".gitignore" in c for c in commands)
    assert any(c.startswith("curl ") for c in commands)
    assert set(files) == {"mysite/settings.py", "myapp/jobs.py", "myapp/views.py", "mysite/urls.py"}
    settings_code = files["mysite/settings.py"].text
    assert files["mysite/settings.py"].kind == "append"
    assert "django_jobs.correlation.CorrelationIdMiddleware" in settings_code
    assert '"django_jobs"' in settings_code and '"myapp"' in settings_code
    # The page says Redis can be left out (the embedded one): the settings must not set one.
    assert "REDIS_URL" not in re.sub(r"#.*", "", settings_code)
    assert "csrf" in files["myapp/views.py"].text.lower()


@dataclass
class Reader:
    """A person at a shell: a working directory, an environment, background processes."""

    cwd: Path
    wheel: Path
    env: dict[str, str]
    port: int
    background: dict[str, subprocess.Popen[str]] = field(default_factory=dict)
    logs: dict[str, Path] = field(default_factory=dict)

    def run(self, command: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            ["bash", "-c", command], cwd=self.cwd, env=self.env, capture_output=True, text=True, timeout=timeout, check=False,
        )
        assert proc.returncode == 0, f"`{command}` failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
        return proc

    def start(self, name: str, command: str) -> None:
        log = self.cwd.parent / f"{name}.log"
        self.logs[name] = log
        with log.open("w") as out:
            self.background[name] = subprocess.Popen(
                ["bash", "-c", f"exec {command}"], cwd=self.cwd, env=self.env,
                stdout=out, stderr=subprocess.STDOUT, text=True, start_new_session=True,
            )

    def log(self, name: str) -> str:
        return self.logs[name].read_text() if name in self.logs else ""

    def perform(self, step: Step) -> str | None:
        """Do one step; return the output of a ``curl``."""
        if step.kind in ("write", "append"):
            path = self.cwd / step.path
            assert step.kind == "append" or path.parent.is_dir(), f"{step.path}: its directory does not exist yet"
            with path.open("a" if step.kind == "append" else "w") as f:
                f.write(("\n" if step.kind == "append" else "") + step.text)
            return None
        words = shlex.split(step.text)
        if words[0] == "cd":
            self.cwd = (self.cwd / words[1]).resolve()
        elif words[:2] == ["source", ".venv/bin/activate"]:
            venv = self.cwd / ".venv"
            self.env["VIRTUAL_ENV"] = str(venv)
            self.env["PATH"] = f"{venv / 'bin'}{os.pathsep}{self.env['PATH']}"
        elif words[:2] == ["pip", "install"]:
            assert words[2:] == [DIST_NAME], step.text
            self.run(f"pip install --disable-pip-version-check -q {shlex.quote(str(self.wheel))}")
        elif words[:3] == ["python", "manage.py", "createsuperuser"]:
            self.run(f"{step.text} --noinput")
        elif words[:3] == ["python", "manage.py", "runworkers"]:
            self.start("runworkers", step.text)
        elif words[:3] == ["python", "manage.py", "runserver"]:
            self.start("runserver", f"{step.text} 127.0.0.1:{self.port} --noreload")
            wait_until(lambda: self.serving() or self.background["runserver"].poll() is not None,
                       timeout=60, interval=0.2, message="runserver to listen")
            assert self.background["runserver"].poll() is None, self.log("runserver")
        elif words[0] == "curl":
            return self.run(step.text.replace("127.0.0.1:8000", f"127.0.0.1:{self.port}"), timeout=60).stdout
        else:
            self.run(step.text)
        return None

    def serving(self) -> bool:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{self.port}/admin/login/", timeout=2).close()
        except OSError:
            return False
        return True

    def stop(self) -> dict[str, int | None]:
        """SIGTERM (Ctrl-C's effect) to everything started in the background; their exit codes."""
        codes: dict[str, int | None] = {}
        for name, proc in reversed(self.background.items()):
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                codes[name] = proc.wait(timeout=40)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                codes[name] = proc.wait(timeout=10)
        return codes


@pytest.fixture
def wheel(built_wheel: Path) -> Path:
    """The wheel of this checkout (tests/conftest.py builds it once per run)."""
    return built_wheel


@pytest.fixture
def reader(tmp_path: Path, wheel: Path) -> Iterator[Reader]:
    # A clean shell: none of the test run's Django settings, paths or Redis.
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "DJJ_", "PYTHON", "VIRTUAL_ENV"))}
    # python3 of the reader's shell is this interpreter's base Python (3.12+).
    base_bin = Path(sys.base_prefix) / "bin"
    env["PATH"] = os.pathsep.join([str(base_bin), *(p for p in env.get("PATH", "").split(os.pathsep) if ".venv" not in p)])
    env.update({
        "PYTHONUNBUFFERED": "1",
        "DJANGO_SUPERUSER_USERNAME": ADMIN_USER,
        "DJANGO_SUPERUSER_EMAIL": "admin@example.com",
        "DJANGO_SUPERUSER_PASSWORD": ADMIN_PASSWORD,
    })
    person = Reader(cwd=tmp_path / "empty", wheel=wheel, env=env, port=free_port())
    person.cwd.mkdir()
    try:
        yield person
    finally:
        person.stop()


def admin_opener(port: int) -> urllib.request.OpenerDirector:
    """An HTTP client logged in to the admin as the quickstart's superuser."""
    jar = http.cookiejar.CookieJar()
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
    login = f"http://127.0.0.1:{port}/admin/login/"
    opener.open(login, timeout=60).read()
    token = next(c.value for c in jar if c.name == "csrftoken")
    data = urllib.parse.urlencode({
        "username": ADMIN_USER, "password": ADMIN_PASSWORD, "csrfmiddlewaretoken": token, "next": "/admin/",
    }).encode()
    request = urllib.request.Request(login, data=data, headers={"Referer": login})
    page = opener.open(request, timeout=60).read().decode()
    assert "Log out" in page or "logout" in page, "the admin login failed"
    return opener


def test_following_the_quickstart_literally_runs_a_job_from_the_view_and_shows_it_in_the_admin(reader: Reader) -> None:
    started = time.monotonic()
    outputs = [out for step in quickstart_steps() if (out := reader.perform(step)) is not None]

    # The installed distribution is this one, under its name (``__version__`` reads it).
    version = reader.run("python -c 'import django_jobs; print(django_jobs.__version__)'").stdout.strip()
    assert version == PROJECT["version"]

    # The curl of step 6: the view enqueued the job.
    assert len(outputs) == 1, outputs
    body = json.loads(outputs[0])
    assert body["status"] == "READY" and body["job_id"], body
    assert reader.background["runworkers"].poll() is None, reader.log("runworkers")
    assert "mirror:    on" in reader.log("runworkers"), reader.log("runworkers")

    # The job ran on runworkers, and the admin's job list (the mirror's rows) shows it completed.
    opener = admin_opener(reader.port)
    changelist = f"http://127.0.0.1:{reader.port}/admin/django_jobs/jobrecord/?q={body['job_id']}"

    seen = {"page": ""}

    def completed_in_the_admin() -> bool:
        seen["page"] = page = opener.open(changelist, timeout=60).read().decode()
        # The job's row (the header's sort links carry the search term too).
        rows = [row for row in re.findall(r"<tr.*?</tr>", page, re.DOTALL) if f'value="{body["job_id"]}"' in row]
        return bool(rows) and "myapp.jobs.send_welcome" in rows[0] and "completed" in rows[0].lower()

    try:
        wait_until(completed_in_the_admin, timeout=60, interval=0.5, message="the job completed in the admin")
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{reader.log('runworkers')}\n{reader.log('runserver')}\n{seen['page'][-4000:]}") from None
    detail = opener.open(
        f"http://127.0.0.1:{reader.port}/admin/django_jobs/jobrecord/{body['job_id']}/change/", timeout=10,
    ).read().decode()
    assert "welcome mail sent to user 42" in detail
    assert "myapp.jobs.send_welcome" in detail

    # Ctrl-C: both stop cleanly, and the embedded Redis goes with the last of them.
    codes = reader.stop()
    assert codes["runworkers"] == 0, reader.log("runworkers")
    project = reader.cwd
    assert (project / ".django_jobs").is_dir(), "the embedded Redis lives in BASE_DIR/.django_jobs/"
    assert ".django_jobs/" in (project / ".gitignore").read_text().splitlines()
    assert not list((project / ".django_jobs" / "users").iterdir()), "a process still uses the embedded Redis"
    print(f"quickstart followed in {time.monotonic() - started:.0f} s")
