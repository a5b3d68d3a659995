"""OpenTelemetry: a producer span at enqueue, a consumer span per run, joined in one trace.

Checked with the SDK's in-memory exporter on the real worker (in-process burst).
"""

from __future__ import annotations

import json

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from django_jobs import tracing
from tests.testapp import jobs


@pytest.fixture
def spans():
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracing.use_tracer_provider(provider)
    yield exporter
    tracing.use_tracer_provider(None)
    provider.shutdown()


def by_name(exporter, name: str) -> list:
    return [s for s in exporter.get_finished_spans() if s.name == name]


def test_a_job_joins_the_trace_of_the_code_that_enqueued_it(spans, work, r, prefix):
    request_tracer = tracing.tracer()
    with request_tracer.start_as_current_span("GET /checkout") as request:
        result = jobs.add.enqueue(2, 3)
    work()
    (producer,) = by_name(spans, "enqueue tests.testapp.jobs.add")
    (consumer,) = by_name(spans, "run tests.testapp.jobs.add")
    trace_id = request.get_span_context().trace_id
    assert producer.context.trace_id == consumer.context.trace_id == trace_id
    assert producer.parent.span_id == request.get_span_context().span_id
    assert consumer.parent.span_id == producer.context.span_id
    assert producer.kind == trace.SpanKind.PRODUCER and consumer.kind == trace.SpanKind.CONSUMER
    assert producer.attributes["messaging.message.id"] == result.id == consumer.attributes["messaging.message.id"]
    assert consumer.attributes["messaging.destination.name"] == "default"
    assert consumer.attributes["django_jobs.outcome"] == "completed"
    payload = json.loads(r.hget(f"{prefix}:{{default}}:job:{result.id}", "d"))
    assert payload["tc"]["traceparent"].split("-")[1] == f"{trace_id:032x}"


def test_each_attempt_is_a_span_under_the_same_producer_and_errors_are_recorded(spans, work):
    jobs.flaky.enqueue("t", 2)  # fails twice, then succeeds
    work()
    (producer,) = by_name(spans, "enqueue tests.testapp.jobs.flaky")
    runs = sorted(by_name(spans, "run tests.testapp.jobs.flaky"), key=lambda s: s.attributes["django_jobs.attempt"])
    assert [s.attributes["django_jobs.attempt"] for s in runs] == [1, 2, 3]
    assert {s.parent.span_id for s in runs} == {producer.context.span_id}
    assert all(s.links[0].context.span_id == producer.context.span_id for s in runs)
    assert [s.attributes["django_jobs.outcome"] for s in runs] == ["retrying", "retrying", "completed"]
    assert runs[0].status.status_code == trace.StatusCode.ERROR and runs[0].events[0].name == "exception"


def test_a_child_enqueued_by_a_job_is_a_child_of_its_run(spans, work):
    jobs.enqueue_child.enqueue("c")
    work()
    (parent_run,) = by_name(spans, "run tests.testapp.jobs.enqueue_child")
    child_enqueue = [s for s in spans.get_finished_spans() if s.name.startswith("enqueue ") and s.parent is not None
                     and s.parent.span_id == parent_run.context.span_id]
    assert len(child_enqueue) == 1
    (child_run,) = [s for s in spans.get_finished_spans() if s.name.startswith("run ") and s.parent.span_id == child_enqueue[0].context.span_id]
    assert child_run.context.trace_id == parent_run.context.trace_id


def test_enqueue_many_is_one_producer_span_and_every_job_carries_it(spans, work):
    jobs.add.enqueue_many([(1, 1), (2, 2), (3, 3)])
    work()
    (producer,) = by_name(spans, "enqueue tests.testapp.jobs.add")
    assert producer.attributes["messaging.batch.message_count"] == 3
    runs = by_name(spans, "run tests.testapp.jobs.add")
    assert len(runs) == 3 and {s.parent.span_id for s in runs} == {producer.context.span_id}


def test_without_a_tracer_provider_nothing_is_traced_or_carried(work, r, prefix):
    assert tracing.tracer() is None
    result = jobs.add.enqueue(1, 1)
    assert "tc" not in json.loads(r.hget(f"{prefix}:{{default}}:job:{result.id}", "d"))
    work()
    assert jobs.add.get_result(result.id).return_value == 2
