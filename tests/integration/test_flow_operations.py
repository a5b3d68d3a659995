"""Operators acting on flows: the admin's bulk actions and ``manage.py jobs`` apply one rule.

Regression tests of issue 13: a bulk cancel (``Engine.cancel_many``: the admin's *Cancel*,
``limits.cancel_jobs``, ``jobs cancel --queue``) did not do the flow bookkeeping, and a bulk
retry re-ran a flow parent that had failed because a child failed, erasing its ``ChildFailed``
record. The retry rule (docs/flows.md#retrying): a parent that failed through a child is only
retried together with that child, and then waits for its children again; retrying the failed
child alone re-opens the parent; errors of earlier runs are kept.
"""

from __future__ import annotations

import json

import pytest
from django.core.management import CommandError

from django_jobs.engine.protocol import RetryCode
from django_jobs.flows import Flow
from django_jobs.mirror import mirror_once
from django_jobs.testing import work_until_empty
from tests.chaos.invariants import assert_invariants
from tests.conftest import read_ledger
from tests.integration.test_admin import act, messages_of
from tests.integration.test_jobs_command import jobs, jobs_json
from tests.testapp import jobs_flows as jf
from tests.testapp.jobs import flaky

pytestmark = [pytest.mark.db, pytest.mark.django_db]

QUEUES = ("default", "high", "low")


def job(engine, job_id: str) -> dict[str, str]:
    return engine.get_job("default", job_id)


def sets_of(engine, job_id: str) -> list[str]:
    k = engine.keys("default")
    return [name for name in k.STATE_SETS if engine.client.zscore(getattr(k, name), job_id) is not None]


def waiting_flow():
    """A parent waiting for two waiting children, all on ``default``."""
    return Flow(jf.gather.s("p"), children=[jf.value.s(1), jf.value.s(2)]).enqueue()


def failed_flow(tag: str):
    """A parent failed through its child ``flaky`` (which fails once, then succeeds); its other
    child, scheduled for later, was cancelled with it. Returns (handle, failing child, sibling)."""
    handle = Flow(jf.gather.s("p"), children=[flaky.using(attempts=1).s(tag, 1), jf.value.using(delay=600).s(5)]).enqueue()
    work_until_empty(QUEUES)
    failing, sibling = handle.children
    return handle, failing, sibling


def assert_failed_through_child(engine, handle, failing, sibling) -> None:
    parent = job(engine, handle.id)
    assert (parent["s"], parent["why"]) == ("failed", "child_failed")
    assert [e["exception_class_path"] for e in json.loads(parent["err"])] == ["django_jobs.exceptions.ChildFailed"]
    assert job(engine, failing.id)["s"] == "failed"
    assert (job(engine, sibling.id)["s"], job(engine, sibling.id)["why"]) == ("cancelled", "parent_ended")


def assert_reopened_then_completes(engine, handle, failing, sibling, ledger_path) -> None:
    parent = job(engine, handle.id)
    assert (parent["s"], parent["pend"], sets_of(engine, handle.id)) == ("waiting_children", "2", ["waiting_children"])
    assert "err" not in parent and "why" not in parent
    # The ChildFailed record of the earlier run is kept in the history, not erased.
    assert [e["exception_class_path"] for e in json.loads(parent["eh"])] == ["django_jobs.exceptions.ChildFailed"]
    assert job(engine, failing.id)["s"] == job(engine, sibling.id)["s"] == "waiting"
    assert_invariants(engine.client, engine.prefix, QUEUES)
    work_until_empty(QUEUES)
    assert job(engine, handle.id)["s"] == "completed"
    assert json.loads(job(engine, handle.id)["r"]) == {failing.id: ["completed", "ok after 2"], sibling.id: ["completed", 5]}
    assert [row[2] for row in read_ledger(ledger_path) if row[0] == "end"].count("gather:p") == 1  # ran once, last
    assert_invariants(engine.client, engine.prefix, QUEUES)


# -- bug 1: a bulk cancel of a flow parent ------------------------------------------------------


def test_the_admin_cancel_of_a_flow_parent_cancels_its_children(admin_client, engine):
    handle = waiting_flow()
    mirror_once()

    response = act(admin_client, "cancel_jobs", [handle.id])

    assert messages_of(response) == ["Cancelled 1 job."]
    assert job(engine, handle.id)["s"] == "cancelled" and sets_of(engine, handle.id) == ["cancelled"]
    for child in handle.children:
        assert (job(engine, child.id)["s"], job(engine, child.id)["why"]) == ("cancelled", "parent_ended")
    assert_invariants(engine.client, engine.prefix, QUEUES)
    assert work_until_empty(QUEUES) == 0  # nothing of the flow runs


def test_jobs_cancel_by_queue_of_flow_children_fails_their_parent_instead_of_leaving_it_waiting(engine):
    handle = waiting_flow()

    counts = jobs_json("cancel", "--queue", "default", "--state", "waiting", "--yes")

    # The first child's cancel fails the parent (default policy), which cancels the second.
    assert counts == {"queue": "default", "cancelled": 1, "requested": 0, "finished": 1}
    assert (job(engine, handle.id)["s"], job(engine, handle.id)["why"]) == ("failed", "child_failed")
    assert sets_of(engine, handle.id) == ["failed"]
    assert_invariants(engine.client, engine.prefix, QUEUES)


# -- bug 2: a bulk retry of a parent that failed through a child --------------------------------


