"""The built wheel carries everything the package reads at run time."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.timeout(300)
def test_wheel_includes_lua_scripts_and_type_marker(tmp_path):
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp_path), str(ROOT)],
        check=True, capture_output=True, text=True,
    )
    (wheel,) = tmp_path.glob("django_jobs-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    lua = {n for n in names if n.endswith(".lua")}
    expected = {f"django_jobs/engine/lua/{p.relative_to(ROOT / 'django_jobs/engine/lua')}" for p in (ROOT / "django_jobs/engine/lua").rglob("*.lua")}
    assert expected and expected <= lua
    assert "django_jobs/py.typed" in names
    assert "django_jobs/management/commands/runworkers.py" in names
    assert not any(n.startswith(("tests/", "testproject/", "bench/")) for n in names)
