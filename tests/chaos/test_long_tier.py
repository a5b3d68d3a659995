"""The long tier's runner works end to end (a small run: the real one is `python -m tests.chaos.long`)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.conftest import ROOT

pytestmark = pytest.mark.chaos


@pytest.mark.timeout(300)
def test_a_small_long_tier_run_prints_a_passing_row_for_its_scenario():
    proc = subprocess.run(
        [sys.executable, "-m", "tests.chaos.long", "--jobs", "300", "--processes", "2", "--threads", "2",
         "--scenarios", "dropped-replies"],
        # ~9 s alone; a CI run on a loaded 2-core machine stretched it past 100 s once.
        cwd=ROOT, capture_output=True, text=True, timeout=240,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "completed" in proc.stderr, "progress lines on stderr"
    rows = [line.split("|")[1:-1] for line in proc.stdout.splitlines() if line.startswith("| ") and "---" not in line]
    header, *body = [[cell.strip() for cell in row] for row in rows]
    assert header[:6] == ["scenario", "jobs", "faults injected", "lost", "duplicates", "recovery time"]
    assert [row[0] for row in body] == ["dropped-replies"]
    for row in body:
        assert row[1] == "300" and int(row[2].replace(",", "")) > 0 and row[3] == "0" and row[-1] == "ok", row


def test_an_unknown_scenario_is_refused_with_the_list():
    proc = subprocess.run([sys.executable, "-m", "tests.chaos.long", "--scenarios", "meteor"],
                          cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert "unknown scenario(s) meteor; choose from worker-kills" in proc.stderr