def test_the_admin_retry_skips_a_parent_failed_through_a_child_unless_the_child_is_retried_with_it(admin_client, engine, ledger_path):
    handle, failing, sibling = failed_flow("admin")
    mirror_once()

    response = act(admin_client, "retry_jobs", [handle.id])
    assert messages_of(response) == [
        "Retried 0 jobs. Skipped 1: 1 flow parents that failed through a child not retried with them (retry the child)."
    ]
    assert_failed_through_child(engine, handle, failing, sibling)  # untouched, its record kept

    response = act(admin_client, "retry_jobs", [handle.id, failing.id])
    assert messages_of(response) == ["Retried 2 jobs."]
    assert_reopened_then_completes(engine, handle, failing, sibling, ledger_path)


def test_jobs_retry_failed_retries_a_parent_with_its_failed_child_and_it_runs_last(engine, ledger_path):
    handle, failing, sibling = failed_flow("cli")

    with pytest.raises(CommandError, match="is a flow parent that failed because a child failed; retry that child"):
        jobs("retry", handle.id)
    assert_failed_through_child(engine, handle, failing, sibling)

    assert jobs_json("retry", "--failed", "default", "--yes") == {"queue": "default", "retried": 2}
    assert_reopened_then_completes(engine, handle, failing, sibling, ledger_path)


def test_jobs_retry_of_the_failed_child_alone_reopens_its_parent(engine, ledger_path):
    handle, failing, sibling = failed_flow("child")

    out, _ = jobs("retry", failing.id)

    assert f"Job {failing.id} is waiting again in 'default'." in out
    assert_reopened_then_completes(engine, handle, failing, sibling, ledger_path)


def test_the_retry_rule_in_one_engine_call_whatever_the_order_of_the_ids(engine):
    handle, failing, _ = failed_flow("order")
    assert engine.retry_many("default", [handle.id]) == [RetryCode.CHILD_FAILED]
    assert engine.retry_many("default", [handle.id, failing.id]) == [RetryCode.RETRIED, RetryCode.RETRIED]
    assert engine.retry_many("default", [handle.id, failing.id]) == [RetryCode.NOT_RETRYABLE] * 2  # a replay

    handle, failing, _ = failed_flow("reversed")
    assert engine.retry_many("default", [failing.id, handle.id]) == [RetryCode.RETRIED, RetryCode.RETRIED]
    assert job(engine, handle.id)["s"] == "waiting_children"
    assert_invariants(engine.client, engine.prefix, QUEUES)


# -- the same rule for a flow over several queues (on a Redis Cluster: through the outbox) ------


def failed_flow_over_queues(tag: str):
    """As :func:`failed_flow`, with the failing child on ``high`` and its sibling on ``low``."""
    handle = Flow(
        jf.gather.s("p"),
        children=[flaky.using(queue_name="high", attempts=1).s(tag, 1), jf.value.using(queue_name="low", delay=600).s(5)],
    ).enqueue()
    work_until_empty(QUEUES)
    failing, sibling = handle.children
    assert (job(engine_of(), handle.id)["s"], job(engine_of(), handle.id)["why"]) == ("failed", "child_failed")
    return handle, failing, sibling


def engine_of():
    from django_jobs.engine import get_engine

    return get_engine()


def assert_over_queues_reopened_then_completes(engine, handle, failing, sibling, ledger_path) -> None:
    parent = job(engine, handle.id)
    assert (parent["s"], parent["pend"]) == ("waiting_children", "2")
    assert [e["exception_class_path"] for e in json.loads(parent["eh"])] == ["django_jobs.exceptions.ChildFailed"]
    assert engine.get_job("high", failing.id)["s"] == engine.get_job("low", sibling.id)["s"] == "waiting"
    assert sum(engine.outbox_size(q) for q in QUEUES) == 0  # the retry relayed its steps at once
    assert_invariants(engine.client, engine.prefix, QUEUES)
    work_until_empty(QUEUES)
    assert json.loads(job(engine, handle.id)["r"]) == {failing.id: ["completed", "ok after 2"], sibling.id: ["completed", 5]}
    assert [row[2] for row in read_ledger(ledger_path) if row[0] == "end"].count("gather:p") == 1
    assert_invariants(engine.client, engine.prefix, QUEUES)


@pytest.mark.parametrize("topology", ["server", "cluster"], indirect=True)
def test_the_admin_retry_of_a_flow_over_several_queues_re_opens_the_parent_through_its_child(admin_client, engine, ledger_path, topology):
    handle, failing, sibling = failed_flow_over_queues("admin-x")
    mirror_once()

    response = act(admin_client, "retry_jobs", [handle.id])
    assert messages_of(response) == [
        "Retried 0 jobs. Skipped 1: 1 flow parents that failed through a child not retried with them (retry the child)."
    ]
    assert job(engine, handle.id)["s"] == "failed"

    response = act(admin_client, "retry_jobs", [failing.id])
    assert messages_of(response) == ["Retried 1 job."]
    assert_over_queues_reopened_then_completes(engine, handle, failing, sibling, ledger_path)


@pytest.mark.parametrize("topology", ["server", "cluster"], indirect=True)
def test_jobs_retry_of_a_flow_over_several_queues_re_opens_the_parent_through_its_child(engine, ledger_path, topology):
    handle, failing, sibling = failed_flow_over_queues("cli-x")

    with pytest.raises(CommandError, match="is a flow parent that failed because a child failed; retry that child"):
        jobs("retry", handle.id)
    out, _ = jobs("retry", failing.id)

    assert f"Job {failing.id} is waiting again in 'high'." in out
    assert_over_queues_reopened_then_completes(engine, handle, failing, sibling, ledger_path)
