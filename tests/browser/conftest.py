"""The browser tests' site: a real ``runserver`` and ``runworkers`` on one SQLite file, and Chromium.

Chromium is Debian's (``apt-get install chromium``; tests/bootstrap.sh does it), driven by
Playwright's Python package: ``playwright install`` (a CDN download) is never needed.
Screenshots go to tests/artifacts/ (git-ignored).

The admin's live pages refresh themselves every few seconds (django_jobs/static/django_jobs/live.js):
an element found before a refresh may be detached or not laid out yet when it is measured. A test
that measures layout turns the page's Live toggle off first (:func:`set_live`, as a user does) and
measures with :func:`box_of`, which waits for the element and measures it again if a refresh met it.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.conftest import ROOT
from tests.redis_server import env_for, free_port, wait_until

ARTIFACTS = ROOT / "tests" / "artifacts"
#: Where Chromium may be: Debian's package first.
CHROMIUM_PATHS = ("/usr/bin/chromium", "/usr/bin/chromium-browser", "/usr/bin/google-chrome")
SETTINGS = "tests.browser.settings"
USER, PASSWORD = "admin", "admin-pw"


def chromium_binary() -> str | None:
    for candidate in (os.environ.get("DJJ_CHROMIUM", ""), *CHROMIUM_PATHS):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    return shutil.which("chromium")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    if chromium_binary() is None:
        skip = pytest.mark.skip(reason="no chromium binary: apt-get install -y chromium (tests/bootstrap.sh does it) or set DJJ_CHROMIUM")
        for item in items:
            if "browser" in item.keywords:
                item.add_marker(skip)


def django_command(env: dict[str, str], *args: str, timeout: float = 120) -> str:
    out = subprocess.run(
        [sys.executable, "-m", "django", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout
    )
    assert out.returncode == 0, f"manage.py {' '.join(args)} failed:\n{out.stdout}\n{out.stderr}"
    return out.stdout


@pytest.fixture(scope="session")
def migrated_db(tmp_path_factory) -> Path:
    """A migrated SQLite file with the superuser admin (copied for each test)."""
    path = tmp_path_factory.mktemp("browser-db") / "template.sqlite3"
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": SETTINGS, "DJJ_SQLITE_PATH": str(path),
           "DJANGO_SUPERUSER_PASSWORD": PASSWORD}
    django_command(env, "migrate", "--noinput")
    django_command(env, "createsuperuser", "--noinput", "--username", USER, "--email", "admin@example.com")
    return path


class Site:
    """A running demo of the admin: web server, workers, the database file and Redis."""

    def __init__(self, env: dict[str, str], url: str) -> None:
        self.env = env
        self.url = url
        self.procs: list[subprocess.Popen[str]] = []

    def start(self, *args: str) -> subprocess.Popen[str]:
        proc = subprocess.Popen(
            [sys.executable, "-m", "django", *args], cwd=ROOT, env=self.env, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, text=True, start_new_session=True,
        )
        self.procs.append(proc)
        return proc

    def mirror(self) -> None:
        """Write the JobRecord rows from Redis with the database mirror (mirror_once)."""
        django_command(self.env, "shell", "-c", "from django_jobs.mirror import mirror_once; mirror_once()")

    def stop(self) -> list[str]:
        outputs = []
        for proc in self.procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                outputs.append(proc.communicate(timeout=30)[0])
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                outputs.append(proc.communicate()[0])
        return outputs


class PortInUse(AssertionError):
    """runserver could not bind its port."""


@contextmanager
def running_site(redis_server, prefix: str, db: Path, *, settings: str = SETTINGS, **env: str) -> Iterator[Site]:
    """Run ``runworkers`` and ``runserver`` on the SQLite file ``db`` until the block ends."""
    port = free_port()
    site = Site(env_for(redis_server, prefix, DJANGO_SETTINGS_MODULE=settings, DJJ_SQLITE_PATH=str(db), **env),
                f"http://127.0.0.1:{port}")
    site.start("runworkers", "--processes", "1", "--threads", "2")

    def up() -> bool:
        if server.poll() is not None:
            output = server.communicate()[0]
            if "port is already in use" in output:
                raise PortInUse(output)
            raise AssertionError("runserver exited:\n" + output)
        try:
            with urllib.request.urlopen(site.url + "/admin/login/", timeout=2) as response:
                return response.status == 200
        except OSError:
            return False

    try:
        for attempt in range(5):
            # A free port may be taken by a parallel test's server before runserver binds it.
            server = site.start("runserver", f"127.0.0.1:{port}", "--noreload", "--insecure")
            try:
                wait_until(up, timeout=30, message="runserver answers")
                break
            except PortInUse:
                site.procs.remove(server)
                if attempt == 4:
                    raise
                port = free_port()
                site.url = f"http://127.0.0.1:{port}"
        yield site
    finally:
        site.stop()


@pytest.fixture
def site(redis_server, prefix, migrated_db, tmp_path) -> Iterator[Site]:
    db = tmp_path / "db.sqlite3"
    shutil.copy(migrated_db, db)
    with running_site(redis_server, prefix, db) as site:
        yield site


@pytest.fixture(scope="module")
def browser():
    """Chromium for one test module: Playwright's sync API runs an event loop in this thread until
    it stops, and the rest of the suite (async tests, async_to_sync) needs none running."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=chromium_binary(), args=["--no-sandbox", "--disable-dev-shm-usage"])
        yield chromium
        chromium.close()


def logged_in(browser, site: Site, width: int = 1280, height: int = 900, *, user: str = USER, password: str = PASSWORD):
    """Open a browser context ``width`` x ``height`` px on ``site`` and log in; returns (context, page)."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    context = browser.new_context(viewport={"width": width, "height": height}, base_url=site.url)
    page = context.new_page()
    page.set_default_timeout(15_000)
    page.goto("/admin/")
    page.fill("#id_username", user)
    page.fill("#id_password", password)
    page.click("input[type=submit]")
    page.wait_for_url("**/admin/")
    return context, page


@pytest.fixture
def page(browser, site):
    """A logged-in page of the admin (user admin)."""
    context, page = logged_in(browser, site)
    yield page
    context.close()


def set_live(page, on: bool) -> None:
    """Turn the page's Live toggle on or off by clicking it, as a user does.

    live.js keeps the choice in localStorage (``djj.live``) and reads the box at every tick and
    again before it swaps a fetched part in, so once the box is unchecked nothing on this page or
    the next ones changes; a whole-page reload already under way lands on a page with Live off.
    """
    from playwright.sync_api import expect

    toggle = page.locator("#djj-live-toggle input")
    toggle.set_checked(on)
    expect(toggle).to_be_checked(checked=on)
    page.wait_for_function("want => window.localStorage.getItem('djj.live') === want", arg="on" if on else "off")


#: How many times :func:`box_of` measures an element that a refresh keeps replacing.
MEASURE_TRIES = 5


def box_of(locator) -> dict[str, float]:
    """The bounding box of ``locator`` once attached and visible, located again if a refresh detached it in between.

    ``Locator.bounding_box()`` finds the element, then measures it: a refresh between the two gives
    None. The box is still required: an element that never shows fails the test.
    """
    for _ in range(MEASURE_TRIES):
        locator.wait_for(state="visible")
        box = locator.bounding_box()
        if box is not None:
            return box
    raise AssertionError(f"{locator} was replaced {MEASURE_TRIES} times while it was measured")


def screenshot(page, name: str) -> Path:
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path
