"""Flows end to end with the in-process worker: the image-upload flow, nesting, policies, sugar."""

from __future__ import annotations

import pytest

from django_jobs.correlation import correlation_id
from django_jobs.flows import Flow, chain, chord, flow_tree
from tests.chaos.invariants import assert_invariants
from tests.testapp import jobs_flows as jf

QUEUES = ("default", "high", "low")


def state(result) -> str:
    result.refresh()
    return result.state


def test_the_image_upload_flow_runs_children_on_two_queues_then_the_parent_with_their_results(engine, work):
    with correlation_id("upload-42"):
        flow = Flow(jf.store.s(42), children=[jf.optimize.s(42), jf.check_policy.s(42, "nsfw"), jf.check_policy.s(42, "copyright")])
        handle = flow.enqueue()
    parent = handle.result
    assert parent.state == "waiting_children" and state(parent) == "waiting_children"
    assert engine.get_job("default", parent.id)["s"] == "waiting_children"
    assert [c.result.queue for c in handle.children] == ["high", "low", "low"]
    assert engine.counts("high")["waiting"] == 1 and engine.counts("low")["waiting"] == 2

    work()

    assert state(parent) == "completed"
    value = parent.return_value
    ids = [c.id for c in handle.children]
    assert value["cid"] == "upload-42"
    assert value["children"] == {
        ids[0]: ["optimize", "completed", {"image": 42, "bytes": 958, "cid": "upload-42"}],
        ids[1]: ["check_policy", "completed", {"policy": "nsfw", "ok": True, "cid": "upload-42"}],
        ids[2]: ["check_policy", "completed", {"policy": "copyright", "ok": True, "cid": "upload-42"}],
    }
    for child in handle.children:
        assert child.result.parent_id == parent.id
    assert_invariants(engine.client, engine.prefix, QUEUES)
