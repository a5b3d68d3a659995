"""Sentinel and Redis Cluster against real servers: where writes land, idle waits, checks, ENQUEUE_WAIT."""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter

import pytest
from django.conf import settings
from django.core.checks import run_checks
from django.test import override_settings

from django_jobs.conf import build_settings
from django_jobs.engine.queue import Engine, NewJob
from django_jobs.exceptions import ConfigurationError
from tests.redis_server import SENTINEL_PASSWORD, SENTINEL_SERVICE


def deploy_ids(value: dict) -> list[str]:
    with override_settings(DJANGO_JOBS=value):
        return [m.id for m in run_checks(tags=["django_jobs"], include_deployment_checks=True) if m.id.startswith("django_jobs.")]


# -- Sentinel ------------------------------------------------------------------------------------


@pytest.mark.parametrize("topology", ["sentinel"], indirect=True)
def test_sentinel_engine_writes_on_the_primary_the_sentinels_name(engine, sentinel_group, prefix):
    assert engine.target.startswith("sentinel://") and engine.target.endswith(f"/{SENTINEL_SERVICE}")
    engine.enqueue("default", [NewJob(id="j1", data="{}")])
    primary = sentinel_group.primary_client()
    assert primary.exists(engine.keys("default").job("j1")) == 1
    assert primary.info("replication")["role"] == "master"


@pytest.mark.parametrize("topology", ["sentinel"], indirect=True)
def test_sentinel_settings_pass_every_check_and_a_wrong_sentinel_password_is_w001(jobs_settings, sentinel_group):
    assert deploy_ids(jobs_settings) == [i for i in deploy_ids(jobs_settings) if i not in ("django_jobs.W001", "django_jobs.E030")]
    wrong = {**jobs_settings, "SENTINEL": {**jobs_settings["SENTINEL"], "SENTINEL_PASSWORD": "nope"}}
    assert "django_jobs.W001" in deploy_ids(wrong)


@pytest.mark.parametrize("topology", ["sentinel"], indirect=True)
def test_enqueue_wait_returns_once_the_replica_holds_the_job(jobs_settings, sentinel_group, caplog):
    settings = build_settings({**jobs_settings, "ENQUEUE_WAIT": {"REPLICAS": 1, "TIMEOUT": 2}})
    engine = Engine(settings)
    try:
        replica = next(s for s in sentinel_group.servers if s.port != sentinel_group.primary_port())
        with caplog.at_level(logging.WARNING, logger="django_jobs.engine"):
            for i in range(20):
                engine.enqueue("default", [NewJob(id=f"w{i}", data="{}")])
                # WAIT returned: the replica has the job already, with no delay to let it catch up.
                assert sentinel_group.server_client(replica.port).exists(engine.keys("default").job(f"w{i}")) == 1
            many = [NewJob(id=f"m{i}", data="{}") for i in range(1200)]
            assert engine.enqueue_many("default", many, chunk=500) == [1] * 1200
            assert sentinel_group.server_client(replica.port).exists(engine.keys("default").job("m1199")) == 1
        assert "ENQUEUE_WAIT" not in caplog.text
        # Asking for more replicas than exist: the enqueue still happens, after TIMEOUT, and says so.
        short = Engine(build_settings({**jobs_settings, "ENQUEUE_WAIT": {"REPLICAS": 2, "TIMEOUT": 0.05}}))
        with caplog.at_level(logging.WARNING, logger="django_jobs.engine"):
            assert short.enqueue("default", [NewJob(id="x", data="{}")]) == [1]
        short.close()
        assert "1 of 2 replica(s) acknowledged" in caplog.text
    finally:
        engine.close()


def test_enqueue_wait_is_accepted_on_a_cluster_and_checked():
    settings = build_settings({"CLUSTER": ["redis://127.0.0.1:7000"], "ENQUEUE_WAIT": {"REPLICAS": 1, "TIMEOUT": 1}})
    assert settings.enqueue_wait == (1, 1000)
    with pytest.raises(ConfigurationError, match="TIMEOUT"):
        build_settings({"REDIS_URL": "redis://127.0.0.1:6379/0", "ENQUEUE_WAIT": {"REPLICAS": 1, "TIMEOUT": 0}})


# -- Cluster -------------------------------------------------------------------------------------


@pytest.mark.parametrize("topology", ["cluster"], indirect=True)
def test_cluster_engine_spreads_queues_over_the_primaries(engine, cluster_group):
    assert engine._is_cluster() and engine.target.startswith("Redis Cluster (")
    nodes = {engine.client.get_node_from_key(engine.keys(q).wait).name for q in ("default", "high", "low")}
    assert len(nodes) >= 2  # the test queues live on different primaries
    for q in ("default", "high", "low"):
        engine.enqueue(q, [NewJob(id=f"{q}-1", data="{}")])
    owner = engine.client.get_node_from_key(engine.keys("high").job("high-1"))
    assert engine.client.get_redis_connection(owner).exists(engine.keys("high").job("high-1")) == 1


