"""The built wheel carries everything the package reads at run time."""

from __future__ import annotations

import re
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "django_jobs"


@pytest.fixture(scope="module")
def wheel_names(built_wheel) -> set[str]:
    """The file names inside a wheel built from this checkout (once per run: tests/conftest.py)."""
    return set(zipfile.ZipFile(built_wheel).namelist())


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


@pytest.fixture(scope="module")
def wheel_metadata(built_wheel) -> str:
    """The METADATA file of a wheel built from this checkout."""
    with zipfile.ZipFile(built_wheel) as zf:
        (name,) = [n for n in zf.namelist() if n.endswith(".dist-info/METADATA")]
        licence = [n for n in zf.namelist() if n.endswith("LICENSE") and ".dist-info/" in n]
        assert licence, "the wheel carries no LICENSE"
        return zf.read(name).decode()


@pytest.mark.timeout(300)
def test_the_distribution_is_django_jobs_redis_with_a_standalone_description(wheel_metadata):
    headers, _, description = wheel_metadata.partition("\n\n")
    assert "Name: django-jobs-redis" in headers.splitlines()
    assert "License-Expression: BSD-3-Clause" in headers
    assert "Description-Content-Type: text/markdown" in headers
    for version in ("5.2", "6.0", "6.1"):
        assert f"Classifier: Framework :: Django :: {version}" in headers
    for python in ("3.12", "3.13"):
        assert f"Classifier: Programming Language :: Python :: {python}" in headers
    # Django 5.2 gets the backport through the django52 extra; Django 6 needs nothing more.
    from packaging.requirements import Requirement

    requires = [Requirement(line.split(":", 1)[1]) for line in headers.splitlines() if line.startswith("Requires-Dist:")]
    plain = {r.name.lower(): r for r in requires if r.marker is None}
    django52 = {r.name.lower(): r for r in requires if r.marker and r.marker.evaluate({"extra": "django52"})}
    assert "5.2.0" in plain["django"].specifier and "django-tasks" not in plain
    assert "5.2.9" in django52["django"].specifier and "6.0" not in django52["django"].specifier
    assert "0.12.0" in django52["django-tasks"].specifier
    # The package index shows PYPI.md: it installs the right name and its links work off this repository.
    assert description.strip() == (ROOT / "PYPI.md").read_text().strip()
    assert "pip install django-jobs-redis" in description
    links = re.findall(r"\]\(([^)]+)\)|<(https?://[^>]+)>", description)
    targets = [a or b for a, b in links]
    assert targets and all(t.startswith("https://") for t in targets), targets


def test_the_changelog_and_licence_are_there():
    changelog = (ROOT / "CHANGELOG.md").read_text()
    assert "## Unreleased" in changelog and "## 0.1.0 - " in changelog
    assert "keepachangelog.com" in changelog
    licence = (ROOT / "LICENSE").read_text()
    assert licence.startswith("BSD 3-Clause License") and "django_jobs developers" in licence
