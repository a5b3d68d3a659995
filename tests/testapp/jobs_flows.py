"""Jobs of the flow tests (tests/*/test_flows*.py): the image-upload flow of issue 8 and helpers.

Each job returns what it saw (its correlation id, its children's results), so a test can
check what reached every job of a tree.
"""

from __future__ import annotations

import os
import time

from django_jobs import job
from django_jobs.correlation import get_correlation_id
from tests.testapp.jobs import ledger


@job(queue="high")
def optimize(image_id: int) -> dict[str, object]:
    """Optimise an uploaded image (on queue ``high``)."""
    ledger("end", f"optimize:{image_id}")
    return {"image": image_id, "bytes": 1000 - image_id, "cid": get_correlation_id()}


@job(queue="low")
def check_policy(image_id: int, policy: str) -> dict[str, object]:
    """Check the image against ``policy`` (on queue ``low``); policy ``"broken"`` always fails."""
    ledger("end", f"check:{image_id}:{policy}")
    if policy == "broken":
        raise ValueError(f"policy {policy!r} cannot be checked")
    return {"policy": policy, "ok": True, "cid": get_correlation_id()}


@job(takes_context=True)
def store(context, image_id: int) -> dict[str, object]:
    """Store the image once its children ended; return what it saw of them (on ``default``)."""
    results = context.children_results()
    ledger("end", f"store:{image_id}")
    return {
        "image": image_id,
        "cid": get_correlation_id(),
        "children": {child_id: [c.name.rsplit(".", 1)[-1], c.state, c.value] for child_id, c in results.items()},
    }


@job(takes_context=True)
def gather(context, tag: str) -> dict[str, object]:
    """A generic parent: return ``{child id: [state, value]}`` of its ended children."""
    ledger("end", f"gather:{tag}")
    return {child_id: [c.state, c.value] for child_id, c in context.children_results().items()}


@job
def value(x: int) -> int:
    """Return ``x``."""
    return x


@job(attempts=1)
def gated(tag: str, gate: str) -> str:
    """Fail on every run until the file ``gate`` exists (a run cut short by a crash fails again when re-run)."""
    ledger("end", f"gated:{tag}")
    if not os.path.exists(gate):
        raise RuntimeError(f"gate of {tag} closed")
    return f"ok {tag}"


@job(attempts=2)
def broken(tag: str) -> None:
    """Fail every time (2 attempts)."""
    ledger("end", f"broken:{tag}")
    raise RuntimeError(f"broken {tag}")


@job
def add(previous: int, amount: int) -> int:
    """A chain step: the previous step's result plus ``amount``."""
    return previous + amount


@job
def total(values: list[int]) -> int:
    """A chord callback: the sum of the group's results."""
    return sum(v for v in values if v is not None)


@job
def slow_step(tag: str, seconds: float) -> str:
    """Record the start, sleep ``seconds``, record the end."""
    ledger("start", tag)
    time.sleep(seconds)
    ledger("end", tag)
    return tag