def wait_calls(group, port: int) -> int:
    """How many WAIT commands the node at ``port`` has served (INFO commandstats)."""
    with group.node_client(next(n for n in group.nodes if n.port == port)) as c:
        return int(c.info("commandstats").get("cmdstat_wait", {}).get("calls", 0))


@pytest.mark.parametrize("topology", ["cluster"], indirect=True)
def test_cluster_enqueue_wait_returns_once_the_slots_replica_holds_the_job(jobs_settings, cluster_group, caplog):
    engine = Engine(build_settings({**jobs_settings, "ENQUEUE_WAIT": {"REPLICAS": 1, "TIMEOUT": 2}}))
    try:
        with caplog.at_level(logging.WARNING, logger="django_jobs.engine"):
            for queue in ("default", "high", "low"):  # on different primaries, each with its own replica
                key = engine.keys(queue).job(f"{queue}-0")
                primary = cluster_group.slot_owner(key)
                (replica,) = cluster_group.slot_replicas(key)
                before = wait_calls(cluster_group, primary)
                for i in range(10):
                    engine.enqueue(queue, [NewJob(id=f"{queue}-{i}", data="{}")])
                    # WAIT returned: the slot's replica has the job already, with no delay to catch up.
                    assert cluster_group.replica_exists(replica, engine.keys(queue).job(f"{queue}-{i}")), (queue, i)
                # On the primary that ran the script (a call resent after a timeout under load sends its WAIT again).
                assert wait_calls(cluster_group, primary) >= before + 10
            many = [NewJob(id=f"m{i}", data="{}") for i in range(1200)]
            assert engine.enqueue_many("default", many, chunk=500) == [1] * 1200
            (replica,) = cluster_group.slot_replicas(engine.keys("default").wait)
            assert cluster_group.replica_exists(replica, engine.keys("default").job("m1199"))
        assert "ENQUEUE_WAIT" not in caplog.text
        # Asking for more replicas than the slot has: the enqueue still happens, after TIMEOUT, and says so.
        short = Engine(build_settings({**jobs_settings, "ENQUEUE_WAIT": {"REPLICAS": 2, "TIMEOUT": 0.05}}))
        with caplog.at_level(logging.WARNING, logger="django_jobs.engine"):
            assert short.enqueue("high", [NewJob(id="x", data="{}")]) == [1]
        short.close()
        assert "1 of 2 replica(s) acknowledged" in caplog.text
    finally:
        engine.close()


@pytest.mark.parametrize("topology", ["cluster"], indirect=True)
def test_cluster_enqueue_wait_follows_a_slot_moved_to_another_primary(jobs_settings, cluster_group, caplog):
    from tests.redis_server import migrate_slot

    engine = Engine(build_settings({**jobs_settings, "ENQUEUE_WAIT": {"REPLICAS": 1, "TIMEOUT": 2}}))
    try:
        engine.enqueue("low", [NewJob(id="before", data="{}")])  # the slot map now points at the old primary
        old, new = migrate_slot(cluster_group, engine.keys("low").wait)
        with caplog.at_level(logging.WARNING, logger="django_jobs.engine"):
            engine.enqueue("low", [NewJob(id="after", data="{}")])  # MOVED, followed: script and WAIT on the new one
        assert "ENQUEUE_WAIT" not in caplog.text
        (replica,) = cluster_group.slot_replicas(engine.keys("low").wait)
        assert cluster_group.replica_exists(replica, engine.keys("low").job("after"))
        assert engine.get_job("low", "before") is not None and engine.get_job("low", "after") is not None
        migrate_slot(cluster_group, engine.keys("low").wait, to=old)  # leave the cluster as the session had it
    finally:
        engine.close()


@pytest.mark.parametrize("topology", ["cluster"], indirect=True)
def test_cluster_idle_wait_wakes_for_a_job_on_any_node_within_milliseconds(engine):
    queues = ["default", "high", "low"]
    assert engine.wait_for_work(queues, 0.2) is False  # nothing yet: the wait times out
    for queue in queues:
        timer = threading.Timer(0.3, engine.enqueue, args=(queue, [NewJob(id=f"{queue}-w", data="{}")]))
        timer.start()
        started = time.monotonic()
        assert engine.wait_for_work(queues, 5) is True
        elapsed = time.monotonic() - started
        timer.join()
        assert 0.25 < elapsed < 1.5, (queue, elapsed)
    # A marker popped while nobody waited is kept: the next wait returns at once.
    engine.enqueue("low", [NewJob(id="later", data="{}")])
    time.sleep(0.2)
    started = time.monotonic()
    assert engine.wait_for_work(queues, 5) is True and time.monotonic() - started < 0.1


