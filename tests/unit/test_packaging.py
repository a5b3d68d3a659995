"""The built wheel carries everything the package reads at run time."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "django_jobs"


@pytest.fixture(scope="module")
def wheel_names(tmp_path_factory) -> set[str]:
    """The file names inside a wheel built from this checkout (built once for the module)."""
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(out), str(ROOT)],
        check=True, capture_output=True, text=True,
    )
    (wheel,) = out.glob("django_jobs_redis-*.whl")
    return set(zipfile.ZipFile(wheel).namelist())


def shipped(*folders: str) -> set[str]:
    """The wheel names of every file under ``folders`` of the package."""
    return {f"django_jobs/{p.relative_to(PACKAGE)}" for folder in folders for p in (PACKAGE / folder).rglob("*") if p.is_file() and "__pycache__" not in p.parts}


@pytest.mark.timeout(300)
def test_wheel_includes_lua_scripts_migrations_and_type_marker(wheel_names):
    lua = {n for n in wheel_names if n.endswith(".lua")}
    expected = {n for n in shipped("engine/lua") if n.endswith(".lua")}
    assert expected and expected <= lua
    migrations = {n for n in shipped("migrations") if n.endswith(".py")}
    assert "django_jobs/migrations/0001_initial.py" in migrations and migrations <= wheel_names
    assert "django_jobs/py.typed" in wheel_names
    assert "django_jobs/management/commands/runworkers.py" in wheel_names
    assert not any(n.startswith(("tests/", "testproject/", "bench/")) for n in wheel_names)


@pytest.mark.timeout(300)
def test_the_wheel_ships_every_admin_template_and_static_file(wheel_names):
    """No CDN: the admin pages need nothing but what the package carries."""
    expected = shipped("templates", "static")
    assert "django_jobs/static/django_jobs/admin.css" in expected
    assert "django_jobs/templates/admin/django_jobs/dashboard.html" in expected
    assert expected <= wheel_names, sorted(expected - wheel_names)
