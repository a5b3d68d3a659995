"""The job the long chaos tier runs: it writes a timestamped start and end line to the ledger."""

from __future__ import annotations

import time

from django_jobs import job
from tests.testapp.jobs import ledger


@job
def timed(tag: str, seconds: float) -> str:
    """Record ``start`` with the wall-clock time, sleep ``seconds``, record ``end``."""
    ledger("start", tag, f"{time.time():.3f}")
    time.sleep(seconds)
    ledger("end", tag, f"{time.time():.3f}")
    return tag
