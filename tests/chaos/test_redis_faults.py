"""Redis goes away and comes back: workers reconnect by themselves and nothing is lost."""

from __future__ import annotations

import time

import pytest
from django.test import override_settings

from django_jobs.engine import get_engine
from tests.chaos.conftest import QUEUES, cpu_seconds
from tests.chaos.invariants import assert_invariants
from tests.redis_server import RedisServer, wait_until
from tests.testapp import jobs_chaos

pytestmark = pytest.mark.chaos


def test_idle_workers_reconnect_after_redis_is_down_for_a_while(chaos, redis_server):
    sup = chaos.start("--processes=2", "--threads=2", ready=2)
    children = sorted(sup.children())

    redis_server.stop()
    # Longer than redis-py's own retries: the workers' backoff has to take over.
    time.sleep(3)
    redis_server.start()

    results = jobs_chaos.quick.enqueue_many([(f"q{i}",) for i in range(10)])
    chaos.wait_ledger("end", [f"q{i}" for i in range(10)])
    for result in results:
        chaos.wait_state(result.id, "completed")
    assert sup.alive()
    assert sorted(sup.children()) == children, "no worker process exited or was restarted"
    assert sup.stop() == 0
    assert "reached Redis again" in sup.output
    assert set(chaos.counts("end").values()) == {1}
    chaos.check_invariants()


def test_jobs_enqueued_before_a_redis_restart_under_load_all_complete(chaos, redis_server):
    count = 150
    results = jobs_chaos.slow.enqueue_many([(f"j{i}", 0.02) for i in range(count)])
    sup = chaos.start("--processes=2", "--threads=4")
    children = chaos.wait_ready(sup, 2)
    tags = [f"j{i}" for i in range(count)]
    chaos.wait_ledger("end", tags[:20])
    # A clean restart: redis-server writes its append-only file on SIGTERM, nothing is lost.
    redis_server.restart()

    chaos.wait_ledger("end", tags, timeout=30)
    wait_until(lambda: chaos.engine.counts("default")["completed"] == count, 10, message="every job completed")
    assert all(chaos.state(result.id) == "completed" for result in results)
    assert sorted(sup.children()) == sorted(children)
    assert sup.stop() == 0
    ends = chaos.counts("end")
    assert set(ends) == set(tags)
    # A job whose lease ran out while Redis was away may run again; none may be lost.
    assert sum(ends.values()) - count <= 8, f"too many repeated runs: {sum(ends.values()) - count}"
    assert chaos.engine.counts("default")["completed"] == count
    chaos.check_invariants()


def test_workers_started_before_redis_keep_retrying_then_run_jobs(chaos, jobs_settings):
    later = RedisServer()  # a free port, nothing listening yet
    try:
        sup = chaos.start("--processes=1", "--threads=2", env={"DJJ_REDIS_URL": later.url})
        sup.wait_output("not reachable yet")
        sup.wait_output("cannot reach Redis while")
        # The worker backs off instead of exiting or spinning.
        [child] = sup.children()
        before = cpu_seconds(child)
        time.sleep(2)
        assert sup.alive()
        assert sup.children() == [child]
        assert cpu_seconds(child) - before < 0.1, "the worker spins while Redis is down"
        assert sup.output.count("cannot reach Redis while") == 1, "the outage is logged once"

        later.start()
        with override_settings(DJANGO_JOBS={**jobs_settings, "REDIS_URL": later.url}):
            result = jobs_chaos.quick.enqueue("late")
            chaos.wait_ledger("end", ["late"], timeout=15)
            assert sup.children() == [child]
            assert sup.stop() == 0
            assert get_engine().get_job("default", result.id)["s"] == "completed"
        with later.client() as client:
            assert_invariants(client, chaos.prefix, QUEUES)
    finally:
        later.stop()


def test_a_flushed_script_cache_is_reloaded_without_errors(chaos, r):
    sup = chaos.start("--processes=1", "--threads=4", ready=1)
    first = jobs_chaos.slow.enqueue_many([(f"a{i}", 0.05) for i in range(20)])
    chaos.wait_ledger("end", ["a0"])
    r.script_flush()  # as after a failover to a replica without the scripts
    second = jobs_chaos.quick.enqueue_many([(f"b{i}",) for i in range(20)])
    for result in [*first, *second]:
        chaos.wait_state(result.id, "completed")
    assert sup.stop() == 0
    assert "Traceback" not in sup.output
    assert set(chaos.counts("end").values()) == {1}
    chaos.check_invariants()
