"""Sentinel failover under load: SIGKILL the primary while jobs are enqueued and run.

Counts every job (docs/scaling.md#what-a-failover-costs): an enqueue the old primary
acknowledged but had not replicated yet is lost (asynchronous replication); a job whose settle
was lost runs again once its lease expires on the new primary (a duplicate, at least once).
Each measured run prints a ``FAILOVER`` line: the numbers docs/scaling.md quotes.
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter

import pytest
import redis
from django.test import override_settings

from django_jobs.exceptions import RedisUnavailable
from tests.chaos.conftest import QUEUES
from tests.chaos.invariants import assert_invariants
from tests.redis_server import wait_until
from tests.testapp import jobs_chaos

pytestmark = pytest.mark.chaos
SENTINEL = pytest.mark.parametrize("topology", ["sentinel"], indirect=True)
CLUSTER = pytest.mark.parametrize("topology", ["cluster"], indirect=True)

#: Jobs enqueued per second by the producer, and for how long; the primary dies after KILL_AFTER s.
RATE, DURATION, KILL_AFTER = 100, 6.0, 2.0
#: Lease of the workers (tests/settings.py reads DJJ_LEASE_SECONDS): how soon a lost settle reruns a job.
LEASE = 2.0
#: Enough enqueues acknowledged before the fault for the run to mean something: an eighth of the
#: producer's rate (a CI run loaded to 17-25 on 2 cores acknowledged 48 of the 200 asked for).
ENOUGH = RATE * KILL_AFTER / 8


@pytest.fixture
def group(request, topology):
    """The Sentinel group or the cluster, healed after the test (the killed server rejoins as a replica)."""
    found = request.getfixturevalue("cluster_group" if topology == "cluster" else "sentinel_group")
    yield found
    found.heal()


def produce(stop: threading.Event, acked: dict[str, float], ids: dict[str, str], refused: Counter[str]) -> None:
    """Enqueue ``timed`` jobs at RATE until ``stop`` is set; record each acknowledged tag with its time."""
    i = 0
    while not stop.is_set():
        tag = f"f{i}"
        i += 1
        try:
            result = jobs_chaos.timed.enqueue(tag, 0.0)
        except RedisUnavailable:
            refused["unavailable"] += 1
        else:
            acked[tag] = time.time()
            ids[tag] = result.id
        time.sleep(1 / RATE)


def failover_run(chaos, group, jobs_settings, *, enqueue_wait: dict | None) -> dict:
    """Run the producer and workers, kill the primary, count every job; return the measurements."""
    value = dict(jobs_settings)
    env = {"DJJ_LEASE_SECONDS": str(LEASE)}
    if enqueue_wait:
        value["ENQUEUE_WAIT"] = enqueue_wait
    with override_settings(DJANGO_JOBS=value):
        sup = chaos.start("--processes=1", "--threads=4", ready=1, env=env)
        acked: dict[str, float] = {}
        ids: dict[str, str] = {}
        refused: Counter[str] = Counter()
        started = time.time()
        stop = threading.Event()
        producer = threading.Thread(target=produce, args=(stop, acked, ids, refused))
        producer.start()
        time.sleep(KILL_AFTER)
        # On a slow or loaded machine (replicas slow to acknowledge ENQUEUE_WAIT's WAIT) the kill
        # waits until more than ENOUGH enqueues are acknowledged, so every run kills a primary
        # with work behind it (a fresh-clone run acknowledged 23 in all, two WAITs timed out).
        patience = time.time() + 20
        while len(acked) <= ENOUGH and time.time() < patience:
            time.sleep(0.05)
        key = chaos.engine.keys("default").wait
        cluster = hasattr(group, "slot_owner")
        old = group.kill_primary(key) if cluster else group.kill_primary()
        killed_at = time.time()
        new_port = group.wait_failover(old.port, key) if cluster else group.wait_failover(old.port)
        promoted_at = time.time()
        # Produce for DURATION and until an enqueue is acknowledged after the promotion (the client
        # finds the new primary): on a loaded machine the failover itself can take most of DURATION.
        deadline = max(started + DURATION, promoted_at + 1.0)
        while time.time() < deadline or (
            time.time() < promoted_at + 20 and not any(t > promoted_at for t in list(acked.values()))
        ):
            time.sleep(0.05)
        stop.set()
        producer.join()
        # Every acknowledged job that survived runs; give lost leases time to expire and recover.
        deadline = time.time() + 40
        while time.time() < deadline and not set(acked) <= set(chaos.counts("start")):
            time.sleep(0.2)
        time.sleep(LEASE * 2)  # a job re-run after a lost settle shows up as a duplicate
        assert sup.stop() == 0
    starts: dict[str, list[float]] = {}
    for row in chaos.ledger():
        if row[0] == "start":
            starts.setdefault(row[2], []).append(float(row[3]))
    lost = sorted(tag for tag in acked if tag not in starts)
    duplicated = sorted(tag for tag, runs in starts.items() if len(runs) > 1)
    after_kill = [min(runs) for tag, runs in starts.items() if acked.get(tag, 0) > killed_at]
    first_enqueue_after = min((t for t in acked.values() if t > killed_at), default=None)
    result = {
        "enqueue_wait": enqueue_wait, "acknowledged": len(acked), "refused": sum(refused.values()),
        "lost": len(lost), "duplicated": len(duplicated),
        "failover_s": round(promoted_at - killed_at, 2),
        "enqueue_back_s": round(first_enqueue_after - killed_at, 2) if first_enqueue_after else None,
        "jobs_run_again_s": round(min(after_kill) - killed_at, 2) if after_kill else None,
        "lost_acked_before_kill_ms": [round((killed_at - acked[t]) * 1000) for t in lost],
        "duplicates_first_run_before_kill_ms": [round((killed_at - min(starts[t])) * 1000) for t in duplicated],
    }
    print("FAILOVER", json.dumps(result))
    primary = group.check_client(new_port)
    assert_invariants(primary, chaos.prefix, QUEUES)
    # A lost job was acknowledged by the old primary just before it died (not replicated yet).
    assert all(0 <= ms <= 1000 for ms in result["lost_acked_before_kill_ms"]), result
    for tag in lost:  # gone from the new primary, not stuck in it
        assert not primary.exists(f"{chaos.prefix}:{{default}}:job:{ids[tag]}"), tag
    # A duplicate ran first before the kill or while the old primary was dying (its settle was lost).
    assert all(-1000 <= ms for ms in result["duplicates_first_run_before_kill_ms"]), result
    assert result["jobs_run_again_s"] is not None and result["jobs_run_again_s"] < 20, result
    return result


@SENTINEL
def test_sentinel_failover_under_load_loses_only_unreplicated_enqueues(chaos, group, jobs_settings):
    result = failover_run(chaos, group, jobs_settings, enqueue_wait=None)
    # The producer ran before the kill and was acknowledged again after the failover.
    assert result["acknowledged"] > ENOUGH and result["enqueue_back_s"] is not None, result


@SENTINEL
def test_sentinel_failover_with_enqueue_wait_loses_no_acknowledged_enqueue(chaos, group, jobs_settings):
    result = failover_run(chaos, group, jobs_settings, enqueue_wait={"REPLICAS": 1, "TIMEOUT": 1.0})
    assert result["lost"] == 0, result


@pytest.mark.parametrize("topology", ["sentinel", "cluster"], indirect=True)
def test_enqueue_wait_cost_on_a_healthy_group(group, jobs_settings, topology):
    """What ENQUEUE_WAIT costs when the replica is up: enqueue latency with and without it (printed)."""
    from django_jobs.conf import build_settings
    from django_jobs.engine.queue import Engine, NewJob

    measured = {}
    waits = {}
    for label, wait in (("off", None), ("on", {"REPLICAS": 1, "TIMEOUT": 1.0})):
        engine = Engine(build_settings({**jobs_settings, "ENQUEUE_WAIT": wait}))
        waits_before = wait_calls(group, topology)
        try:
            engine.enqueue("default", [NewJob(id=f"{label}-warm", data="{}")])
            times = []
            for i in range(500):
                started = time.perf_counter()
                engine.enqueue("default", [NewJob(id=f"{label}-{i}", data="{}")])
                times.append(time.perf_counter() - started)
            started = time.perf_counter()
            engine.enqueue_many("default", [NewJob(id=f"{label}-bulk-{i}", data="{}") for i in range(5000)])
            bulk = time.perf_counter() - started
        finally:
            engine.close()
        waits[label] = wait_calls(group, topology) - waits_before
        times.sort()
        measured[label] = {
            "p50_ms": round(times[250] * 1000, 3), "p99_ms": round(times[495] * 1000, 3),
            "per_s_one_by_one": round(500 / sum(times)), "bulk_5000_s": round(bulk, 3),
        }
    print("ENQUEUE_WAIT_COST", topology, json.dumps(measured))
    # What was timed is what the setting says: every enqueue with it waited for the replica (one
    # WAIT each: the warm-up, the 500, at least one for the bulk call), none without it. (Not the
    # times: they are printed, and a loaded machine moves them either way.)
    assert waits["off"] == 0 and waits["on"] >= 502, waits


def wait_calls(group, topology) -> int:
    """The WAIT commands the group's servers have run so far (INFO commandstats, a down server skipped)."""
    if topology == "cluster":
        clients = [group.node_client(node) for node in group.nodes]
    else:
        clients = [group.server_client(server.port) for server in group.servers]
    total = 0
    for client in clients:
        try:
            total += client.info("commandstats").get("cmdstat_wait", {}).get("calls", 0)
        except redis.ConnectionError:
            continue
        finally:
            client.close()
    return total


