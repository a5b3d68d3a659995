"""Flows with real ``runworkers`` processes: two queues served by different supervisors,
a child killed mid-run, a child released by a shutdown, and 1,000 flows at once."""

from __future__ import annotations

import os
import signal

import pytest

from django_jobs import serialization
from django_jobs.correlation import correlation_id
from django_jobs.flows import Flow
from tests.redis_server import wait_until
from tests.testapp import jobs_flows as jf

pytestmark = pytest.mark.chaos


def test_the_image_upload_flow_completes_with_real_workers_on_two_queues(chaos):
    images = chaos.start("--processes=1", "--threads=2", "--queues=high,default", ready=1)
    policies = chaos.start("--processes=1", "--threads=2", "--queues=low", ready=1)
    with correlation_id("upload-1"):
        handle = Flow(jf.store.s(1), children=[jf.optimize.s(1), jf.check_policy.s(1, "nsfw"), jf.check_policy.s(1, "copyright")]).enqueue()

    assert handle.wait(timeout=20).state == "completed"  # blocks on the parent queue's events stream

    value = serialization.loads(chaos.job(handle.id)["r"])
    optimize_id, nsfw_id, copyright_id = (c.id for c in handle.children)
    assert value["children"] == {
        optimize_id: ["optimize", "completed", {"image": 1, "bytes": 999, "cid": "upload-1"}],
        nsfw_id: ["check_policy", "completed", {"policy": "nsfw", "ok": True, "cid": "upload-1"}],
        copyright_id: ["check_policy", "completed", {"policy": "copyright", "ok": True, "cid": "upload-1"}],
    }
    assert value["cid"] == "upload-1"
    # Each job ran in a worker of the supervisor that serves its queue.
    assert set(chaos.pids_of("end", "optimize:1") + chaos.pids_of("end", "store:1")) <= set(images.children())
    assert set(chaos.pids_of("end", "check:1:nsfw") + chaos.pids_of("end", "check:1:copyright")) <= set(policies.children())
    assert images.stop() == 0 and policies.stop() == 0
    chaos.check_invariants()


def test_a_child_killed_mid_run_is_recovered_and_its_parent_still_completes(chaos):
    sup = chaos.start("--processes=1", "--threads=2", "--grace=5", ready=1)
    handle = Flow(jf.gather.s("p"), children=[jf.slow_step.s("kid", 1.0), jf.value.s(5)]).enqueue()
    kid_id, other_id = (c.id for c in handle.children)
    chaos.wait_ledger("start", ["kid"])
    [victim] = chaos.pids_of("start", "kid")

    os.kill(victim, signal.SIGKILL)

    job = chaos.wait_state(handle.id, "completed", timeout=30)
    assert serialization.loads(job["r"]) == {kid_id: ["completed", "kid"], other_id: ["completed", 5]}
    kid = chaos.job(kid_id)
    assert kid["rec"] == "1" and kid["s"] == "completed"
    assert chaos.counts("start")["kid"] == 2 and chaos.counts("end")["gather:p"] == 1
    assert sup.stop() == 0
    chaos.check_invariants()


def test_a_child_released_by_a_shutdown_runs_again_and_its_parent_completes(chaos):
    sup = chaos.start("--processes=1", "--threads=2", "--grace=0.2", ready=1)
    handle = Flow(jf.gather.s("p"), children=[jf.slow_step.s("kid", 2.0)]).enqueue()
    kid_id = handle.children[0].id
    chaos.wait_ledger("start", ["kid"])

    assert sup.stop() == 0  # the grace ends before the child: it is released, back to waiting
    assert chaos.state(kid_id) == "waiting" and chaos.state(handle.id) == "waiting_children"
    chaos.check_invariants()

    chaos.start("--processes=1", "--threads=2", ready=1)
    job = chaos.wait_state(handle.id, "completed", timeout=30)
    assert serialization.loads(job["r"]) == {kid_id: ["completed", "kid"]}


def test_a_thousand_flows_of_three_children_complete_and_every_parent_sees_all_its_children(chaos, engine):
    chaos.start("--processes=2", "--threads=8", ready=2)
    high, low = jf.value.using(queue_name="high"), jf.value.using(queue_name="low")
    handles = [
        Flow(jf.gather.s(f"p{i}"), children=[jf.value.s(i), high.s(i + 1), low.s(i + 2)]).enqueue() for i in range(1000)
    ]

    wait_until(lambda: engine.counts("default")["completed"] >= 2000, 60, message="1,000 parents to complete")

    jobs = engine.get_jobs([("default", h.id) for h in handles])
    for i, (handle, job) in enumerate(zip(handles, jobs)):
        assert job["s"] == "completed", handle.id
        a, b, c = (child.id for child in handle.children)
        assert serialization.loads(job["r"]) == {a: ["completed", i], b: ["completed", i + 1], c: ["completed", i + 2]}
    assert engine.counts("default")["waiting_children"] == 0
    for sup in chaos.supervisors:
        assert sup.stop() == 0
    chaos.check_invariants()


def test_flows_running_across_a_redis_restart_all_complete_with_every_result(chaos, engine, redis_server):
    handles = [
        Flow(jf.gather.s(f"p{i}"), children=[jf.slow_step.s(f"a{i}", 0.05), jf.value.using(queue_name="low").s(i)]).enqueue()
        for i in range(100)
    ]
    sup = chaos.start("--processes=2", "--threads=4")
    chaos.wait_ready(sup, 2)
    chaos.wait_ledger("end", [f"a{i}" for i in range(10)])
    assert engine.counts("default")["waiting_children"] > 0  # the restart hits flows mid-way
    # A clean restart: redis-server writes its append-only file on SIGTERM, nothing is lost.
    redis_server.restart()

    wait_until(lambda: chaos.counts("end").keys() >= {f"gather:p{i}" for i in range(100)}, 40, message="every parent to run")
    wait_until(lambda: engine.counts("default")["completed"] == 200, 10, message="every default job completed")
    jobs = engine.get_jobs([("default", h.id) for h in handles])
    for i, (handle, job) in enumerate(zip(handles, jobs)):
        a, b = (c.id for c in handle.children)
        assert serialization.loads(job["r"]) == {a: ["completed", f"a{i}"], b: ["completed", i]}
    assert sup.stop() == 0
    chaos.check_invariants()
