"""The engine against a pure-Python model: random sequences of transitions, checked after every step.

Each Hypothesis example runs on its own queue. After every step, every job is in exactly the
state ZSET its ``s`` field names, that state is the model's, the wait order and scores, attempts,
recoveries, tokens and error counts match the model, and the events stream holds exactly one
event per transition.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from typing import ClassVar

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from django_jobs.engine.keys import QueueKeys
from django_jobs.engine.queue import Engine, NewJob, Outcome
from django_jobs.engine.streams import entry_job_ids
from tests.lua.conftest import SET_OF_STATE, jobs_settings, server_ms, wait_score

#: Leases never expire by themselves during a run; only recover(now_ms=...) expires them.
LEASE_MS = 600_000
#: Delays long enough never to fall due by themselves; a rule makes jobs due on purpose.
DELAY_MS = 600_000
SETTLED = {"c": "completed", "f": "failed", "x": "cancelled"}
ERROR = json.dumps({"exception_class_path": "builtins.RuntimeError", "traceback": "model"})

indexes = st.integers(min_value=0, max_value=1_000)
priorities = st.sampled_from([-100, -1, 0, 0, 5, 100])


@dataclass
class ModelJob:
    id: str
    priority: int
    state: str
    ws: int | None = None
    tok: str | None = None
    tokens: list[str] = field(default_factory=list)
    attempts: int = 0
    rec: int = 0
    cx: bool = False
    errors: int = 0
    due: int | None = None  # set when a test made the scheduled job due


class EngineModel(RuleBasedStateMachine):
    engine: ClassVar[Engine]
    r: ClassVar[object]

    def __init__(self) -> None:
        super().__init__()
        self.queue = "m" + uuid.uuid4().hex[:12]
        self.k: QueueKeys = self.engine.keys(self.queue)
        self.jobs: dict[str, ModelJob] = {}
        self.seq = 0
        self.fence = 0
        self.events = 0
        self.due_clock = 0
        self.paused = False  # only during one fetch
        self.applied: list[Outcome] = []
        self.max_recoveries = self.engine.settings.max_recoveries

    # -- model helpers ------------------------------------------------------------------

    def next_score(self, priority: int) -> int:
        self.seq += 1
        return wait_score(priority, self.seq)

    def in_state(self, *states: str) -> list[ModelJob]:
        return [j for j in self.jobs.values() if j.state in states]

    def pick(self, jobs: list[ModelJob], i: int) -> ModelJob:
        return jobs[i % len(jobs)]

    def has(self, *states: str) -> bool:
        return bool(self.in_state(*states))

    def back_to_waiting(self, job: ModelJob) -> None:
        job.tok = None
        if job.cx:
            job.state = "cancelled"
        else:
            job.attempts -= 1
            job.state = "waiting"
        self.events += 1

    # -- rules --------------------------------------------------------------------------

    @initialize(specs=st.lists(st.tuples(priorities, st.just(False)), min_size=2, max_size=6))
    def start_with_waiting_jobs(self, specs: list[tuple[int, bool]]) -> None:
        self.enqueue(specs)

    @rule(specs=st.lists(st.tuples(priorities, st.sampled_from([False, False, True])), min_size=1, max_size=3))
    def enqueue(self, specs: list[tuple[int, bool]]) -> None:
        new, expected = [], []
        for priority, delayed in specs:
            job_id = f"j{len(self.jobs):03d}"
            new.append(NewJob(id=job_id, data="{}", priority=priority, delay_ms=DELAY_MS if delayed else 0))
            if delayed:
                self.jobs[job_id] = ModelJob(job_id, priority, "scheduled")
                expected.append(2)
            else:
                self.jobs[job_id] = ModelJob(job_id, priority, "waiting", ws=self.next_score(priority))
                expected.append(1)
            self.events += 1
        assert self.engine.enqueue(self.queue, new) == expected

    @precondition(lambda self: self.jobs)
    @rule(i=indexes, priority=st.integers(-100, 100))
    def enqueue_an_existing_id(self, i: int, priority: int) -> None:
        job = self.pick(list(self.jobs.values()), i)
        assert self.engine.enqueue(self.queue, [NewJob(id=job.id, data="[]", priority=priority)]) == [0]

    @precondition(lambda self: any(j.state == "scheduled" and j.due is None for j in self.jobs.values()))
    @rule(i=indexes)
    def a_scheduled_job_falls_due(self, i: int) -> None:
        job = self.pick([j for j in self.in_state("scheduled") if j.due is None], i)
        self.due_clock += 1
        job.due = self.due_clock
        self.r.zadd(self.k.scheduled, {job.id: job.due})

    @rule(count=st.integers(1, 4), paused=st.sampled_from([False, False, False, True]))
    def fetch(self, count: int, paused: bool) -> None:
        if paused:
            self.engine.pause(self.queue)
        self.paused = paused
        try:
            self.fetch_and_check(count)
        finally:
            if paused:
                self.engine.resume(self.queue)
            self.paused = False

    def fetch_and_check(self, count: int) -> None:
        for job in sorted((j for j in self.in_state("scheduled") if j.due is not None), key=lambda j: (j.due, j.id)):
            job.state, job.ws, job.due = "waiting", self.next_score(job.priority), None
            self.events += 1
        expected = [] if self.paused else sorted(self.in_state("waiting"), key=lambda j: j.ws)[:count]

        result = self.engine.fetch(self.queue, count, lease_ms=LEASE_MS, worker_id="w")

        assert result.paused == self.paused
        assert [c.id for c in result.jobs] == [j.id for j in expected]
        for claimed, job in zip(result.jobs, expected):
            self.fence += 1
            job.attempts += 1
            assert (claimed.token, claimed.attempt) == (str(self.fence), job.attempts)
            job.tok = claimed.token
            job.tokens.append(claimed.token)
            job.state = "active"
            self.events += 1

    def running_job(self, i: int, cancel_requested: bool) -> ModelJob:
        """Pick an active job; optionally a cancel request reaches it while it runs."""
        job = self.pick(self.in_state("active"), i)
        if cancel_requested:
            self.cancel_job(job)
        return job

    @precondition(lambda self: self.has("active"))
    @rule(i=indexes, kind=st.sampled_from("cfx"), cancel_requested=st.booleans())
    def finish(self, i: int, kind: str, cancel_requested: bool) -> None:
        job = self.running_job(i, cancel_requested)
        outcome = Outcome(job.id, job.tok, kind, "1" if kind == "c" else ERROR)
        assert self.engine.settle(self.queue, [outcome]) == [1]
        job.state = SETTLED[kind]
        job.errors += kind != "c"
        self.events += 1
        self.applied.append(outcome)

    @precondition(lambda self: self.has("active"))
    @rule(i=indexes, delayed=st.booleans(), cancel_requested=st.booleans())
    def retry(self, i: int, delayed: bool, cancel_requested: bool) -> None:
        job = self.running_job(i, cancel_requested)
        outcome = Outcome(job.id, job.tok, "r", ERROR, DELAY_MS if delayed else 0)
        assert self.engine.settle(self.queue, [outcome]) == [1]
        if job.cx:
            job.state = "cancelled"
        elif delayed:
            job.state = "scheduled"
        else:
            job.state, job.ws = "waiting", self.next_score(job.priority)
        job.errors += 1
        self.events += 1
        self.applied.append(outcome)

    @precondition(lambda self: self.applied)
    @rule(i=indexes, kind=st.sampled_from(["same", "c", "r", "f", "x"]))
    def replay_an_applied_outcome(self, i: int, kind: str) -> None:
        """Send an applied outcome again ("same"), or another outcome with its token."""
        outcome = self.applied[i % len(self.applied)]
        if kind != "same":
            outcome = Outcome(outcome.id, outcome.token, kind, ERROR)
        job = self.jobs[outcome.id]
        if job.tok != outcome.token:
            expected = -3
        elif outcome.kind == "r":
            expected = 1 if job.state in ("waiting", "scheduled", "cancelled") else -3
        else:
            expected = 1 if job.state == SETTLED[outcome.kind] else -3
        assert self.engine.settle(self.queue, [outcome]) == [expected]

    def with_stale_tokens(self) -> list[ModelJob]:
        return [j for j in self.jobs.values() if any(t != j.tok for t in j.tokens)]

    @precondition(lambda self: self.with_stale_tokens())
    @rule(i=indexes, kind=st.sampled_from("cfxr"))
    def settle_with_a_stale_token(self, i: int, kind: str) -> None:
        job = self.pick(self.with_stale_tokens(), i)
        stale = [t for t in job.tokens if t != job.tok]
        outcome = Outcome(job.id, stale[i % len(stale)], kind, ERROR)
        assert self.engine.settle(self.queue, [outcome]) == [-3]

    @precondition(lambda self: self.jobs)
    @rule(i=indexes, running=st.booleans())
    def cancel(self, i: int, running: bool) -> None:
        candidates = self.in_state("active") if running and self.has("active") else list(self.jobs.values())
        self.cancel_job(self.pick(candidates, i))

    def cancel_job(self, job: ModelJob) -> None:
        code = self.engine.cancel(self.queue, job.id)
        if job.state in ("waiting", "scheduled"):
            assert code == 1
            job.state, job.due = "cancelled", None
            self.events += 1
        elif job.state == "active":
            assert code == 2
            if not job.cx:
                job.cx = True
                self.events += 1
        else:
            assert code == 0

    @precondition(lambda self: self.has("active"))
    @rule(i=indexes, cancel_requested=st.booleans())
    def recover_after_every_lease_expired(self, i: int, cancel_requested: bool) -> None:
        self.running_job(i, cancel_requested)
        recovered = failed = 0
        for job in self.in_state("active"):
            job.rec += 1
            if not job.cx and job.rec > self.max_recoveries:
                job.tok, job.state = None, "failed"
                job.errors += 1
                self.events += 1
                failed += 1
            else:
                recovered += not job.cx
                self.back_to_waiting(job)
        now_ms = server_ms(self.r) + 10 * LEASE_MS
        assert self.engine.recover(self.queue, now_ms=now_ms) == (recovered, failed)

    @precondition(lambda self: self.has("active"))
    @rule(i=indexes, cancel_requested=st.booleans())
    def release(self, i: int, cancel_requested: bool) -> None:
        job = self.running_job(i, cancel_requested)
        assert self.engine.release(self.queue, [(job.id, job.tok)]) == 1
        self.back_to_waiting(job)

    # -- invariants ---------------------------------------------------------------------

    @invariant()
    def redis_matches_the_model(self) -> None:
        jobs = sorted(self.jobs.values(), key=lambda j: j.id)
        with self.r.pipeline(transaction=False) as pipe:
            for job in jobs:
                pipe.hmget(self.k.job(job.id), "s", "a", "rec", "tok", "err", "ws")
            for name in QueueKeys.STATE_SETS:
                pipe.zrange(getattr(self.k, name), 0, -1, withscores=True)
            pipe.xrange(self.k.events)
            replies = pipe.execute()
        hashes, set_replies, entries = replies[: len(jobs)], replies[len(jobs):-1], replies[-1]
        sets = {name: dict(members) for name, members in zip(QueueKeys.STATE_SETS, set_replies)}

        for job, (s, a, rec, tok, err, ws) in zip(jobs, hashes):
            assert s == job.state, job
            assert [name for name in QueueKeys.STATE_SETS if job.id in sets[name]] == [SET_OF_STATE[job.state]], job
            assert (int(a or 0), int(rec or 0), tok) == (job.attempts, job.rec, job.tok), job
            assert (len(json.loads(err)) if err else 0) == job.errors, job
            if job.ws is not None:
                assert int(ws) == job.ws, job
        waiting = sorted(self.in_state("waiting"), key=lambda j: j.ws)
        assert list(sets["wait"].items()) == [(j.id, float(j.ws)) for j in waiting]
        assert sum(len(members) for members in sets.values()) == len(self.jobs)
        counts = {state: len(self.in_state(state)) for state in SET_OF_STATE}
        assert self.engine.counts(self.queue) == counts
        # One event per job and transition (a batch entry names several jobs: emit.lua).
        assert sum(len(entry_job_ids(fields)) for _, fields in entries) == self.events


def test_the_engine_behaves_like_the_model_for_random_transition_sequences(r):
    # One recovery is allowed, so short runs reach the worker_lost failure too.
    with jobs_settings(MAX_RECOVERIES=1) as engine:
        machine = type("EngineMachine", (EngineModel,), {"engine": engine, "r": r})
        run_state_machine_as_test(
            machine,
            settings=settings(max_examples=50, stateful_step_count=30, deadline=None, database=None),
        )
