"""Flows end to end with the in-process worker: the image-upload flow, nesting, policies, sugar."""

from __future__ import annotations

import json

import pytest

from django_jobs.correlation import correlation_id
from django_jobs.flows import Flow, chain, chord, flow_tree
from tests.chaos.invariants import assert_invariants
from tests.testapp import jobs_flows as jf

# Every test also runs against a real Redis Cluster (tests/conftest.py).
pytestmark = pytest.mark.parametrize("topology", ["server", "cluster"], indirect=True)

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


def test_nested_flows_run_bottom_up_and_each_parent_sees_only_its_own_children(engine, work):
    inner = Flow(jf.gather.s("inner"), children=[jf.value.s(1), jf.value.s(2)])
    outer = Flow(jf.gather.s("outer"), children=[inner, jf.value.s(3)])
    handle = outer.enqueue()
    inner_handle = handle.children[0]
    assert handle.result.state == inner_handle.result.state == "waiting_children"

    work()

    assert state(handle.result) == "completed"
    a, b = (c.id for c in inner_handle.children)
    inner_value = {a: ["completed", 1], b: ["completed", 2]}
    assert state(inner_handle.result) == "completed" and inner_handle.result.return_value == inner_value
    assert handle.result.return_value == {inner_handle.id: ["completed", inner_value], handle.children[1].id: ["completed", 3]}
    assert_invariants(engine.client, engine.prefix, QUEUES)


def test_a_failed_child_fails_its_parent_by_default_after_its_retries_and_cancels_the_other_children(engine, work, ledger_path):
    from tests.conftest import read_ledger

    slow = jf.value.using(delay=60).s(5)  # still scheduled when its sibling fails
    handle = Flow(jf.gather.s("p"), children=[jf.broken.s("b"), slow]).enqueue()

    work(["default", "high", "low"])

    parent, (failing, waiting) = handle.result, handle.children
    assert state(failing.result) == "failed" and len(failing.result.errors) == 2  # both attempts ran first
    assert state(parent) == "failed" and parent.failure_reason == "child_failed"
    assert parent.errors[-1].exception_class_path == "django_jobs.exceptions.ChildFailed"
    assert state(waiting.result) == "cancelled" and waiting.result.failure_reason == "parent_ended"
    runs = [row[2] for row in read_ledger(ledger_path)]
    # The parent never ran. (Its child ran twice; a third run happens only if a starved test
    # process let a 2 s lease expire: at least once, by design.)
    assert set(runs) == {"broken:b"} and len(runs) >= 2
    assert_invariants(engine.client, engine.prefix, QUEUES)


def test_an_ignored_failure_lets_the_parent_run_and_see_which_child_failed(engine, work):
    handle = Flow(jf.gather.s("p"), children=[jf.broken.s("b").on_failure("ignore"), jf.value.s(7)]).enqueue()

    work()

    assert state(handle.result) == "completed"
    failing, ok = handle.children
    assert handle.result.return_value == {failing.id: ["failed", None], ok.id: ["completed", 7]}
    assert_invariants(engine.client, engine.prefix, QUEUES)


def test_a_removed_dependency_lets_the_parent_run_as_if_the_child_did_not_exist(engine, work):
    handle = Flow(jf.gather.s("p"), children=[jf.broken.s("b").on_failure("remove"), jf.value.s(7)]).enqueue()

    work()

    assert state(handle.result) == "completed"
    assert handle.result.return_value == {handle.children[1].id: ["completed", 7]}
    assert state(handle.children[0].result) == "failed"


