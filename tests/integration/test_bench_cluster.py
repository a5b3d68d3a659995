"""``python -m bench --cluster N`` in a tiny configuration: the bench starts the cluster, drains, reports.

Runs the real benchmark as a subprocess (its own 2-primary cluster and a plain baseline server, real
worker processes): 200 jobs, ~20 s. Asserts the report's structure, never its timings.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.timeout(240)
def test_bench_cluster_spreads_queues_over_the_primaries_and_reports_cpu_per_node(tmp_path):
    out = tmp_path / "cluster.json"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH", "")]))}
    env.pop("DJANGO_SETTINGS_MODULE", None)
    proc = subprocess.run(
        [sys.executable, "-m", "bench", "--cluster", "2", "--cluster-baseline", "--cluster-jobs", "200",
         "--processes", "1", "--threads", "2", "--json", str(out)],
        check=False, cwd=ROOT, env=env, capture_output=True, text=True, timeout=220,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    data = json.loads(out.read_text())
    cluster, baseline = data["cluster"], data["baseline"]
    assert cluster["primaries"] == 2 and len(cluster["queues"]) == 2  # two primaries, each with its queues
    assert all(len(queues) == 2 for queues in cluster["queues"].values())
    assert list(baseline["queues"]) == ["server"] and len(baseline["queues"]["server"]) == 4  # the same 4 queues
    for figures in (cluster, baseline):
        assert figures["drained"] == 200 and figures["drain_rate"] > 0
        assert figures["enqueue_rate"] > 0 and figures["bulk_rate"] > 0
        assert figures["memory_bytes_per_waiting_job"] > 50  # each waiting job takes some Redis memory
        assert figures["worker_cpu_us_per_job"] > 0
        by_node = figures["redis_cpu_us_per_job_by_node"]
        assert figures["redis_cpu_us_per_job"] == pytest.approx(sum(by_node.values()))
    assert set(cluster["redis_cpu_us_per_job_by_node"]) == set(cluster["queues"])  # INFO cpu of every primary
    assert all(v > 0 for v in cluster["redis_cpu_us_per_job_by_node"].values())  # both primaries did work
    assert "Redis Cluster of 2 primaries" in proc.stdout and "baseline" in proc.stdout
