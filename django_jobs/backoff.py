"""Retry delays: fixed, exponential with jitter, or a callable of the attempt number."""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Mapping
from typing import Any

from django_jobs.exceptions import InvalidJob

#: The base delay, factor and cap of the "exponential" backoff, in seconds.
EXPONENTIAL_BASE = 1.0
EXPONENTIAL_FACTOR = 2.0
EXPONENTIAL_CAP = 3600.0

type BackoffSpec = None | int | float | str | Mapping[str, Any] | Callable[[int], float]


def _finite(value: float) -> bool:
    try:
        return math.isfinite(value)
    except OverflowError:  # an int too large for a float
        return False


def validate_backoff(spec: BackoffSpec) -> None:
    """Raise :class:`InvalidJob` when ``spec`` is not a valid backoff."""
    if spec is None or callable(spec):
        return
    if isinstance(spec, bool):
        raise InvalidJob(f"backoff={spec!r} is not valid. Use seconds, 'exponential' or a callable.")
    if isinstance(spec, (int, float)):
        if not _finite(spec) or spec < 0:
            raise InvalidJob(f"backoff={spec!r} must be a finite, non-negative number of seconds.")
        return
    if isinstance(spec, str):
        if spec not in ("exponential", "fixed", "none"):
            raise InvalidJob(f"backoff={spec!r} is not valid. Use 'exponential', 'fixed', 'none', seconds, a dict or a callable.")
        return
    if isinstance(spec, Mapping):
        kind = spec.get("type", "exponential")
        if kind not in ("exponential", "fixed"):
            raise InvalidJob(f"backoff type {kind!r} is not valid. Use 'exponential' or 'fixed'.")
        unknown = set(spec) - {"type", "delay", "factor", "max", "jitter"}
        if unknown:
            names = ", ".join(sorted(map(repr, unknown)))
            raise InvalidJob(f"Unknown backoff keys [{names}]; allowed: type, delay, factor, max, jitter.")
        for key in ("delay", "factor", "max"):
            value = spec.get(key, 0)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not _finite(value) or value < 0:
                raise InvalidJob(f"backoff[{key!r}] must be a finite, non-negative number.")
        return
    raise InvalidJob(f"backoff={spec!r} is not valid. Use seconds, 'exponential', a dict or a callable.")


def retry_delay(spec: BackoffSpec, attempt: int) -> float:
    """Return the seconds to wait before the retry that follows failed attempt ``attempt`` (1-based).

    >>> retry_delay(5, 3)
    5.0
    >>> 0 <= retry_delay("exponential", 3) <= 4.0
    True
    """
    if spec is None or spec == "none":
        return 0.0
    if callable(spec):
        value = float(spec(attempt))
        return value if math.isfinite(value) and value > 0 else 0.0
    if isinstance(spec, (int, float)):
        return float(spec)
    if spec == "fixed":
        return EXPONENTIAL_BASE
    if spec == "exponential":
        spec = {"type": "exponential"}
    assert isinstance(spec, Mapping)
    delay = float(spec.get("delay", EXPONENTIAL_BASE))
    if spec.get("type", "exponential") == "fixed":
        return delay
    cap = float(spec.get("max", EXPONENTIAL_CAP))
    factor = float(spec.get("factor", EXPONENTIAL_FACTOR))
    try:
        ceiling = min(cap, delay * factor ** (attempt - 1))
    except OverflowError:  # thousands of attempts: the cap applies
        ceiling = cap
    if spec.get("jitter", True):
        # "Full jitter": spreads retries of jobs that failed together.
        return random.uniform(ceiling / 2, ceiling)
    return ceiling