def test_a_closed_cluster_engine_ends_its_marker_waits_and_logs_no_topology_refresh_when_the_nodes_go(caplog):
    """Closing ends the idle waits' threads: none reconnects, then logs failed topology refreshes once the nodes stop."""
    from tests.redis_server import ClusterGroup, start_group

    group = start_group(lambda: ClusterGroup(primaries=3, replicas=0))
    try:
        engine = Engine(build_settings({**settings.DJANGO_JOBS, **group.settings(), "PREFIX": "closing"}))
        queues = ["default", "high", "low"]  # on three slots: one marker thread each
        before = set(threading.enumerate())
        assert engine.wait_for_work(queues, 0.2) is False
        markers = [t for t in threading.enumerate() if t not in before and t.name.startswith("djj-marker-")]
        assert len(markers) == len(queues)
        with caplog.at_level(logging.DEBUG, logger="redis"):
            engine.close()
            for thread in markers:
                thread.join(5)
            assert not [t.name for t in markers if t.is_alive()]
            group.stop()
            time.sleep(0.5)  # what a thread still waiting would log once its connection drops
    finally:
        group.stop()
    assert not [r.getMessage() for r in caplog.records if "refresh" in r.getMessage().lower() and r.levelno >= logging.WARNING]


@pytest.mark.parametrize("topology", ["cluster"], indirect=True)
def test_cluster_flow_over_two_queues_is_written_in_parts_parent_first_each_job_on_its_own_slot(engine):
    from django_jobs.engine.queue import FlowJob

    parent = FlowJob(queue="default", job=NewJob(id="p", data="{}"), parent_queue="", policy="", keep_ms=0,
                     children=(("high", "c", "child"),))
    child = FlowJob(queue="high", job=NewJob(id="c", data="{}", parent_id="p"), parent_queue="default", policy="",
                    keep_ms=0, children=())
    assert engine.enqueue_flow([parent, child]) == 1
    p, c = engine.get_job("default", "p"), engine.get_job("high", "c")
    assert p["s"] == "waiting_children" and p["pend"] == "1" and c["s"] == "waiting"
    assert p["xs"] == c["xs"] == "1" and p["fn"] == c["fn"] and p["e"] == c["e"]  # one flow, one enqueue time
    assert engine.enqueue_flow([parent, child]) == 0  # an id of it exists: nothing written


@pytest.mark.parametrize("topology", ["cluster"], indirect=True)
def test_cluster_settings_pass_the_deploy_checks(jobs_settings):
    assert "django_jobs.E030" not in deploy_ids(jobs_settings)
    assert "django_jobs.W001" not in deploy_ids(jobs_settings)


def test_e030_tells_a_cluster_node_a_sentinel_and_a_single_server_apart(cluster_group, sentinel_group, redis_server):
    assert "django_jobs.E030" in deploy_ids({"REDIS_URL": cluster_group.url})
    assert "django_jobs.E030" in deploy_ids({"REDIS_URL": redis_server.url, "CLUSTER": True})
    sentinel_url = f"redis://:{SENTINEL_PASSWORD}@{sentinel_group.addresses[0]}/0"
    with override_settings(DJANGO_JOBS={"REDIS_URL": sentinel_url}):
        found = [m for m in run_checks(tags=["django_jobs"], include_deployment_checks=True) if m.id == "django_jobs.E030"]
    assert found and "Sentinel" in found[0].msg and "SENTINEL" in found[0].hint
    assert "django_jobs.E030" not in deploy_ids({"REDIS_URL": redis_server.url})


