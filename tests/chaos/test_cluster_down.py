"""A Redis Cluster that answers CLUSTERDOWN: calls wait it out instead of failing.

While a primary is marked failed and no replica has taken its slots over, every node of a cluster
with full coverage (Redis' default) refuses every key, also the keys of healthy slots. A job that
reads its flow's results, an enqueue from a view, a worker's fetch: each call meets that window
during a failover (about a second after ``cluster-node-timeout``, longer on a loaded host).
redis-py's own retries give up after about two seconds; the engine waits up to
``FAILOVER_PATIENCE`` (engine/cluster.py). Here the window is made long and deterministic: a
primary without a replica is frozen with SIGSTOP until every node says ``cluster_state:fail``,
and resumed a second later; Redis clears its FAIL flag only after twice the node timeout.
"""

from __future__ import annotations

import os
import signal
import threading
import time

import pytest
import redis

from tests.redis_server import wait_until
from tests.testapp import jobs

pytestmark = [pytest.mark.chaos, pytest.mark.parametrize("topology", ["cluster-lone"], indirect=True)]


def cluster_state(group, node) -> str:
    try:
        with group.node_client(node) as c:
            return str(c.cluster("info").get("cluster_state"))
    except redis.RedisError:
        return "unreachable"


def start_call(outcomes: dict[str, object], name: str, call) -> threading.Thread:
    """Run ``call()`` in a new thread; what it returns, or raises, lands in ``outcomes[name]``."""

    def run() -> None:
        try:
            outcomes[name] = call()
        except Exception as exc:  # noqa: BLE001 - the test reports what the call raised
            outcomes[name] = exc

    thread = threading.Thread(target=run)
    thread.start()
    return thread


def test_reads_and_enqueues_wait_out_a_cluster_that_answers_clusterdown(engine, cluster_group_lone):
    group = cluster_group_lone
    first = jobs.add.enqueue(1, 2)
    owner = group.slot_owner(engine.keys("default").wait)
    frozen = next(n for n in group.nodes if n.port != owner)
    serving = next(n for n in group.nodes if n.port == owner)
    assert frozen.proc is not None
    outcomes: dict[str, object] = {}
    os.kill(frozen.proc.pid, signal.SIGSTOP)
    try:
        # The queue's own primary is healthy, and refuses its keys all the same.
        wait_until(lambda: cluster_state(group, serving) == "fail", 30, 0.05, message="the cluster to say cluster_state:fail")
        with group.node_client(serving) as c, pytest.raises(redis.exceptions.ClusterDownError):
            c.hgetall(engine.keys("default").job(first.id))
        callers = [start_call(outcomes, "read", lambda: engine.get_job("default", first.id)),
                   start_call(outcomes, "enqueue", lambda: jobs.add.enqueue(3, 4))]
        time.sleep(1.0)
        assert not outcomes, f"a call ended while the cluster refused every key: {outcomes}"
    finally:
        os.kill(frozen.proc.pid, signal.SIGCONT)
    for caller in callers:
        caller.join(timeout=30)
    assert cluster_state(group, serving) == "ok"
    read_back, enqueued = outcomes["read"], outcomes["enqueue"]
    assert isinstance(read_back, dict) and read_back["s"] == "waiting", read_back
    assert not isinstance(enqueued, Exception), repr(enqueued)
    assert engine.get_job("default", enqueued.id)["s"] == "waiting"
    group.wait_ok()


def test_a_call_to_a_primary_that_died_waits_for_it_while_the_other_nodes_answer(engine, cluster_group_lone):
    """SIGKILL the primary of the queue's own slot (no replica takes over): calls on its slot wait
    (redis-py's retries alone give up after about two seconds) and succeed once it is back."""
    group = cluster_group_lone
    first = jobs.add.enqueue(1, 2)
    time.sleep(1.5)  # appendfsync everysec: the job is on disk when its primary is killed
    owner = group.slot_owner(engine.keys("default").wait)
    dead = next(n for n in group.nodes if n.port == owner)
    outcomes: dict[str, object] = {}
    dead.stop(signal.SIGKILL)
    try:
        caller = start_call(outcomes, "read", lambda: engine.get_job("default", first.id))
        time.sleep(3.0)
        assert not outcomes, f"the call ended while its primary was down: {outcomes}"
    finally:
        group.heal()  # the node restarts from its files and serves its slots again
    caller.join(timeout=30)
    read_back = outcomes["read"]
    assert isinstance(read_back, dict) and read_back["s"] == "waiting", read_back
