"""``python -m bench --peers`` in a tiny configuration: every library drains, the report compares.

Runs the real benchmark as a subprocess (its own redis-server, real worker processes of
django_jobs, Huey, Dramatiq and, when installed, Celery): 1,000 jobs, 20 latency jobs, one repetition, ~15 s.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PEERS = ("huey", "dramatiq")  # in the `test` extra; Celery runs too when installed (the `bench` extra)


@pytest.mark.timeout(240)
def test_bench_peers_runs_every_library_and_reports_ratios(tmp_path):
    for module in PEERS:
        pytest.importorskip(module, reason="the `test` extra: pip install -e '.[test]'")
    expected = {"django_jobs", "Huey", "Dramatiq"} | ({"Celery"} if importlib.util.find_spec("celery") else set())
    out = tmp_path / "peers.json"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH", "")]))}
    env.pop("DJANGO_SETTINGS_MODULE", None)
    proc = subprocess.run(
        [sys.executable, "-m", "bench", "--peers", "--reps", "1", "--jobs", "1000", "--latency-jobs", "20", "--json", str(out)],
        check=False, cwd=ROOT, env=env, capture_output=True, text=True, timeout=220,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    data = json.loads(out.read_text())
    assert set(data["results"]) == expected
    for name, (fig,) in data["results"].items():
        # Every library ran the same INCR job: the drain finished and was measured.
        assert fig["drain_rate"] > 0 and fig["enqueue_rate"] > 0, name
        # The job's INCR is counted (1,000 jobs drain in a fraction of a second: the window's per-job share is rough).
        assert fig["command_detail"].get("incrby", 0) > 0.1, (name, fig["command_detail"])
        assert 0 < fig["latency_p50"] <= fig["latency_p99"], name
        assert fig["rss_mb"] > 0 and 0 < fig["pss_mb"] <= fig["rss_mb"], name
        assert fig["commands"] >= 3, name  # enqueue, fetch, the job's INCR at least
        assert fig["redis_bytes"] > 50, name  # each waiting job takes some Redis memory
    assert data["results"]["django_jobs"][0]["bulk_rate"] > 0
    assert data["results"]["Huey"][0]["bulk_rate"] is None  # no bulk call: "—" in the table
    table = proc.stdout[proc.stdout.index("| figure |"):]
    assert all(name in table for name in expected)
    assert "(x" in table  # django_jobs' figure as a ratio to each peer


#: What the compare test runs: both django_jobs runs are fixed costs (~1.1 s of CPU each to start,
#: drain and stop a worker tree, ~1.1 s for the bench itself, alone; the drain of the jobs is
#: a tenth of a second), which a loaded machine stretches: CI's full suite (-n 4 beside the other
#: stages, 2 cores) ran it past 120 s. So: few jobs, one worker process of two threads, the
#: drain's own time limit well inside the test's (a stuck drain says which library and how far),
#: and the same limit as the test above, whose work is of the same kind.
COMPARE = ["--reps", "1", "--jobs", "100", "--latency-jobs", "3", "--processes", "1", "--threads", "2", "--timeout", "60"]


@pytest.mark.timeout(240)
def test_bench_peers_compare_runs_workers_from_another_checkout(tmp_path):
    other = tmp_path / "other-checkout"
    # With its bytecode: the other checkout's workers do not compile the package (its edited
    # __init__.py is compiled again: the cache records the source's size and time).
    shutil.copytree(ROOT / "django_jobs", other / "django_jobs")
    # Only the other checkout's django_jobs leaves a mark, once per process that imports it.
    init = other / "django_jobs" / "__init__.py"
    init.write_text(init.read_text() + f"\nimport os as _os\nopen({str(tmp_path / 'imported')!r} + str(_os.getpid()), 'w').close()\n")
    out = tmp_path / "compare.json"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH", "")]))}
    env.pop("DJANGO_SETTINGS_MODULE", None)
    command = [sys.executable, "-m", "bench", "--peers", *COMPARE, "--libraries", "django_jobs", "--compare", str(other),
               "--json", str(out)]
    try:
        proc = subprocess.run(command, check=False, cwd=ROOT, env=env, capture_output=True, text=True, timeout=220)
    except subprocess.TimeoutExpired as exc:  # what the bench had printed: which library's run it was in
        so_far = [text.decode(errors="replace") if isinstance(text, bytes) else text or "" for text in (exc.stdout, exc.stderr)]
        pytest.fail("the bench ran for more than 220 s; its output so far:\n" + "\n".join(so_far))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    results = json.loads(out.read_text())["results"]
    assert set(results) == {"django_jobs", "django_jobs@other-checkout"}
    assert results["django_jobs@other-checkout"][0]["drain_rate"] > 0
    # The supervisor (its workers are forks: the module is imported once per runworkers).
    assert len(list(tmp_path.glob("imported*"))) >= 1