@CLUSTER
def test_cluster_primary_killed_under_load_loses_only_unreplicated_enqueues(chaos, group, jobs_settings):
    """SIGKILL the primary of the queue's slot: its replica is promoted, RedisCluster follows."""
    result = failover_run(chaos, group, jobs_settings, enqueue_wait=None)
    assert result["acknowledged"] > ENOUGH and result["enqueue_back_s"] is not None, result


@CLUSTER
def test_cluster_primary_killed_with_enqueue_wait_loses_no_acknowledged_enqueue(chaos, group, jobs_settings):
    """ENQUEUE_WAIT on a cluster: the script and WAIT share the slot's primary connection; an
    acknowledged job is on the replica that the kill promotes."""
    result = failover_run(chaos, group, jobs_settings, enqueue_wait={"REPLICAS": 1, "TIMEOUT": 1.0})
    assert result["lost"] == 0, result
    assert result["acknowledged"] > ENOUGH and result["enqueue_back_s"] is not None, result


@CLUSTER
def test_moving_a_queues_slot_to_another_primary_while_its_jobs_run_loses_nothing(chaos, cluster_group, jobs_settings):
    """Reshard under load: MOVED / ASK / TRYAGAIN are followed by RedisCluster; every job runs."""
    from tests.redis_server import migrate_slot

    sup = chaos.start("--processes=1", "--threads=4", ready=1, env={"DJJ_LEASE_SECONDS": str(LEASE)})
    acked: dict[str, float] = {}
    ids: dict[str, str] = {}
    refused: Counter[str] = Counter()
    stop = threading.Event()
    producer = threading.Thread(target=produce, args=(stop, acked, ids, refused))
    started = time.time()
    producer.start()
    time.sleep(KILL_AFTER)
    key = chaos.engine.keys("default").wait
    old_port, new_port = migrate_slot(cluster_group, key)
    assert cluster_group.slot_owner(key) == new_port != old_port
    time.sleep(max(0.0, started + DURATION - time.time()))
    stop.set()
    producer.join()
    deadline = time.time() + 40
    while time.time() < deadline and not set(acked) <= set(chaos.counts("start")):
        time.sleep(0.2)
    time.sleep(LEASE * 2)
    assert sup.stop() == 0
    runs = chaos.counts("start")
    lost = sorted(set(acked) - set(runs))
    duplicated = sorted(tag for tag, n in runs.items() if n > 1)
    print("RESHARD", json.dumps({"acknowledged": len(acked), "refused": sum(refused.values()),
                                 "lost": len(lost), "duplicated": len(duplicated)}))
    assert lost == [] and duplicated == [], (lost, duplicated, sup.output[-3000:])
    assert len(acked) > ENOUGH
    assert_invariants(cluster_group.client(), chaos.prefix, QUEUES)


