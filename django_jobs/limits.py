"""Flow control: queue rate and concurrency limits, read and changed at run time.

The limits are enforced inside the engine's ``fetch`` script (``lua/includes/queue_limits.lua``),
so they hold across every worker process and machine. Settings give each queue its default
(``DJANGO_JOBS["QUEUES"][name]["RATE_LIMIT"]`` and ``["CONCURRENCY"]``); an override stored in
Redis with :func:`set_queue_limits` wins over the settings until :func:`reset_queue_limits`.

>>> set_queue_limits("emails", rate="100/m", concurrency=5)  # doctest: +SKIP
>>> queue_limits("emails")  # doctest: +SKIP
QueueLimits(rate='100/m', concurrency=5, overridden=True)
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

#: Rate periods a limit accepts, in ms.
PERIODS_MS = {"s": 1_000, "m": 60_000, "h": 3_600_000}
#: Period names spelled out, for messages.
PERIOD_NAMES = {"s": "second", "m": "minute", "h": "hour"}
_RATE = re.compile(r"\s*(\d+)\s*/\s*(\d*)\s*([smh])\s*")
#: The largest rate count (the fetch script keeps one entry per start in the window).
MAX_RATE = 1_000_000


class _Unset:
    def __repr__(self) -> str:
        return "UNSET"


#: "Leave this limit as it is" for :func:`set_queue_limits`.
UNSET: Any = _Unset()


@dataclass(frozen=True, slots=True)
class Rate:
    """At most ``count`` job starts in any window of ``period_ms``."""

    count: int
    period_ms: int

    def __str__(self) -> str:
        for unit, ms in PERIODS_MS.items():
            if self.period_ms == ms:
                return f"{self.count}/{unit}"
        for unit, ms in reversed(PERIODS_MS.items()):
            if self.period_ms % ms == 0:
                return f"{self.count}/{self.period_ms // ms}{unit}"
        return f"{self.count}/{self.period_ms}ms"


def parse_rate(value: Any) -> Rate:
    """Return the :class:`Rate` of ``"N/s"``, ``"N/m"``, ``"N/h"`` (or ``"N/10s"``).

    >>> parse_rate("100/m")
    Rate(count=100, period_ms=60000)

    Raises:
        ValueError: ``value`` is not such a string, or N is 0 or too large.
    """
    if isinstance(value, Rate):
        return value
    match = _RATE.fullmatch(value) if isinstance(value, str) else None
    if match is None:
        raise ValueError(
            f"Rate {value!r} is not valid. Write it as 'N/s', 'N/m' or 'N/h' (N starts per second, "
            "minute or hour), e.g. '100/m'; a multiple of the period works too: '5/10s'."
        )
    count, multiple, unit = int(match.group(1)), int(match.group(2) or 1), match.group(3)
    if not 1 <= count <= MAX_RATE or multiple < 1:
        raise ValueError(f"Rate {value!r} is not valid: N must be 1..{MAX_RATE:,} and the period at least 1{unit}.")
    return Rate(count, multiple * PERIODS_MS[unit])


def parse_concurrency(value: Any) -> int:
    """Return ``value`` if it is a whole number of at least 1."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"Concurrency {value!r} is not valid: use a whole number of at least 1 (None: no limit).")
    return value


@dataclass(frozen=True, slots=True)
class QueueLimits:
    """The limits in force on one queue (``None``: no limit)."""

    #: At most this many starts per period across all workers, e.g. ``"100/m"``.
    rate: str | None
    #: At most this many jobs running at once across all workers.
    concurrency: int | None
    #: True when a run-time override (:func:`set_queue_limits`) is in force instead of the settings.
    overridden: bool = False


def set_queue_limits(queue: str, *, rate: Any = UNSET, concurrency: Any = UNSET) -> QueueLimits:
    """Change the limits of ``queue`` for every worker at once, until :func:`reset_queue_limits`.

    ``rate`` is ``"N/s"``, ``"N/m"`` or ``"N/h"``; ``concurrency`` a whole number. ``None``
    lifts that limit (whatever the settings say); a limit not given is left as it is.
    Returns the limits now in force.

    Raises:
        InvalidJob: ``queue`` is not configured, or a value is not valid.
    """
    from django_jobs.engine import get_engine

    engine = get_engine()
    _check_queue(engine, queue)
    try:
        rate_value = UNSET if rate is UNSET else (None if rate is None else parse_rate(rate))
        conc_value = UNSET if concurrency is UNSET else (None if concurrency is None else parse_concurrency(concurrency))
    except ValueError as exc:
        from django_jobs.exceptions import InvalidJob

        raise InvalidJob(f"{exc} (queue {queue!r})") from exc
    engine.set_queue_limits(queue, rate=rate_value, concurrency=conc_value)
    return queue_limits(queue)


def reset_queue_limits(queue: str) -> QueueLimits:
    """Drop the run-time overrides of ``queue``: the settings' limits apply again."""
    from django_jobs.engine import get_engine

    engine = get_engine()
    _check_queue(engine, queue)
    engine.reset_queue_limits(queue)
    return queue_limits(queue)


def queue_limits(queue: str) -> QueueLimits:
    """Return the limits in force on ``queue`` (override, else settings)."""
    from django_jobs.engine import get_engine

    engine = get_engine()
    _check_queue(engine, queue)
    rate, concurrency, overridden = engine.queue_limits(queue)
    return QueueLimits(rate=None if rate is None else str(rate), concurrency=concurrency, overridden=overridden)


def _check_queue(engine: Any, queue: str) -> None:
    if queue not in engine.settings.queues:
        from django_jobs.exceptions import InvalidJob

        raise InvalidJob(f"Queue {queue!r} is not configured. Add it to DJANGO_JOBS['QUEUES'].")
