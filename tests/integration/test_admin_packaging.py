"""The wheel carries the admin's templates and static files (no CDN: the pages need nothing else)."""

from __future__ import annotations

import subprocess
import sys
import zipfile

import pytest

from tests.conftest import ROOT


@pytest.mark.timeout(300)
def test_the_wheel_ships_every_admin_template_and_static_file(tmp_path):
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp_path), str(ROOT)],
        check=True, capture_output=True, text=True,
    )
    (wheel,) = tmp_path.glob("django_jobs-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    package = ROOT / "django_jobs"
    expected = {
        f"django_jobs/{p.relative_to(package)}"
        for folder in ("templates", "static") for p in (package / folder).rglob("*") if p.is_file()
    }
    assert "django_jobs/static/django_jobs/admin.css" in expected
    assert "django_jobs/templates/admin/django_jobs/dashboard.html" in expected
    assert expected <= names, sorted(expected - names)
