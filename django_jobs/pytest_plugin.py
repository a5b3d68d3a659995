"""pytest fixtures for projects that use django_jobs (loaded through the ``pytest11`` entry point).

* ``jobs_isolated``: this test's own Redis key prefix (its keys are deleted afterwards);
* ``jobs_immediate``: jobs run at once in the calling thread (with ``jobs_isolated``);
* ``jobs_capture``: jobs are recorded; yields a :class:`django_jobs.testing.Captured`;
* ``jobs_worker``: :func:`django_jobs.testing.work_until_empty`, with ``jobs_isolated``.

Nothing is imported from Django or django_jobs until a fixture is used, so the plugin is
harmless in projects whose tests do not use it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest


@pytest.fixture
def jobs_isolated() -> Iterator[str]:
    """Give the test its own django_jobs key prefix; delete its keys afterwards."""
    from django_jobs.testing import isolated_queues

    with isolated_queues() as prefix:
        yield prefix


@pytest.fixture
def jobs_immediate(jobs_isolated: str) -> Iterator[None]:
    """Run every job the test enqueues at once, in the calling thread."""
    from django_jobs.testing import immediate

    with immediate():
        yield


@pytest.fixture
def jobs_capture(jobs_isolated: str) -> Iterator[Any]:
    """Record the jobs the test enqueues; yields the :class:`~django_jobs.testing.Captured`."""
    from django_jobs.testing import capture

    with capture() as captured:
        yield captured


@pytest.fixture
def jobs_worker(jobs_isolated: str) -> Callable[..., int]:
    """Return :func:`~django_jobs.testing.work_until_empty` (a burst worker in this process)."""
    from django_jobs.testing import work_until_empty

    return work_until_empty
