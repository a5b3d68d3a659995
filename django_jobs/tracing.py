"""OpenTelemetry traces (optional): a producer span per enqueue, a consumer span per run.

Install the extra (``pip install 'django-jobs-redis[otel]'``, which needs only ``opentelemetry-api``)
and configure an SDK tracer provider as usual; nothing else is needed (docs/observability.md).

- ``enqueue()`` (and ``aenqueue``, ``enqueue_many``, ``enqueue_on_commit``) opens a PRODUCER span
  ``enqueue <job>`` as a child of the current span (e.g. the web request's), and the job carries
  its W3C trace context (``traceparent``/``tracestate``, the payload's small ``tc`` field).
- Each run of the job is a CONSUMER span ``run <job>``, a child of that producer span, so the
  job joins the request's trace; every attempt (retries, recoveries) is one span under the same
  parent, with ``django_jobs.attempt``. Jobs enqueued while a job runs are children of its span.
- The spans carry ``messaging.system="django_jobs"``, the queue, the job id and the correlation id.

Without the package, or without a configured (SDK) tracer provider, every function here is a
no-op costing one check, and payloads carry no trace context.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

#: Instrumentation scope name of our spans.
TRACER_NAME = "django_jobs"
#: ``messaging.system`` of our spans.
SYSTEM = "django_jobs"
#: While no real global tracer provider is configured, it is looked for again at most this often,
#: seconds (OpenTelemetry's ``get_tracer_provider()`` looks its environment variable up on every
#: call: ~1.3 us, per enqueue and per run of a job).
PROVIDER_RECHECK = 1.0


@functools.cache
def _api() -> Any:
    """Return the ``opentelemetry.trace`` module, or None when opentelemetry-api is not installed."""
    try:
        from opentelemetry import trace
    except ImportError:
        return None
    return trace


#: The tracer provider set with :func:`use_tracer_provider` (None: OpenTelemetry's global one).
_provider: Any = None
#: Stands for the global provider in :data:`_tracer_of` once a real one is found.
_GLOBAL = object()
#: (provider or :data:`_GLOBAL`, our tracer from it or None): the last answer of :func:`tracer`.
_tracer_of: tuple[Any, Any] = (None, None)
#: ``time.monotonic()`` before which the global provider is not looked up again (none was configured).
_recheck_at = 0.0


def use_tracer_provider(provider: Any) -> None:
    """Make django_jobs trace with ``provider`` instead of the global one (None: back to the global).

    For tests and for projects that keep a provider of their own:

    >>> from opentelemetry.sdk.trace import TracerProvider  # doctest: +SKIP
    >>> use_tracer_provider(TracerProvider())  # doctest: +SKIP
    """
    global _provider, _tracer_of, _recheck_at
    _provider = provider
    _tracer_of = (None, None)
    _recheck_at = 0.0  # the global provider is looked up again at the next call


def tracer() -> Any:
    """Return our tracer when a real (SDK) tracer provider is configured, else None.

    The answer is kept per provider (the SDK's ``get_tracer`` builds a new tracer per call).
    While the global provider is OpenTelemetry's placeholder (none configured), None is kept for
    :data:`PROVIDER_RECHECK` seconds: a provider set with ``set_tracer_provider`` later is used
    from the next look-up on. OpenTelemetry sets the global provider once: a real one is kept.
    """
    global _tracer_of, _recheck_at
    provider = _provider
    cached = _tracer_of
    if cached[0] is (_GLOBAL if provider is None else provider):
        return cached[1]
    trace = _api()
    if provider is None:
        if trace is None or time.monotonic() < _recheck_at:
            return None
        provider = trace.get_tracer_provider()
        found = _tracer_from(trace, provider)
        if found is None:
            _recheck_at = time.monotonic() + PROVIDER_RECHECK
        else:
            _tracer_of = (_GLOBAL, found)
        return found
    found = None if trace is None else _tracer_from(trace, provider)
    _tracer_of = (provider, found)
    return found


def _tracer_from(trace: Any, provider: Any) -> Any:
    """Our tracer from ``provider``; None for OpenTelemetry's placeholder and no-op providers."""
    if isinstance(provider, (trace.ProxyTracerProvider, trace.NoOpTracerProvider)):
        return None
    return provider.get_tracer(TRACER_NAME)


@contextmanager
def producer_span(name: str, queue: str, count: int = 1) -> Iterator[Any]:
    """Open the PRODUCER span of an enqueue (of ``count`` jobs); yields it, or None without tracing."""
    t = tracer()
    if t is None:
        yield None
        return
    trace = _api()
    attributes: dict[str, str | int] = {"messaging.system": SYSTEM, "messaging.operation.type": "send", "messaging.destination.name": queue}
    if count != 1:
        attributes["messaging.batch.message_count"] = count
    with t.start_as_current_span(f"enqueue {name}", kind=trace.SpanKind.PRODUCER, attributes=attributes) as span:
        yield span


def set_job_id(span: Any, job_id: str, correlation_id: str) -> None:
    """Name the enqueued job on its producer span (single enqueue)."""
    if span is not None:
        span.set_attribute("messaging.message.id", job_id)
        if correlation_id:
            span.set_attribute("django_jobs.correlation_id", correlation_id)


def carrier() -> dict[str, str]:
    """Return the current W3C trace context to carry in a job (empty without tracing or span)."""
    if tracer() is None:
        return {}
    from opentelemetry import propagate

    found: dict[str, str] = {}
    propagate.inject(found)
    return {k: v for k, v in found.items() if k in ("traceparent", "tracestate")}


def start_consumer(name: str, queue: str, job_id: str, attempt: int, correlation_id: str, context: Any) -> Any:
    """Start the CONSUMER span of one run and make it current; returns a handle for :func:`end_consumer`.

    ``context`` is the job's carried trace context (the payload's ``tc``), or None.
    """
    t = tracer()
    if t is None:
        return None
    from opentelemetry import context as otel_context
    from opentelemetry import propagate

    trace = _api()
    parent = propagate.extract(context) if isinstance(context, dict) and context else None
    links = []
    if parent is not None:
        linked = trace.get_current_span(parent).get_span_context()
        if linked.is_valid:
            links.append(trace.Link(linked, {"django_jobs.link": "enqueued_by"}))
    attributes = {
        "messaging.system": SYSTEM, "messaging.operation.type": "process", "messaging.destination.name": queue,
        "messaging.message.id": job_id, "django_jobs.attempt": attempt,
    }
    if correlation_id:
        attributes["django_jobs.correlation_id"] = correlation_id
    span = t.start_span(f"run {name}", context=parent, kind=trace.SpanKind.CONSUMER, attributes=attributes, links=links)
    token = otel_context.attach(trace.set_span_in_context(span))
    return span, token


def outcome(handle: Any, kind: str, exc: BaseException | None) -> None:
    """Record a run's outcome on its span: ``kind`` c/r/l/x/f; an error is recorded with its traceback."""
    if handle is None:
        return
    span = handle[0]
    span.set_attribute("django_jobs.outcome", {"c": "completed", "r": "retrying", "l": "rate_limited",
                                               "x": "cancelled", "f": "failed"}.get(kind, kind))
    if exc is not None and kind in ("r", "f"):
        trace = _api()
        span.record_exception(exc)
        span.set_status(trace.Status(trace.StatusCode.ERROR, f"{type(exc).__name__}: {exc}"))


def end_consumer(handle: Any) -> None:
    """End the run's span and restore the context it replaced."""
    if handle is None:
        return
    from opentelemetry import context as otel_context

    span, token = handle
    try:
        otel_context.detach(token)
    finally:
        span.end()