def test_cancelling_a_parent_cancels_its_pending_children_all_the_way_down(engine, work, ledger_path):
    from tests.conftest import read_ledger

    inner = Flow(jf.gather.s("inner"), children=[jf.value.s(1)])
    handle = Flow(jf.gather.s("outer"), children=[inner, jf.optimize.s(2)]).enqueue()

    assert handle.result.cancel() == "cancelled"

    every = [handle.result, inner_result := handle.children[0].result, handle.children[0].children[0].result, handle.children[1].result]
    assert [state(r) for r in every] == ["cancelled"] * 4
    assert [r.failure_reason for r in every[1:]] == ["parent_ended"] * 3
    assert inner_result.parent_id == handle.id
    assert engine.counts("default")["waiting_children"] == 0
    assert work() == 0 and read_ledger(ledger_path) == []
    assert_invariants(engine.client, engine.prefix, QUEUES)


def test_deleting_a_parent_cancels_its_pending_children_and_an_unfinished_child_is_not_deleted(engine, work, ledger_path):
    from tests.conftest import read_ledger

    inner = Flow(jf.gather.s("inner"), children=[jf.value.s(1)])
    handle = Flow(jf.gather.s("outer"), children=[inner, jf.optimize.s(2)]).enqueue()
    child = handle.children[1].result

    assert engine.delete_jobs(child.queue, [child.id]) == [0], "its parent waits for it: cancel it instead"
    assert engine.delete_jobs("default", [handle.id]) == [1]

    assert engine.get_job("default", handle.id) is None
    descendants = [handle.children[0].result, handle.children[0].children[0].result, child]
    assert [state(r) for r in descendants] == ["cancelled"] * 3
    assert [r.failure_reason for r in descendants] == ["parent_ended"] * 3
    assert engine.counts("default")["waiting_children"] == 0
    assert work() == 0 and read_ledger(ledger_path) == []
    assert_invariants(engine.client, engine.prefix, QUEUES)


def test_cancelling_a_child_applies_its_failure_policy_to_the_parent(engine, work):
    failing = Flow(jf.gather.s("a"), children=[jf.value.s(1), jf.value.s(2)]).enqueue()
    ignoring = Flow(jf.gather.s("b"), children=[jf.value.s(1).on_failure("ignore"), jf.value.s(2)]).enqueue()

    assert failing.children[0].result.cancel() == "cancelled"
    assert ignoring.children[0].result.cancel() == "cancelled"
    assert state(failing.result) == "failed" and failing.result.failure_reason == "child_failed"
    assert state(failing.children[1].result) == "cancelled"  # its sibling is not needed any more

    work()

    assert state(ignoring.result) == "completed"
    first, second = (c.id for c in ignoring.children)
    assert ignoring.result.return_value == {first: ["cancelled", None], second: ["completed", 2]}
    assert_invariants(engine.client, engine.prefix, QUEUES)


def test_a_flow_object_used_twice_becomes_two_jobs(engine, work):
    twice = Flow(jf.gather.s("inner"), children=[jf.value.s(1)])
    handle = Flow(jf.gather.s("outer"), children=[twice, twice]).enqueue()
    first, second = handle.children
    assert first.id != second.id and first.children[0].id != second.children[0].id

    work()

    inner = {first.children[0].id: ["completed", 1]}, {second.children[0].id: ["completed", 1]}
    assert state(handle.result) == "completed"
    assert handle.result.return_value == {first.id: ["completed", inner[0]], second.id: ["completed", inner[1]]}


def test_a_flow_over_the_job_limit_is_refused(engine, monkeypatch):
    from django_jobs import flows
    from django_jobs.exceptions import InvalidJob

    monkeypatch.setattr(flows, "MAX_FLOW_JOBS", 3)
    with pytest.raises(InvalidJob, match="at most 3 jobs"):
        Flow(jf.gather.s("p"), children=[jf.value.s(i) for i in range(3)]).enqueue()
    assert engine.client.keys(engine.prefix + ":*") == []


def test_a_chain_passes_each_result_to_the_next_step(engine, work):
    flow = chain(jf.value.s(1), jf.add.s(10), jf.add.s(100))
    handle = flow.enqueue()
    assert handle.result.task.name == jf.add.name and handle.children[0].children[0].result.state == "waiting"

    work()

    assert state(handle.result) == "completed" and handle.result.return_value == 111
    assert state(handle.children[0].result) == "completed" and handle.children[0].result.return_value == 11


