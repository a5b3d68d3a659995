"""The scripts of a flow written in parts (a cluster flow over several queues), against the real
Redis: flow_enqueue_part (the first part, with the create entries), flow_deliver of kind ``c``,
flow_ack of several entries, outbox_read. On one server they run the same as on a cluster's
slots; tests/integration/test_flows_cluster.py runs the whole path on a real cluster."""

from __future__ import annotations

import json

import pytest

from django_jobs.engine.keys import QueueKeys
from django_jobs.engine.relay import FLOW_PART_GRACE_MS, PARKED
from tests.lua.conftest import QUEUE, new_job

OTHER = "high"
DAY_MS = 24 * 3600 * 1000


def group(engine, queue: str, job_id: str, parent: str = "", parent_queue: str = "", kids: str = "") -> list[str]:
    """One job's 12 arguments (flow_enqueue.lua's layout), as strings."""
    j = new_job(job_id, parent_id=parent)
    return [str(v) for v in (
        engine.keys(queue).base, j.id, j.data, 0, 0, 0, "", j.parent_id,
        engine.keys(parent_queue).base if parent_queue else "", "", 60_000, kids,
    )]


def create_entry(engine, nonce: str, index: int, args: list[str], parts: int = 3) -> tuple[str, str]:
    body = {"k": "c", "b": args[0], "fn": nonce, "i": index, "n": parts, "a": args}
    return f"c|{nonce}|{index:06d}", json.dumps(body, separators=(",", ":"))


@pytest.fixture
def flow(engine):
    """A root ``p`` (default) with children ``c`` (high) and ``d`` (default, depth 1: its own part)."""
    kids = json.dumps([[engine.keys(OTHER).base, "c", OTHER, "t"], [engine.keys(QUEUE).base, "d", QUEUE, "t"]])
    root = group(engine, QUEUE, "p", kids=kids)
    parts = [group(engine, OTHER, "c", "p", QUEUE), group(engine, QUEUE, "d", "p", QUEUE)]
    creates = [create_entry(engine, "n1", i, args) for i, args in enumerate(parts, 1)]
    return root, parts, creates


def first_part(engine, root, creates, nonce: str = "n1") -> list[int]:
    args: list = [engine.maxlen, 0, nonce, FLOW_PART_GRACE_MS, len(creates)]
    for member, body in creates:
        args += [member, body]
    return [int(v) for v in engine._run("flow_enqueue_part", (engine.keys(QUEUE).meta,), args + root)]


def test_the_first_part_writes_the_root_and_records_each_other_part_due_after_the_grace(engine, r, k, flow):
    root, _parts, creates = flow
    code, e, *seqs = first_part(engine, root, creates)

    assert code == 1 and len(seqs) == 2 and seqs[1] == seqs[0] + 1  # top down
    assert r.hget(k.job("p"), "s") == "waiting_children" and r.hget(k.job("p"), "fn") == "n1"
    assert not r.exists(k.job("d")) and not r.exists(engine.keys(OTHER).job("c"))
    for (member, body), seq in zip(creates, seqs, strict=True):
        stored = r.hget(k.outbox, member)
        assert stored.startswith(f'{{"seq":{seq},"e":{e},') and json.loads(stored) == {**json.loads(body), "seq": seq, "e": e}
        assert r.zscore(k.outbox_parts, member) == e + FLOW_PART_GRACE_MS
    assert r.zcard(k.outbox_due) == 0  # the steps' due set is not theirs: older relays never read them

    # A replay (its reply lost): nothing written again, the same seqs.
    assert first_part(engine, root, creates) == [1, e, *seqs]
    assert int(r.get(k.base + "outbox_seq")) == seqs[1]
    # Another flow with the root's id: refused, nothing recorded.
    assert first_part(engine, root, [create_entry(engine, "n2", 1, flow[1][0])], nonce="n2") == [0, e]
    assert r.hlen(k.outbox) == 2


def test_a_create_entry_writes_its_part_once_and_marks_it(engine, r, k, flow):
    root, _parts, creates = flow
    _code, e, seq, _ = first_part(engine, root, creates)
    entry = r.hget(k.outbox, creates[0][0])
    target = engine.keys(OTHER).job("c")
    mark = engine.keys(OTHER).flow_part_mark("n1", 1)

    assert engine._run("flow_deliver", (target,), (engine.maxlen, entry)) == [1, e]
    job = r.hgetall(target)
    assert (job["s"], job["e"], job["xs"], job["fn"], job["par"]) == ("waiting", str(e), "1", "n1", "p")
    assert 6 * DAY_MS < r.pttl(mark) <= 7 * DAY_MS

    assert engine._run("flow_deliver", (target,), (engine.maxlen, entry)) == [1, e]  # marked: nothing written
    r.delete(mark)
    assert engine._run("flow_deliver", (target,), (engine.maxlen, entry)) == [1, e]  # its job has the nonce: skipped
    ok = engine._run("flow_ack", (k.outbox, k.outbox_parts), (creates[0][0], seq))
    assert ok == 1 and r.zcard(k.outbox_parts) == 1
    assert [fields["e"] for _id, fields in r.xrange(engine.keys(OTHER).events)] == ["waiting"]  # written once


def test_a_create_entry_whose_job_exists_with_another_nonce_writes_nothing(engine, r, k, flow):
    root, _parts, creates = flow
    first_part(engine, root, creates)
    engine.enqueue(QUEUE, [new_job("d")])  # a plain job took the id of the second part's job
    stored_e = int(r.hget(k.job("d"), "e"))

    assert engine._run("flow_deliver", (k.job("d"),), (engine.maxlen, r.hget(k.outbox, creates[1][0]))) == [0, stored_e]
    assert r.hget(k.job("d"), "fn") is None and not r.exists(k.flow_part_mark("n1", 2))


def test_flow_ack_removes_several_entries_each_only_with_its_seq(engine, r, k, flow):
    root, _parts, creates = flow
    _code, _e, s1, s2 = first_part(engine, root, creates)
    (m1, _), (m2, _) = creates

    assert engine._run("flow_ack", (k.outbox, k.outbox_parts), (m1, s1, m2, s2 + 1)) == 1
    assert r.hexists(k.outbox, m2) and r.zscore(k.outbox_parts, m2) is not None and not r.hexists(k.outbox, m1)
    assert engine._run("flow_ack", (k.outbox, k.outbox_parts), (m1, s1, m2, s2)) == 1  # m1 gone already: a replay
    assert r.hlen(k.outbox) == 0 and r.zcard(k.outbox_parts) == 0


def test_outbox_read_gives_steps_at_once_and_create_entries_after_the_grace(engine, r, k, flow):
    root, _parts, creates = flow
    _code, e, *_seqs = first_part(engine, root, creates)
    r.hset(k.outbox, "d|x|y", json.dumps({"k": "d", "b": "other", "par": "x", "id": "y", "s": "completed", "seq": 99}))
    r.zadd(k.outbox_due, {"d|x|y": e})
    keys = (k.outbox, k.outbox_due, k.outbox_parts)

    def read(now_ms: int) -> list[str]:
        raw = engine._run("outbox_read", keys, (100, PARKED, now_ms))
        return raw[::2]

    assert read(0) == ["d|x|y"]  # Redis' clock: within the grace
    assert read(e + FLOW_PART_GRACE_MS) == ["d|x|y", creates[0][0], creates[1][0]]
    r.zadd(k.outbox_parts, {creates[1][0]: PARKED})
    assert read(2**60) == ["d|x|y", creates[0][0]]  # a parked entry is never read
    assert QueueKeys.build(engine.prefix, QUEUE).outbox_parts == k.outbox_parts
