"""Correlation ids: the id of the web request (or job) that caused the work at hand.

The current id lives in a :class:`contextvars.ContextVar`, so it follows sync and async
code. Enqueue copies it into the job; the worker sets it while the job runs, so jobs
enqueued from a job inherit it.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator
from contextvars import ContextVar

_correlation_id: ContextVar[str] = ContextVar("django_jobs_correlation_id", default="")


def get_correlation_id() -> str:
    """Return the current correlation id ('' when there is none)."""
    return _correlation_id.get()


def new_correlation_id() -> str:
    """Return a fresh random correlation id."""
    return uuid.uuid4().hex


@contextlib.contextmanager
def correlation_id(value: str | None = None) -> Iterator[str]:
    """Set the correlation id for the enclosed block (a new one when ``value`` is None).

    >>> with correlation_id("abc123"):
    ...     get_correlation_id()
    'abc123'
    """
    token = _correlation_id.set(value or new_correlation_id())
    try:
        yield _correlation_id.get()
    finally:
        _correlation_id.reset(token)


def set_correlation_id(value: str) -> object:
    """Set the correlation id; returns a token for :func:`reset_correlation_id`."""
    return _correlation_id.set(value)


def reset_correlation_id(token: object) -> None:
    """Restore the correlation id that was current before :func:`set_correlation_id`."""
    _correlation_id.reset(token)  # type: ignore[arg-type]
