"""Prometheus metrics (the optional ``metrics`` extra: ``pip install 'django-jobs-redis[metrics]'``).

=====================================  =========  ==========================================
``djj_queue_jobs{queue,state}``        gauge      jobs per state, read from Redis at scrape time
``djj_workers``                        gauge      live worker processes (fresh heartbeats)
``djj_mirror_behind_events{queue}``    gauge      events entries the database mirror has not written yet
``djj_mirror_lag_seconds{queue}``      gauge      age of the oldest of them (0: up to date)
``djj_mirror_unrecorded_jobs{queue}``  gauge      finished jobs Redis keeps until the mirror recorded them
``djj_mirror_lost_jobs_total{queue}``  counter    finished jobs that left Redis before the mirror recorded them
``djj_jobs_started_total{queue,job}``  counter    attempts started
``djj_jobs_succeeded_total``           counter    jobs completed
``djj_jobs_failed_total``              counter    jobs failed for good (or cancelled)
``djj_jobs_retried_total``             counter    failed attempts that will be retried
``djj_job_duration_seconds{queue,job}``  histogram  run time of an attempt
``djj_job_latency_seconds{queue,job}``   histogram  from enqueue to the start of the first attempt
=====================================  =========  ==========================================

Served by ``manage.py runworkers --metrics-port 9100`` (the job counters of every worker
process, in prometheus_client's multiprocess mode) and by :func:`metrics_view` for the web
side (queue depth and worker count, plus this process' own registry).
"""

from __future__ import annotations

import os
import tempfile
import threading
from collections.abc import Iterator
from typing import Any

from django_jobs.exceptions import ConfigurationError

__all__ = ["QueueCollector", "build_registry", "enable_job_metrics", "metrics_view", "require_prometheus", "start_metrics_server"]

#: Histogram buckets, seconds.
BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600)

_lock = threading.Lock()
_metrics: dict[str, Any] = {}


def require_prometheus() -> Any:
    """Return the ``prometheus_client`` module, or raise a :class:`ConfigurationError` saying how to get it."""
    try:
        import prometheus_client
    except ImportError:
        raise ConfigurationError(
            "django_jobs metrics need prometheus_client, which is not installed. "
            "Install it with: pip install 'django-jobs-redis[metrics]' (or pip install prometheus-client)."
        ) from None
    return prometheus_client


def _job_metrics() -> dict[str, Any]:
    prom = require_prometheus()
    with _lock:
        if not _metrics:
            labels = ("queue", "job")
            _metrics.update(
                started=prom.Counter("djj_jobs_started", "Job attempts started.", labels),
                succeeded=prom.Counter("djj_jobs_succeeded", "Jobs completed.", labels),
                failed=prom.Counter("djj_jobs_failed", "Jobs failed for good or cancelled.", labels),
                retried=prom.Counter("djj_jobs_retried", "Failed attempts that will be retried.", labels),
                duration=prom.Histogram("djj_job_duration_seconds", "Run time of one attempt.", labels, buckets=BUCKETS),
                latency=prom.Histogram("djj_job_latency_seconds", "Enqueue to first start.", labels, buckets=BUCKETS),
            )
    return _metrics


def _on_started(sender: Any, task_result: Any, **kwargs: Any) -> None:
    m = _metrics
    labels = (task_result.queue, sender.module_path)
    m["started"].labels(*labels).inc()
    if task_result.attempts <= 1 and task_result.enqueued_at is not None and task_result.started_at is not None:
        m["latency"].labels(*labels).observe(max(0.0, (task_result.started_at - task_result.enqueued_at).total_seconds()))


def _on_outcome(counter: str) -> Any:
    def receiver(sender: Any, task_result: Any, duration: float = 0.0, **kwargs: Any) -> None:
        labels = (task_result.queue, sender.module_path)
        _metrics[counter].labels(*labels).inc()
        _metrics["duration"].labels(*labels).observe(duration)

    receiver.__name__ = f"_on_{counter}"
    return receiver


_RECEIVERS = {"succeeded": _on_outcome("succeeded"), "failed": _on_outcome("failed"), "retried": _on_outcome("retried")}


def enable_job_metrics() -> None:
    """Count jobs in this process (and the processes it forks afterwards) by connecting signal receivers."""
    from django_jobs import signals

    _job_metrics()
    signals.job_started.connect(_on_started, dispatch_uid="djj_metrics_started")
    signals.job_succeeded.connect(_RECEIVERS["succeeded"], dispatch_uid="djj_metrics_succeeded")
    signals.job_failed.connect(_RECEIVERS["failed"], dispatch_uid="djj_metrics_failed")
    signals.job_retrying.connect(_RECEIVERS["retried"], dispatch_uid="djj_metrics_retried")