def test_a_failing_chain_step_stops_the_chain(engine, work):
    handle = chain(jf.broken.s("x"), jf.add.s(10)).enqueue()
    work()
    assert state(handle.result) == "failed" and handle.result.failure_reason == "child_failed"


def test_a_chord_calls_back_with_the_group_results_in_order(engine, work):
    handle = chord([jf.value.s(1), jf.value.s(2), jf.value.s(39)], jf.total.s()).enqueue()
    work()
    assert state(handle.result) == "completed" and handle.result.return_value == 42


def test_a_flow_can_be_enqueued_from_async_code_with_the_callers_correlation_id(engine, work):
    import asyncio

    async def create():
        with correlation_id("async-1"):
            return await Flow(jf.gather.s("a"), children=[jf.value.s(4)]).aenqueue()

    handle = asyncio.run(create())
    assert handle.result.state == "waiting_children" and handle.result.correlation_id == "async-1"
    work()
    assert state(handle.result) == "completed"
    assert handle.result.return_value == {handle.children[0].id: ["completed", 4]}


def test_the_correlation_id_of_the_creator_reaches_every_job_of_a_nested_flow(engine, work):
    with correlation_id("req-7"):
        handle = Flow(jf.store.s(1), children=[Flow(jf.store.s(2), children=[jf.optimize.s(3)])]).enqueue()
    work()
    outer, inner, leaf = handle.result, handle.children[0].result, handle.children[0].children[0].result
    assert [state(r) for r in (outer, inner, leaf)] == ["completed"] * 3
    assert outer.return_value["cid"] == inner.return_value["cid"] == leaf.return_value["cid"] == "req-7"
    assert {r.correlation_id for r in (outer, inner, leaf)} == {"req-7"}


def test_flow_tree_shows_the_whole_tree_with_states_from_any_of_its_jobs(engine, work):
    handle = Flow(jf.gather.s("p"), children=[Flow(jf.gather.s("q"), children=[jf.value.s(1)]), jf.broken.s("b").on_failure("ignore")]).enqueue()
    leaf_id = handle.children[0].children[0].id

    tree = flow_tree(leaf_id)
    assert tree is not None and tree.id == handle.id and tree.state == "waiting_children"
    assert [(c.name.rsplit(".", 1)[-1], c.state, c.failure) for c in tree.children] == [
        ("gather", "waiting_children", "fail"), ("broken", "waiting", "ignore"),
    ]
    assert [(c.id, c.state) for c in tree.children[0].children] == [(leaf_id, "waiting")]
    text = "\n".join(tree.lines(mark=leaf_id))
    assert f"{leaf_id} [default] waiting  <-" in text and "on_failure=ignore" in text

    work()
    tree = flow_tree(handle.id)
    assert tree is not None and tree.state == "completed"
    assert [c.state for c in tree.children] == ["completed", "failed"]
    assert flow_tree("0" * 32) is None