@SENTINEL
def test_the_cron_scheduler_keeps_firing_after_a_sentinel_failover_one_job_per_tick(group, engine):
    """The leader's lease and the tick claims live on the primary: after a failover the scheduler
    reconnects, keeps (or re-takes) the lease, and the ticks go on, each enqueued once."""
    from django_jobs.scheduler import Schedule, Scheduler

    tick = Schedule(name="tick", job="tests.testapp.jobs_chaos.quick", expression=None, every=0.5, args=["tick"],
                    kwargs={}, queue=None, timezone="UTC", missed="latest")
    scheduler = Scheduler([tick], lease=2.0, holder="failover:1:aaaaaa")
    scheduler.start()
    try:
        wait_until(lambda: engine.counts("default")["waiting"] >= 2, 10, message="two ticks before the kill")
        old = group.kill_primary()
        killed_at = time.time()
        group.wait_failover(old.port)
        before = engine.counts("default")["waiting"]
        wait_until(lambda: engine.counts("default")["waiting"] >= before + 3, 20, message="ticks after the failover")
        resumed = time.time() - killed_at
    finally:
        scheduler.stop()
    ids = engine.state_page("default", "waiting", offset=0, limit=1000)
    assert len(ids) == len(set(ids)) and all(engine.get_job("default", i)["d"] for i in ids)
    print("CRON_FAILOVER", json.dumps({"ticks_again_after_s": round(resumed, 2), "jobs": len(ids)}))


