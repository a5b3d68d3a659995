"""Correlation ids: the id of the web request (or job) that caused the work at hand.

The current id lives in a :class:`contextvars.ContextVar`, so it follows sync and async
code. Enqueue copies it into the job; the worker sets it while the job runs, so jobs
enqueued from a job inherit it.

:class:`CorrelationIdMiddleware` sets it for each web request, :class:`CorrelationIdFilter`
adds it (and the running job's fields) to log records, and :class:`JsonFormatter` writes
them as one JSON object per line. See docs/observability.md.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

from asgiref.sync import iscoroutinefunction, markcoroutinefunction

from django_jobs import runtime

logger = logging.getLogger("django_jobs.correlation")

_correlation_id: ContextVar[str] = ContextVar("django_jobs_correlation_id", default="")


def get_correlation_id() -> str:
    """Return the current correlation id ('' when there is none)."""
    return _correlation_id.get()


_process_id: tuple[int, str] | None = None


def process_correlation_id() -> str:
    """Return this process's own correlation id, made on first use (and again after a fork).

    Work enqueued with no current id (a management command, a shell, a script) carries it,
    so one run of ``manage.py send_reminders`` is one id across all the jobs it enqueued.
    """
    global _process_id
    pid = runtime.pid()
    if _process_id is None or _process_id[0] != pid:
        _process_id = (pid, new_correlation_id())
    return _process_id[1]


# One random byte -> one base62 character (byte % 62: ~5.95 bits each).
_ID_CHARS = bytes(b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"[i % 62] for i in range(256))


def new_correlation_id() -> str:
    """Return a fresh random correlation id: 20 base62 characters (~119 random bits, as a UUID4's 122).

    Shorter than 32 hex digits: every job carries it in its hash in Redis (docs/performance.md).
    """
    return os.urandom(20).translate(_ID_CHARS).decode()


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


# -- the job running in this context ---------------------------------------------------------

#: The job running in the current thread or task: owned by :mod:`django_jobs.runtime`; read
#: here by :class:`CorrelationIdFilter`.
current_job = runtime.current_job


# -- web requests ----------------------------------------------------------------------------

#: What an incoming request id may look like: 1-128 letters, digits and ``-_.:@/+=``.
SAFE_ID_RE = re.compile(r"[A-Za-z0-9\-_.:@/+=]{1,128}")


def clean_correlation_id(value: object) -> str:
    """Return ``value`` when it is a sane id, else a fresh one (never echoing a bad value).

    >>> clean_correlation_id("abc123")
    'abc123'
    >>> len(clean_correlation_id("<script>"))
    32
    """
    if isinstance(value, str) and SAFE_ID_RE.fullmatch(value):
        return value
    return new_correlation_id()


class CorrelationIdMiddleware:
    """Django middleware (sync and async): one correlation id per request.

    Takes the id from the ``REQUEST_ID_HEADER`` request header (``X-Request-ID`` by
    default) when it is sane (see :data:`SAFE_ID_RE`), otherwise makes a new one; sets it
    while the request is handled, so jobs enqueued by the view carry it; and returns it in
    the same response header. ``request.correlation_id`` holds it too.

    >>> MIDDLEWARE = ["django_jobs.correlation.CorrelationIdMiddleware", ...]  # doctest: +SKIP
    """

    sync_capable = True
    async_capable = True

    def __init__(self, get_response: Callable[[Any], Any]) -> None:
        from django_jobs.conf import get_settings

        self.get_response = get_response
        self.header = get_settings().request_id_header
        self.is_async = iscoroutinefunction(get_response)
        if self.is_async:
            markcoroutinefunction(self)

    def _begin(self, request: Any) -> tuple[str, object]:
        raw = request.headers.get(self.header)
        value = clean_correlation_id(raw) if raw is not None else new_correlation_id()
        if raw is not None and value != raw:
            logger.info(
                "Replaced an invalid %s request header (%d characters) with %s", self.header, len(raw), value,
                extra={"action": "request_id_replaced"},
            )
        request.correlation_id = value
        return value, _correlation_id.set(value)

    def __call__(self, request: Any) -> Any:
        if self.is_async:
            return self.__acall__(request)
        value, token = self._begin(request)
        try:
            response = self.get_response(request)
            response[self.header] = value
            return response
        finally:
            _correlation_id.reset(token)  # type: ignore[arg-type]

    async def __acall__(self, request: Any) -> Any:
        value, token = self._begin(request)
        try:
            response = await self.get_response(request)
            response[self.header] = value
            return response
        finally:
            _correlation_id.reset(token)  # type: ignore[arg-type]


# -- logging ---------------------------------------------------------------------------------

#: Fields :class:`CorrelationIdFilter` adds to every record (job fields are '' / 0 outside jobs).
RECORD_FIELDS = ("correlation_id", "job_id", "job_name", "queue", "attempt", "worker")


class CorrelationIdFilter(logging.Filter):
    """Add ``correlation_id`` and, inside a job, ``job_id``, ``job_name``, ``queue``, ``attempt``
    and ``worker`` to every log record (never drops a record).

    Values passed with ``extra=`` win. Outside a job the job fields are ``""`` (``attempt`` 0),
    so format strings such as ``"%(correlation_id)s %(job_id)s"`` always work.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        d = record.__dict__
        if "correlation_id" not in d:
            d["correlation_id"] = _correlation_id.get()
        job = current_job.get()
        if job is None:
            for name in ("job_id", "job_name", "queue", "worker"):
                d.setdefault(name, "")
            d.setdefault("attempt", 0)
            return True
        claimed = job.claimed
        d.setdefault("job_id", claimed.id)
        d.setdefault("job_name", job.name)
        d.setdefault("queue", claimed.queue)
        d.setdefault("attempt", claimed.attempt)
        prepared = job.prepared
        d.setdefault("worker", getattr(prepared, "worker_id", "") if prepared is not None else "")
        return True


#: LogRecord attributes that are not "extra" fields (JsonFormatter leaves them out).
_STANDARD_ATTRS = frozenset(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message", "asctime", "taskName"}


class JsonFormatter(logging.Formatter):
    """Write each record as one JSON object on one line.

    Keys: ``time`` (ISO 8601, UTC), ``level``, ``logger``, ``message``, ``process``, the
    fields of :class:`CorrelationIdFilter` (it adds them itself when the filter is not
    installed), ``exception`` (the formatted traceback) when there is one, and every
    ``extra=`` field (e.g. ``action``, ``duration_ms``); values that are not JSON become strings.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._filter = CorrelationIdFilter()

    def format(self, record: logging.LogRecord) -> str:
        if "correlation_id" not in record.__dict__ or "job_id" not in record.__dict__:
            self._filter.filter(record)
        out: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, tz=UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "process": record.process,
        }
        for key, value in record.__dict__.items():
            if key not in _STANDARD_ATTRS and key not in out:
                out[key] = value
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            out["exception"] = record.exc_text
        if record.stack_info:
            out["stack"] = self.formatStack(record.stack_info)
        return json.dumps(out, default=str, ensure_ascii=False)