class QueueCollector:
    """Read queue depth by state and the live worker count from Redis at each scrape."""

    def __init__(self, queues: list[str] | None = None) -> None:
        self.queues = queues

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import GaugeMetricFamily

        from django_jobs.conf import get_settings
        from django_jobs.engine import get_engine

        engine = get_engine()
        depth = GaugeMetricFamily("djj_queue_jobs", "Jobs per queue and state.", labels=("queue", "state"))
        for queue in self.queues or get_settings().queue_names:
            for state, count in engine.counts(queue).items():
                depth.add_metric((queue, state), count)
        yield depth
        workers = GaugeMetricFamily("djj_workers", "Live worker processes.")
        workers.add_metric((), len(engine.workers()))
        yield workers
        yield from self._mirror(engine)

    def _mirror(self, engine: Any) -> Iterator[Any]:
        """The database mirror's lag per queue (docs/mirror.md#lag), read from Redis."""
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        from django_jobs.conf import get_settings
        from django_jobs.engine.keys import MIRROR_GROUP

        if not get_settings().mirror["ENABLED"]:
            return
        behind = GaugeMetricFamily("djj_mirror_behind_events", "Entries of the events stream the database mirror has not written yet (a batch entry counts once).", labels=("queue",))
        age = GaugeMetricFamily("djj_mirror_lag_seconds", "Age of the oldest event the mirror has not written.", labels=("queue",))
        held = GaugeMetricFamily("djj_mirror_unrecorded_jobs", "Finished jobs Redis keeps until the mirror recorded them.", labels=("queue",))
        lost = CounterMetricFamily("djj_mirror_lost_jobs", "Finished jobs that left Redis before the mirror recorded them.", labels=("queue",))
        for queue in self.queues or get_settings().queue_names:
            lag = engine.mirror_lag(queue, MIRROR_GROUP)
            behind.add_metric((queue,), lag.behind)
            age.add_metric((queue,), lag.age or 0.0)
            held.add_metric((queue,), lag.unrecorded)
            lost.add_metric((queue,), lag.lost)
        yield from (behind, age, held, lost)

    def describe(self) -> list[Any]:
        return []  # read at scrape time only (no Redis call at registration)


def build_registry(*, queues: list[str] | None = None, multiprocess_dir: str | None = None) -> Any:
    """Return a registry with the queue collector and the job metrics (of every process when ``multiprocess_dir``)."""
    prom = require_prometheus()
    registry = prom.CollectorRegistry()
    registry.register(QueueCollector(queues))
    if multiprocess_dir:
        from prometheus_client import multiprocess

        multiprocess.MultiProcessCollector(registry, path=multiprocess_dir)  # type: ignore[no-untyped-call]
    else:
        registry.register(_LocalJobMetrics())
    return registry


class _LocalJobMetrics:
    """This process' job metrics (when they are enabled), for the Django view."""

    def collect(self) -> Iterator[Any]:
        for metric in list(_metrics.values()):
            yield from metric.collect()

    def describe(self) -> list[Any]:
        return []


def metrics_view(request: Any) -> Any:
    """Django view of the metrics: ``path("metrics/", metrics_view)`` (protect it like any internal page).

    Uses the multiprocess directory when ``PROMETHEUS_MULTIPROC_DIR`` is set (e.g. under gunicorn).
    """
    from django.http import HttpResponse

    prom = require_prometheus()
    registry = build_registry(multiprocess_dir=os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None)
    return HttpResponse(prom.generate_latest(registry), content_type=prom.CONTENT_TYPE_LATEST)


def prepare_multiprocess() -> str:
    """Point prometheus_client at a fresh multiprocess directory (before it is imported); return it.

    Call it before worker processes fork, so each writes its counters there.
    """
    path = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if not path:
        path = tempfile.mkdtemp(prefix="djj-metrics-")
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = path
    import sys

    if "prometheus_client" in sys.modules:
        from prometheus_client import values

        values.ValueClass = values.get_value_class()  # type: ignore[no-untyped-call]
    return path


def start_metrics_server(port: int, *, addr: str = "0.0.0.0", queues: list[str] | None = None) -> tuple[Any, str]:
    """Serve ``/metrics`` on ``port`` from a daemon thread for ``runworkers``; return (server, multiprocess dir).

    Job metrics are enabled (workers forked afterwards count into the multiprocess directory).
    """
    require_prometheus()
    path = prepare_multiprocess()
    enable_job_metrics()
    prom = require_prometheus()
    server, _thread = prom.start_http_server(port, addr=addr, registry=build_registry(queues=queues, multiprocess_dir=path))
    return server, path