def test_a_django_redis_sentinel_cache_and_a_cluster_cache_reach_the_real_servers(sentinel_group, cluster_group):
    from tests.redis_server import SENTINEL_REDIS_PASSWORD

    caches = {
        "sentinel": {
            "BACKEND": "django_redis.cache.RedisCache",
            "LOCATION": f"redis://{SENTINEL_SERVICE}/0",
            "OPTIONS": {
                "CLIENT_CLASS": "django_redis.client.SentinelClient",
                "SENTINELS": [("127.0.0.1", s.port) for s in sentinel_group.sentinels],
                "PASSWORD": SENTINEL_REDIS_PASSWORD, "SENTINEL_KWARGS": {"password": SENTINEL_PASSWORD},
            },
        },
        "cluster": {
            "BACKEND": "django_redis.cache.RedisCache", "LOCATION": cluster_group.url,
            "OPTIONS": {"REDIS_CLIENT_CLASS": "redis.cluster.RedisCluster"},
        },
    }
    with override_settings(CACHES=caches):
        for alias in ("sentinel", "cluster"):
            engine = Engine(build_settings({"CACHE_ALIAS": alias, "PREFIX": f"cache-{alias}"}))
            try:
                engine.enqueue("default", [NewJob(id="c1", data="{}")])
                assert engine.get_job("default", "c1")["s"] == "waiting"
                assert engine._is_cluster() is (alias == "cluster")
                raw = sentinel_group.primary_client() if alias == "sentinel" else cluster_group.client()
                assert raw.exists(f"cache-{alias}:{{default}}:job:c1") == 1  # on the real servers
                engine.drop_all()
            finally:
                engine.close()
    assert sentinel_group.primary_client().exists("cache-sentinel:{default}:job:c1") == 0  # dropped again


@pytest.mark.parametrize("topology", ["cluster"], indirect=True)
def test_cluster_enqueue_wait_holds_every_part_of_a_flow_over_three_slots_on_the_replicas(jobs_settings, cluster_group, caplog):
    """A flow over several queues is written in parts: the first (with the create entries of the
    others) and each part its producer writes are waited for, so every job of the flow is on its
    slot's replica when the enqueue returns."""
    from django_jobs.engine.queue import FlowJob

    engine = Engine(build_settings({**jobs_settings, "ENQUEUE_WAIT": {"REPLICAS": 1, "TIMEOUT": 2}}))
    try:
        data = '{"v":1,"n":"tests.testapp.jobs_flows.value","a":[1],"k":{}}'
        rows = [
            FlowJob(queue="default", job=NewJob(id="p", data=data), children=(("high", "m", "x"), ("low", "c", "x"))),
            FlowJob(queue="high", job=NewJob(id="m", data=data, parent_id="p"), parent_queue="default", children=(("low", "g", "x"),)),
            FlowJob(queue="low", job=NewJob(id="c", data=data, parent_id="p"), parent_queue="default"),
            FlowJob(queue="low", job=NewJob(id="g", data=data, parent_id="m"), parent_queue="high"),
        ]
        owner = {q: cluster_group.slot_owner(engine.keys(q).wait) for q in ("default", "high", "low")}
        primaries = set(owner.values())
        before = {p: wait_calls(cluster_group, p) for p in primaries}
        with caplog.at_level(logging.WARNING, logger="django_jobs.engine"):
            assert engine.enqueue_flow(rows) == 1
        for row in rows:
            key = engine.keys(row.queue).job(row.job.id)
            (replica,) = cluster_group.slot_replicas(key)
            assert cluster_group.replica_exists(replica, key), row.job.id
        # A WAIT per part written, on the primary of its slot: default, high, and low twice (depths 1
        # and 2); a call that met NOSCRIPT (this engine's first on a node) sends its WAIT again.
        expected = Counter(owner[q] for q in ("default", "high", "low", "low"))
        waits = {p: wait_calls(cluster_group, p) - before[p] for p in primaries}
        assert all(waits[p] >= expected[p] for p in primaries), (waits, expected)
        assert "ENQUEUE_WAIT" not in caplog.text
    finally:
        engine.close()


@pytest.mark.parametrize("topology", ["server", "cluster"], indirect=True)
def test_lean_job_hashes_are_enqueued_and_run_on_one_server_and_on_a_cluster(jobs_settings, r, work):
    """LEAN_JOB_HASH on a cluster as on one server: single, bulk, chunked and delayed jobs on
    queues of different slots are written without 'p' at 0 and 'ws', and every one runs."""
    from tests.testapp import jobs

    with override_settings(DJANGO_JOBS={**jobs_settings, "LEAN_JOB_HASH": True}):
        from django_jobs.engine import get_engine

        engine = get_engine()
        results = [jobs.add.enqueue(1, 2), jobs.add.using(queue_name="high").enqueue(3, 4)]
        results += jobs.add.enqueue_many([(i, i) for i in range(600)])  # two chunks, streamed
        delayed = engine.enqueue("low", [NewJob(id="later", data='{"v":1,"n":"tests.testapp.jobs.add","a":[5,6]}', delay_ms=1)])
        assert delayed == [2]
        for result in results[:3] + results[-1:]:
            fields = r.hgetall(engine.keys(result.queue).job(result.id))
            assert sorted(fields)[:4] == ["cid", "d", "e", "s"] and "p" not in fields and "ws" not in fields, fields
        time.sleep(0.05)
        assert work() == len(results) + 1
        assert [jobs.add.get_result(x.id).return_value for x in results[:2]] == [3, 7]