@SENTINEL
@pytest.mark.db
@pytest.mark.django_db(transaction=True)
def test_the_database_mirror_follows_a_sentinel_failover(group, engine):
    """The mirror's consumer group and stream live on the primary: after a failover it reconnects
    and mirrors the jobs enqueued after it (those acknowledged before it survive on the replica)."""
    from django_jobs import mirror
    from django_jobs.models import JobRecord
    from tests.integration.test_mirror import run_loop, settled

    stop = threading.Event()
    loop = threading.Thread(target=run_loop, args=(mirror.Mirror(consumer="failover"), stop))
    loop.start()
    try:
        before = [jobs_chaos.quick.enqueue(f"b{i}").id for i in range(20)]
        wait_until(settled(lambda: JobRecord.objects.filter(job_id__in=before).count() == 20), 15, message="mirrored before")
        old = group.kill_primary()
        killed_at = time.time()
        group.wait_failover(old.port)
        after = []
        for i in range(20):
            while True:
                try:
                    after.append(jobs_chaos.quick.enqueue(f"a{i}").id)
                    break
                except RedisUnavailable:
                    time.sleep(0.2)
        wait_until(settled(lambda: JobRecord.objects.filter(job_id__in=after).count() == 20), 30, message="mirrored after")
        caught_up = time.time() - killed_at
    finally:
        stop.set()
        loop.join(15)
    assert JobRecord.objects.filter(job_id__in=before + after).count() == 40
    print("MIRROR_FAILOVER", json.dumps({"mirrored_again_after_s": round(caught_up, 2)}))


@CLUSTER
@pytest.mark.usefixtures("sharded")
def test_a_listener_of_a_sharded_queue_follows_every_shard_through_a_primary_kill(group, engine):
    """The listener blocks on every shard's node at once; the primary of one shard dies: its reads
    raise RedisUnavailable until the replica is promoted, then the same listener gets every shard's events."""
    from django_jobs.events import QueueEvents
    from tests.conftest import SHARDS
    from tests.testapp import jobs

    listener = QueueEvents("hot", types={"waiting"})
    seen: set[str] = set()
    refused: Counter[str] = Counter()
    stop = threading.Event()

    def follow() -> None:
        while not stop.is_set():
            try:
                seen.update(event.job_id for event in listener.read(timeout=1))
            except RedisUnavailable:
                refused["read"] += 1
                time.sleep(0.1)

    def enqueue_on_every_shard() -> list[str]:
        ids: dict[str, str] = {}
        while len(ids) < SHARDS:  # round robin; an enqueue refused during the failover is tried again
            try:
                job_id = jobs.add.using(queue_name="hot").enqueue(0, 0).id
            except RedisUnavailable:
                refused["enqueue"] += 1
                time.sleep(0.1)
                continue
            ids.setdefault(job_id.rpartition(".")[2], job_id)
        return list(ids.values())

    follower = threading.Thread(target=follow)
    follower.start()
    try:
        before = enqueue_on_every_shard()
        wait_until(lambda: set(before) <= seen, 10, message="every shard's events before the kill")
        key = engine.keys("hot#0").wait
        old = group.kill_primary(key)
        group.wait_failover(old.port, key)
        after = enqueue_on_every_shard()
        wait_until(lambda: set(after) <= seen, 30, message="every shard's events after the failover")
    finally:
        stop.set()
        follower.join(timeout=30)
    print("SHARDED_LISTENER_FAILOVER", json.dumps(dict(refused)))
    assert not follower.is_alive()
    assert listener.read(timeout=0.5) == []  # idle again: it blocks on the promoted primary, not the dead one


@CLUSTER
@pytest.mark.usefixtures("sharded")
def test_a_listener_of_a_sharded_queue_follows_a_shard_whose_slot_moves_to_another_primary(cluster_group, engine):
    """Its blocked XREAD on the old node answers MOVED (or its stream leaves it): the slot map is read
    again and the listener blocks and reads on the new owner, with nothing lost."""
    from django_jobs.events import QueueEvents
    from tests.conftest import SHARDS
    from tests.redis_server import migrate_slot
    from tests.testapp import jobs

    listener = QueueEvents("hot", types={"waiting"})
    first = [jobs.add.using(queue_name="hot").enqueue(i, 0).id for i in range(SHARDS)]
    seen = [event.job_id for event in listener.read(timeout=5)]
    done = threading.Event()

    def follow() -> None:  # blocked on every shard's node while the slot moves
        while not done.is_set():
            seen.extend(event.job_id for event in listener.read(timeout=1))

    follower = threading.Thread(target=follow)
    follower.start()
    try:
        key = engine.keys("hot#0").events
        old_port, new_port = migrate_slot(cluster_group, key)
        assert cluster_group.slot_owner(key) == new_port != old_port
        second = [jobs.add.using(queue_name="hot").enqueue(i, 0).id for i in range(SHARDS)]
        wait_until(lambda: set(second) <= set(seen), 30, message="every shard's events after the move")
    finally:
        done.set()
        follower.join(timeout=30)
    assert sorted(seen) == sorted(first + second)  # each once
    assert listener.read(timeout=0.5) == []  # idle again, blocked on the new owner
