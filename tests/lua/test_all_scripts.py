"""Every script, single and bulk, on every kind of job, with the invariants checked after each step.

The test that would have caught issue 13's bugs (a bulk cancel without the flow bookkeeping, a
bulk retry re-running a parent that failed through a child). Each case builds one small world
around a *subject* job of one kind (plain, flow parent, flow child, a flow parent that is itself
a child, the same three in a flow over two slots whose steps go through the outbox and the relay
as on a Redis Cluster, unique-key holder, per-key-limited), runs a scenario (a list of steps, each one script
call: enqueue, guarded enqueue, flow enqueue, fetch, settle with each outcome, renew, recover,
release, cancel, cancel_many, retry, retry_many, delete, purge, claim), and after every step
checks tests/chaos/invariants.py: one state set per job, no parent waiting for an ended
child, no unique key or limit slot held by a job that ended. At the end it drains the queues
and checks that every job ended: nothing waits forever.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field

import pytest

from django_jobs.engine.queue import Claimed, Engine, FlowJob, Guard, NewJob, Outcome
from tests.chaos.invariants import assert_invariants
from tests.lua.conftest import LONG_LEASE_MS, error_json

QUEUES = ("default", "high")
ENDED = ("completed", "failed", "cancelled")


def new(job_id: str, **options) -> NewJob:
    return NewJob(id=job_id, data=json.dumps({"n": "tests.noop", "a": [job_id]}), **options)


@dataclass
class World:
    """The jobs of one case: ``subject`` is the job the steps act on, ``other`` a job next to it."""

    engine: Engine
    kind: str
    subject: tuple[str, str] = ("default", "s")
    other: tuple[str, str] | None = None
    create: Callable[[], object] = lambda: None
    claimed: dict[str, Claimed] = field(default_factory=dict)
    #: A flow over several slots (its steps go through the outbox): relay them as a worker would.
    cross: bool = False

    def relay(self) -> None:
        if self.cross:
            for q in QUEUES:
                self.engine.relay(q)

    def state(self, queue: str, job_id: str) -> str | None:
        return self.engine.client.hget(self.engine.keys(queue).job(job_id), "s")

    def all_jobs(self) -> list[tuple[str, str]]:
        out = []
        for q in QUEUES:
            prefix = self.engine.keys(q).job_prefix
            out += [(q, key[len(prefix):]) for key in self.engine.client.scan_iter(match=prefix + "*")]
        return out

    def fetch(self, queue: str) -> list[Claimed]:
        self.relay()
        jobs = self.engine.fetch(queue, 10, lease_ms=LONG_LEASE_MS, worker_id="w").jobs
        for c in jobs:
            self.claimed[c.id] = c
        return jobs

    def settle(self, job_id: str, kind: str, value: str = "", delay_ms: int = 0) -> None:
        c = self.claimed.get(job_id)
        if c is not None and self.state(c.queue, job_id) == "active":
            self.engine.settle(c.queue, [Outcome(c.id, c.token, kind, value or ("1" if kind == "c" else error_json(kind)), delay_ms)])

    def run_until(self, target: tuple[str, str] | None, outcome: str = "c") -> None:
        """Fetch (completing every other job) until ``target`` is active, then settle it with ``outcome``
        (``""``: leave it running). Stops when nothing more can run."""
        for _ in range(8):
            if target and self.state(*target) == "active" and target[1] in self.claimed:
                break
            got = [c for q in QUEUES for c in self.fetch(q)]
            for c in got:
                if not target or c.id != target[1]:
                    self.settle(c.id, "c")
            if not got:
                break
        if target and outcome:
            self.settle(target[1], outcome)

    def drain(self) -> None:
        """Run everything to its end: scheduled jobs made due, each claim completed."""
        for _ in range(12):
            for q in QUEUES:
                k = self.engine.keys(q)
                due = self.engine.client.zrange(k.scheduled, 0, -1)
                if due:
                    self.engine.client.zadd(k.scheduled, dict.fromkeys(due, 0))
                for prefix in self.engine.client.scan_iter(match=k.limit_prefix + "*:h"):
                    self.engine.client.delete(prefix)
                self.engine.client.hdel(k.meta, "hold")
            self.run_until(None)
            if all(self.state(q, j) in ENDED for q, j in self.all_jobs()):
                return


# -- the kinds of subject job ---------------------------------------------------------------------


def plain(w: World) -> None:
    w.subject = ("default", "s")
    w.create = lambda: w.engine.enqueue("default", [new("s")])


def flow(w: World, subject: str, other: str) -> None:
    """root (default) <- [mid (default) <- [leaf (default)], c1 (default), c2 (high)]."""
    keep = 3_600_000  # jobs ended by a flow step stay, so the steps after see them
    jobs = [
        FlowJob("default", new("root"), keep_ms=keep, children=(("default", "mid", "t"), ("default", "c1", "t"), ("high", "c2", "t"))),
        FlowJob("default", new("mid", parent_id="root"), parent_queue="default", keep_ms=keep, children=(("default", "leaf", "t"),)),
        FlowJob("default", new("leaf", parent_id="mid"), parent_queue="default", keep_ms=keep),
        FlowJob("default", new("c1", parent_id="root"), parent_queue="default", keep_ms=keep),
        FlowJob("high", new("c2", parent_id="root"), parent_queue="default", keep_ms=keep),
    ]
    queue_of = {j.job.id: j.queue for j in jobs}
    w.subject, w.other = (queue_of[subject], subject), (queue_of[other], other)
    w.create = lambda: w.engine.enqueue_flow(jobs)


def unique(w: World) -> None:
    w.subject, w.other = ("default", "u"), ("default", "u2")
    guard = Guard(key="k", until="f")
    w.create = lambda: w.engine.enqueue_guarded("default", [(new("u"), guard)])
    w.create_other = lambda: w.engine.enqueue_guarded("default", [(new("u2"), guard)])  # type: ignore[attr-defined]


def limited(w: World) -> None:
    w.subject, w.other = ("default", "l1"), ("default", "l2")
    guard = Guard(limit_key="lk", limit_concurrency=1)
    w.create = lambda: w.engine.enqueue_guarded("default", [(new("l1"), guard), (new("l2"), guard)])


def cross_flow(w: World, subject: str, other: str) -> None:
    """As :func:`flow` with mid on queue high, written in parts as on a Redis Cluster: the steps
    between default and high go through the outbox and the relay (engine/relay.py)."""
    keep = 3_600_000
    jobs = [
        FlowJob("default", new("root"), keep_ms=keep, children=(("high", "mid", "t"), ("default", "c1", "t"), ("high", "c2", "t"))),
        FlowJob("high", new("mid", parent_id="root"), parent_queue="default", keep_ms=keep, children=(("default", "leaf", "t"),)),
        FlowJob("default", new("leaf", parent_id="mid"), parent_queue="high", keep_ms=keep),
        FlowJob("default", new("c1", parent_id="root"), parent_queue="default", keep_ms=keep),
        FlowJob("high", new("c2", parent_id="root"), parent_queue="default", keep_ms=keep),
    ]
    queue_of = {j.job.id: j.queue for j in jobs}
    w.subject, w.other, w.cross = (queue_of[subject], subject), (queue_of[other], other), True
    w.create = lambda: w.engine._enqueue_flow_parts(jobs)


KINDS: dict[str, Callable[[World], None]] = {
    "plain": plain,
    "flow_parent": lambda w: flow(w, "root", "c1"),
    "flow_child": lambda w: flow(w, "c1", "c2"),
    "flow_child_parent": lambda w: flow(w, "mid", "leaf"),
    "xslot_parent": lambda w: cross_flow(w, "root", "c2"),
    "xslot_child": lambda w: cross_flow(w, "c2", "c1"),
    "xslot_child_parent": lambda w: cross_flow(w, "mid", "leaf"),
    "unique": unique,
    "limited": limited,
}


# -- the steps: one script call each (fetch may take a few to reach the subject) --------------------


def ids_in(w: World, *states: str) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {q: [] for q in QUEUES}
    for q, j in w.all_jobs():
        if w.state(q, j) in states:
            out[q].append(j)
    return out


def _other(w: World, outcome: str) -> None:
    if w.kind == "unique":
        w.create_other()  # type: ignore[attr-defined]
    elif w.other:
        w.run_until(w.other, outcome)


def _recover_lost(w: World) -> None:
    q, j = w.subject
    if w.state(q, j) == "active":
        w.engine.client.hset(w.engine.keys(q).job(j), "rec", w.engine.settings.max_recoveries)
    _recover(w)


def _recover(w: World) -> None:
    for q in QUEUES:
        w.engine.recover(q, now_ms=2**50)


def _release(w: World) -> None:
    q, j = w.subject
    if j in w.claimed:
        w.engine.release(q, [(j, w.claimed[j].token)])


def _renew(w: World) -> None:
    q, j = w.subject
    if j in w.claimed:
        w.engine.renew(q, [(j, w.claimed[j].token)], lease_ms=LONG_LEASE_MS)


def _retry_many(w: World, *states: str) -> None:
    for q, ids in ids_in(w, *states).items():
        w.engine.retry_many(q, ids)


def _purge(w: World) -> None:
    for q in QUEUES:
        for state in ("completed", "failed", "cancelled"):
            w.engine.purge(q, state)


def _claim(w: World) -> None:
    q, j = w.subject
    c = w.engine.claim(q, j, lease_ms=LONG_LEASE_MS, worker_id="w")
    if c is not None:
        w.claimed[j] = c


STEPS: dict[str, Callable[[World], object]] = {
    "create": lambda w: w.create(),
    "create_again": lambda w: w.create(),  # a replayed or duplicate enqueue writes nothing
    "fetch": lambda w: w.run_until(w.subject, ""),
    "complete": lambda w: w.settle(w.subject[1], "c"),
    "fail": lambda w: w.settle(w.subject[1], "f"),
    "retry_now": lambda w: w.settle(w.subject[1], "r"),
    "retry_later": lambda w: w.settle(w.subject[1], "r", delay_ms=60_000),
    "cancelled": lambda w: w.settle(w.subject[1], "x"),
    "rate_limited": lambda w: w.settle(w.subject[1], "l", "key", 60_000),
    "renew": _renew,
    "recover": _recover,
    "recover_lost": _recover_lost,
    "release": _release,
    "claim": _claim,
    "cancel": lambda w: w.engine.cancel(*w.subject),
    "cancel_many": lambda w: w.engine.cancel_many(w.subject[0], [w.subject[1]]),
    "retry": lambda w: w.engine.retry(w.subject[0], [w.subject[1]]),
    "retry_many_failed": lambda w: _retry_many(w, "failed"),
    "retry_many_ended": lambda w: _retry_many(w, "failed", "cancelled"),
    "delete": lambda w: w.engine.delete_jobs(w.subject[0], [w.subject[1]]),
    "purge": _purge,
    "other_fails": lambda w: _other(w, "f"),
    "other_cancelled": lambda w: w.engine.cancel_many(*(w.other[0], [w.other[1]])) if w.other else None,
    "other_runs": lambda w: _other(w, ""),
}

SCENARIOS: dict[str, list[str]] = {
    "replay": ["create_again"],
    "cancel": ["cancel"],
    "cancel_many": ["cancel_many"],
    "delete": ["delete"],
    "complete": ["fetch", "complete", "delete"],
    "fail": ["fetch", "fail"],
    "retry_now": ["fetch", "retry_now", "fetch", "complete"],
    "retry_later": ["fetch", "retry_later"],
    "cancelled": ["fetch", "cancelled"],
    "rate_limited": ["fetch", "rate_limited"],
    "renew": ["fetch", "renew", "complete"],
    "recover": ["fetch", "recover", "fetch", "complete"],
    "recover_lost": ["fetch", "recover_lost", "retry"],
    "release": ["fetch", "release", "claim", "complete"],
    "cancel_running_release": ["fetch", "cancel_many", "release"],
    "cancel_running_recover": ["fetch", "cancel", "recover"],
    "cancel_running_retry": ["fetch", "cancel_many", "retry_now"],
    "fail_retry": ["fetch", "fail", "retry"],
    "fail_retry_many": ["fetch", "fail", "retry_many_failed"],
    "cancel_retry_many": ["cancel_many", "retry_many_ended"],
    "fail_purge": ["fetch", "fail", "purge"],
    "other_fails_retry_subject": ["other_fails", "retry", "retry_many_failed"],
    "other_fails_retry_all": ["other_fails", "retry_many_ended"],
    "other_cancelled_retry": ["other_cancelled", "retry_many_ended", "cancel_many", "retry_many_ended"],
    "other_runs_subject_cancelled": ["other_runs", "cancel_many", "recover", "retry_many_ended"],
    "both_fail_retry_each": ["fetch", "fail", "other_fails", "retry", "retry_many_failed"],
}


@pytest.mark.parametrize("scenario", list(SCENARIOS))
@pytest.mark.parametrize("kind", list(KINDS))
def test_every_script_keeps_the_invariants(engine, kind, scenario):
    check_every_step(engine, kind, scenario)


@pytest.mark.parametrize("topology", ["cluster"], indirect=True)
@pytest.mark.parametrize("scenario", list(SCENARIOS))
@pytest.mark.parametrize("kind", [kind for kind in KINDS if kind.startswith("xslot_")])
def test_every_script_keeps_the_invariants_across_the_slots_of_a_real_cluster(engine, topology, kind, scenario):
    """The flows over two slots again on a real Redis Cluster (queues default and high on two slots):
    every step that crosses them goes through the outbox, retries included."""
    check_every_step(engine, kind, scenario)


def check_every_step(engine, kind: str, scenario: str) -> None:
    w = World(engine, kind)
    KINDS[kind](w)
    for step in ["create", *SCENARIOS[scenario]]:
        STEPS[step](w)
        for when in ("", " and the relay"):
            if when:
                w.relay()
            try:
                assert_invariants(engine.client, engine.prefix, QUEUES)
            except AssertionError as exc:
                raise AssertionError(f"after step {step!r}{when} of {scenario} on a {kind} job: {exc}") from None
    w.drain()
    w.relay()
    assert_invariants(engine.client, engine.prefix, QUEUES)
    assert sum(engine.outbox_size(q) for q in QUEUES) == 0
    stuck = {(q, j): w.state(q, j) for q, j in w.all_jobs() if w.state(q, j) not in ENDED}
    assert not stuck, f"{scenario} on a {kind} job: left unfinished after the drain: {stuck}"
