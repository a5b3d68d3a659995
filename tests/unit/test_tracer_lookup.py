"""``tracing.tracer()`` is asked per enqueue and per run: its answer is kept, and still follows the providers."""

from __future__ import annotations

import time

import pytest

pytest.importorskip("opentelemetry.sdk", reason="the otel extra and its SDK (the full suite has them)")

from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from django_jobs import tracing


@pytest.fixture
def lookups(monkeypatch):
    """OpenTelemetry's global provider, as ``get_tracer_provider()`` answers it; counts the look-ups."""
    answer = {"provider": trace.ProxyTracerProvider(), "count": 0}

    def get_tracer_provider():
        answer["count"] += 1
        return answer["provider"]

    monkeypatch.setattr(trace, "get_tracer_provider", get_tracer_provider)
    tracing.use_tracer_provider(None)  # forget what an earlier test left
    yield answer
    tracing.use_tracer_provider(None)


def test_without_a_provider_the_global_one_is_looked_up_once_per_recheck_period(lookups, monkeypatch):
    monkeypatch.setattr(tracing, "PROVIDER_RECHECK", 0.2)
    assert [tracing.tracer() for _ in range(1000)] == [None] * 1000
    assert lookups["count"] == 1  # not once per call (OpenTelemetry reads os.environ each time)
    exporter = InMemorySpanExporter()
    real = TracerProvider()
    real.add_span_processor(SimpleSpanProcessor(exporter))
    lookups["provider"] = real  # set_tracer_provider() after the first look-up
    assert tracing.tracer() is None  # within the period: still the placeholder's answer
    time.sleep(0.25)
    found = tracing.tracer()
    assert found is not None and lookups["count"] == 2
    # A real global provider is never replaced (OpenTelemetry sets it once): kept, not looked up again.
    assert all(tracing.tracer() is found for _ in range(100)) and lookups["count"] == 2
    with found.start_as_current_span("s"):
        pass
    assert [s.name for s in exporter.get_finished_spans()] == ["s"]


def test_a_provider_of_ones_own_is_used_at_once_and_its_tracer_kept(lookups):
    assert tracing.tracer() is None
    own = TracerProvider()
    tracing.use_tracer_provider(own)
    first = tracing.tracer()
    assert first is not None and tracing.tracer() is first
    other = TracerProvider()
    tracing.use_tracer_provider(other)
    assert tracing.tracer() is not first  # a new provider: its own tracer
    tracing.use_tracer_provider(trace.NoOpTracerProvider())
    assert tracing.tracer() is None
    tracing.use_tracer_provider(None)
    assert tracing.tracer() is None  # the global placeholder again, looked up at once
    assert lookups["count"] == 2