def test_jobs_show_prints_the_flow_tree_of_a_job(engine):
    from io import StringIO

    from django.core.management import call_command

    handle = Flow(jf.gather.s("p"), children=[jf.value.s(1)]).enqueue()
    child_id = handle.children[0].id
    out = StringIO()
    call_command("jobs", "show", child_id, stdout=out)
    text = out.getvalue()
    assert "flow:" in text
    assert f"tests.testapp.jobs_flows.gather {handle.id} [default] waiting_children" in text
    assert f"└─ tests.testapp.jobs_flows.value {child_id} [default] waiting  <-" in text

    out = StringIO()
    call_command("jobs", "show", child_id, "--json", stdout=out)
    flow = json.loads(out.getvalue())["flow"]
    assert (flow["id"], flow["state"]) == (handle.id, "waiting_children")
    assert [(c["id"], c["state"], c["failure"], c["children"]) for c in flow["children"]] == [(child_id, "waiting", "fail", [])]

    out = StringIO()
    call_command("jobs", "list", "default", "--state", "waiting_children", "--json", stdout=out)
    listed = json.loads(out.getvalue())
    assert (listed["total"], [j["id"] for j in listed["jobs"]]) == (1, [handle.id])
    out = StringIO()
    call_command("jobs", "stats", "default", "--json", stdout=out)
    assert json.loads(out.getvalue())["default"]["waiting_children"] == 1

    out = StringIO()
    call_command("jobs", "show", jf.value.enqueue(1).id, stdout=out)
    assert "flow:" not in out.getvalue()  # a job outside flows shows no tree


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: Flow(jf.gather.s(), children=[jf.value.s(1)]), "do not fit"),
        (lambda: Flow(jf.gather.s("p"), children=[jf.value.s(object())]), "not JSON serializable"),
        (lambda: Flow(jf.gather.using(delay=5).s("p"), children=[jf.value.s(1)]), "cannot also have a delay"),
        (lambda: chain(jf.value.s(1), jf.add.s()), "do not fit"),
        (lambda: Flow(jf.gather.s("p"), children=[jf.value.s(1).on_failure("maybe")]), "policy must be one of"),
        (lambda: Flow(jf.gather.s("p"), children=[print]), "job signature"),
        (lambda: chord([], jf.total.s()), "at least one"),
    ],
)
def test_a_bad_flow_fails_in_the_caller_and_writes_nothing(engine, build, message):
    from django_jobs.exceptions import InvalidJob

    with pytest.raises((InvalidJob, TypeError), match=message):
        build().enqueue()
    assert engine.client.keys(engine.prefix + ":*") == []


def test_a_flow_is_created_all_or_nothing_when_one_of_its_ids_exists(engine):
    from dataclasses import replace

    from django_jobs.engine.queue import FlowJob, NewJob

    existing = jf.optimize.enqueue(1)  # on queue high
    rows = [
        FlowJob(queue="default", job=NewJob(id="p1", data='{"v":1,"n":"x","a":[],"k":{}}'), children=(("high", "c1", "x"),)),
        FlowJob(queue="high", job=NewJob(id="c1", data='{"v":1,"n":"x","a":[],"k":{}}'), parent_queue="default"),
    ]
    assert engine.enqueue_flow(rows) == 1
    assert engine.enqueue_flow(rows) == 0  # a replay writes nothing
    clash = [replace(rows[0], job=replace(rows[0].job, id="p2")), replace(rows[1], job=replace(rows[1].job, id=existing.id))]
    assert engine.enqueue_flow(clash) == 0
    assert engine.get_job("default", "p2") is None
    assert engine.counts("default")["waiting_children"] == 1 and engine.counts("high")["waiting"] == 2


def test_a_flows_results_carry_the_enqueued_at_and_run_after_that_get_result_reads_back():
    """Every job of a flow holds Redis' time of the one script call; the returned results say the same."""
    from datetime import UTC, datetime, timedelta

    from django_jobs.compat import default_task_backend

    later = datetime.now(UTC) + timedelta(hours=2, microseconds=11)
    handles = [
        Flow(jf.gather.s(f"f{n}"), children=[jf.value.s(n), jf.value.using(run_after=later).s(n + 1), chain(jf.value.s(n), jf.add.s(1))])
        .enqueue()
        for n in range(60)
    ]

    def walk(node):
        yield node.result
        for child in node.children:
            yield from walk(child)

    results = [result for handle in handles for result in walk(handle)]
    assert len(results) == 60 * 5
    for r in results:
        fresh = default_task_backend.get_result(r.id)
        assert r.enqueued_at is not None and (r.enqueued_at, r.task.run_after) == (fresh.enqueued_at, fresh.task.run_after), r.id
    assert any(r.task.run_after == later for r in results)
