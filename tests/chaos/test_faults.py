"""The test-only crash points of django_jobs.worker.faults: off by default, once per flag file.

The hook is installed by the tests (tests/chaos/fault_hook.py reads DJJ_FAULT_AT once, at
start-up); the worker's ``faults.point`` is a no-op function otherwise.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from django_jobs.worker import faults
from tests.chaos.fault_hook import arm_from_env

pytestmark = pytest.mark.chaos

SCRIPT = (
    "from tests.chaos.fault_hook import arm_from_env; arm_from_env(); "
    "from django_jobs.worker import faults; faults.point('after_settle'); faults.point('after_fetch'); print('survived')"
)


def run(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, timeout=30, check=False)


def test_a_process_without_DJJ_FAULT_AT_never_crashes(monkeypatch):
    monkeypatch.delenv("DJJ_FAULT_AT", raising=False)
    assert not arm_from_env() and not faults.installed()
    for name in faults.POINTS:
        faults.point(name)  # returns: nothing armed
    faults.uninstall()


def test_the_armed_point_exits_the_process_and_the_other_points_do_not(monkeypatch, tmp_path):
    import os

    env = {**os.environ, "DJJ_FAULT_AT": "after_fetch"}
    env.pop("DJJ_FAULT_ONCE", None)
    proc = run(env)
    assert proc.returncode == faults.EXIT_CODE
    assert proc.stdout == ""
    # With a flag file only the first process crashes; it writes its pid there.
    flag = tmp_path / "flag"
    first, second = run({**env, "DJJ_FAULT_ONCE": str(flag)}), run({**env, "DJJ_FAULT_ONCE": str(flag)})
    assert first.returncode == faults.EXIT_CODE
    assert int(flag.read_text()) > 0
    assert second.returncode == 0 and second.stdout == "survived\n"


def test_an_unknown_point_name_is_refused_with_the_valid_ones(monkeypatch):
    monkeypatch.setenv("DJJ_FAULT_AT", "after_lunch")
    with pytest.raises(ValueError, match="'after_lunch'.*after_fetch, before_settle"):
        arm_from_env()
    assert not faults.installed()
    faults.point("after_fetch")  # still the no-op
