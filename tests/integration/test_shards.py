"""Sharded queues (docs/scaling.md#sharded-queues): one queue over several hash tags, shown as one."""

from __future__ import annotations

import pytest
from django.test import override_settings

from django_jobs.compat import TaskResultStatus
from tests.testapp import jobs

# One Redis server and a real Redis Cluster (tests/conftest.py): the shards land on several primaries.
pytestmark = pytest.mark.parametrize("topology", ["server", "cluster"], indirect=True)

SHARDS = 4


@pytest.fixture(autouse=True)
def sharded(jobs_settings):
    """Add the queue ``hot`` of SHARDS shards to the test's settings."""
    from django_jobs.engine import reset_engine

    queues = {**jobs_settings["QUEUES"], "hot": {"SHARDS": SHARDS}}
    with override_settings(DJANGO_JOBS={**jobs_settings, "QUEUES": queues}):
        yield
    reset_engine()


def hot(task):
    return task.using(queue_name="hot")


def test_jobs_spread_over_every_shard_and_all_run(engine, work):
    results = [hot(jobs.add).enqueue(i, 1) for i in range(40)]
    per_shard = [engine.counts(shard)["waiting"] for shard in engine.shards("hot")]
    assert per_shard == [10, 10, 10, 10]  # round robin
    assert engine.counts("hot")["waiting"] == 40
    assert work() == 40
    for i, result in enumerate(results):
        fresh = jobs.add.get_result(result.id)
        assert fresh.status == TaskResultStatus.SUCCESSFUL
        assert fresh.return_value == i + 1
        assert fresh.queue == "hot"
    assert engine.counts("hot")["completed"] == 40
