"""Queue limit values: a rate (``"100/m"``) and a concurrency, parsed once (docs/flow-control.md).

At the bottom of the layers: the settings (``conf``) parse ``RATE_LIMIT`` and ``CONCURRENCY``
with it, the engine writes limits with it, :mod:`django_jobs.limits` offers it to users.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

__all__ = ["MAX_RATE", "PERIODS_MS", "PERIOD_NAMES", "UNSET", "Rate", "parse_concurrency", "parse_rate"]

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
