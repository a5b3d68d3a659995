"""Prometheus metrics: runworkers --metrics-port in real processes, the Django view, the missing extra."""

from __future__ import annotations

import re
import sys
import urllib.request

import pytest
from django.test import Client, override_settings
from prometheus_client.parser import text_string_to_metric_families

from tests.redis_server import wait_until


def scrape(url: str) -> dict[tuple[str, tuple], float]:
    with urllib.request.urlopen(url, timeout=5) as response:
        assert response.status == 200
        text = response.read().decode()
    return samples(text)


def samples(text: str) -> dict[tuple[str, tuple], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)  # raises on invalid exposition text
        for s in family.samples
    }


def test_runworkers_serves_metrics_whose_counters_move_as_jobs_run(workers, tmp_path):
    from tests.testapp.jobs import add
    from tests.testapp.jobs_observability import boom

    proc = workers.start("--processes", "2", "--threads", "2", "--metrics-port", "0", env={
        "PROMETHEUS_MULTIPROC_DIR": str(tmp_path), "DJANGO_SETTINGS_MODULE": "tests.integration.observability_settings",
    })
    try:
        check_metrics(proc, workers, add, boom)
    finally:
        proc.terminate()
        output = proc.communicate(timeout=30)[0]
    assert proc.returncode == 0, output


def check_metrics(proc, workers, add, boom):
    banner = ""
    while "metrics:" not in banner:
        line = proc.stdout.readline()
        assert line, f"runworkers exited: {banner}"
        banner += line
    url = re.search(r"metrics:\s+(\S+)", banner).group(1)
    workers.wait_children(proc, 2)

    before = scrape(url)
    assert before[("djj_queue_jobs", (("queue", "default"), ("state", "waiting")))] == 0
    wait_until(lambda: scrape(url)[("djj_workers", ())] == 2, 15, message="2 workers counted")

    results = [add.enqueue(i, 1) for i in range(5)]
    failed = boom.enqueue()
    for result in results:
        result.wait(timeout=15)
    failed.wait(timeout=15)
    labels = (("job", add.module_path), ("queue", "default"))

    def moved():
        after = scrape(url)
        return after.get(("djj_jobs_succeeded_total", labels)) == 5 and after

    after = wait_until(moved, 10, message="succeeded counter at 5")
    assert after[("djj_jobs_started_total", labels)] == 5
    assert after[("djj_jobs_failed_total", (("job", boom.module_path), ("queue", "default")))] == 1
    assert after[("djj_job_duration_seconds_count", labels)] == 5
    assert after[("djj_job_latency_seconds_count", labels)] == 5
    assert after[("djj_queue_jobs", (("queue", "default"), ("state", "completed")))] == 5
    assert after[("djj_queue_jobs", (("queue", "default"), ("state", "failed")))] == 1


def test_the_django_view_serves_queue_depth_and_worker_count(jobs_settings):
    from tests.testapp.jobs import add

    add.enqueue(1, 2)
    add.using(delay=60).enqueue(1, 2)
    with override_settings(ROOT_URLCONF="tests.integration.observability_urls"):
        response = Client().get("/metrics/")
    assert response.status_code == 200 and response["Content-Type"].startswith("text/plain")
    values = samples(response.content.decode())
    assert values[("djj_queue_jobs", (("queue", "default"), ("state", "waiting")))] == 1
    assert values[("djj_queue_jobs", (("queue", "default"), ("state", "scheduled")))] == 1
    assert values[("djj_workers", ())] == 0


def test_metrics_without_prometheus_client_raise_a_clear_error(monkeypatch):
    from django_jobs.exceptions import ConfigurationError
    from django_jobs.metrics import require_prometheus

    monkeypatch.setitem(sys.modules, "prometheus_client", None)
    with pytest.raises(ConfigurationError, match=r"pip install 'django-jobs-redis\[metrics\]'"):
        require_prometheus()
