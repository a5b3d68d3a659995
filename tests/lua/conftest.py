"""Helpers for the Lua script tests: every script runs against the real test redis-server.

Each test gets a fresh key prefix (tests/conftest.py), so the keys of queue ``default`` are
empty when a test starts. At teardown every job of the queue must be in exactly one state
ZSET, the one its ``s`` field names, and every ZSET member must have a job hash.
"""

from __future__ import annotations

import json
from collections.abc import Generator
from contextlib import contextmanager
from typing import Any

import pytest
from django.test import override_settings

from django_jobs.engine.keys import STATE_TO_SET, QueueKeys
from django_jobs.engine.queue import Claimed, Engine, NewJob, Outcome
from django_jobs.engine.streams import expand_entry

#: The queue the script tests use.
QUEUE = "default"
#: A lease long enough never to expire by itself during a test.
LONG_LEASE_MS = 60_000
#: The wait-score span of one priority level (includes/wait_score.lua).
PRIORITY_SPAN = 2**44
#: The ZSET that holds a job in each state.
SET_OF_STATE = STATE_TO_SET


def new_job(job_id: str, **options: Any) -> NewJob:
    """Return a :class:`NewJob` with a small JSON payload naming ``job_id``."""
    return NewJob(id=job_id, data=json.dumps({"n": "tests.noop", "a": [job_id]}), **options)


def wait_score(priority: int, seq: int) -> int:
    """Return the wait-ZSET score includes/wait_score.lua computes."""
    return (100 - priority) * PRIORITY_SPAN + seq


def server_ms(r) -> int:
    """Return the Redis server time in ms (what the scripts use)."""
    seconds, micros = r.time()
    return int(seconds) * 1000 + int(micros) // 1000


def where(r, k: QueueKeys, job_id: str) -> list[str]:
    """Return the names of the state ZSETs that hold ``job_id``."""
    with r.pipeline(transaction=False) as pipe:
        for name in QueueKeys.STATE_SETS:
            pipe.zscore(getattr(k, name), job_id)
        scores = pipe.execute()
    return [name for name, score in zip(QueueKeys.STATE_SETS, scores) if score is not None]


def assert_state(r, k: QueueKeys, job_id: str, state: str) -> None:
    """Assert that the job's ``s`` field is ``state`` and it sits in that state's ZSET only."""
    assert r.hget(k.job(job_id), "s") == state
    assert where(r, k, job_id) == [SET_OF_STATE[state]]


def score(r, key: str, job_id: str) -> int:
    value = r.zscore(key, job_id)
    assert value is not None, f"{job_id!r} is not in {key!r}"
    return int(value)


def claim(engine: Engine, count: int = 1, *, worker_id: str = "w1", lease_ms: int = LONG_LEASE_MS) -> list[Claimed]:
    """Fetch up to ``count`` jobs of :data:`QUEUE`."""
    return engine.fetch(QUEUE, count, lease_ms=lease_ms, worker_id=worker_id).jobs


def claim_one(engine: Engine, job_id: str, **kwargs: Any) -> Claimed:
    """Fetch one job and check it is ``job_id``."""
    jobs = claim(engine, 1, **kwargs)
    assert [j.id for j in jobs] == [job_id]
    return jobs[0]


def complete(c: Claimed, value: str = "42", keep_ms: int = 0) -> Outcome:
    return Outcome(c.id, c.token, "c", value, 0, keep_ms)


def retry(c: Claimed, delay_ms: int = 0, error: str | None = None) -> Outcome:
    return Outcome(c.id, c.token, "r", error or error_json(f"retry {c.id}"), delay_ms)


def fail(c: Claimed, error: str | None = None, keep_ms: int = 0) -> Outcome:
    return Outcome(c.id, c.token, "f", error or error_json(f"fail {c.id}"), 0, keep_ms)


def cancelled(c: Claimed, error: str = "") -> Outcome:
    return Outcome(c.id, c.token, "x", error)


def error_json(message: str) -> str:
    return json.dumps({"exception_class_path": "builtins.RuntimeError", "traceback": message})


class Events:
    """Read the queue's events stream: :meth:`new` returns what was added since its last call.

    One event per job: batch entries (lua/includes/emit.lua) are expanded as every reader does
    (engine/streams.py ``expand_entry``); :meth:`new_entries` counts the raw entries.
    """

    def __init__(self, r, k: QueueKeys) -> None:
        self.r = r
        self.key = k.events
        self.last = "0-0"

    def new(self) -> list[tuple[str, str]]:
        return [(f["e"], f["j"]) for f in self.new_fields()]

    def new_fields(self) -> list[dict[str, str]]:
        return [fields for entry_id, entry in self.new_entries() for _, fields in expand_entry(entry_id, entry)]

    def new_entries(self) -> list[tuple[str, dict[str, str]]]:
        entries = self.r.xrange(self.key, min=f"({self.last}")
        if entries:
            self.last = entries[-1][0]
        return list(entries)

    def all(self) -> list[tuple[str, str]]:
        return [(f["e"], f["j"]) for entry_id, entry in self.r.xrange(self.key) for _, f in expand_entry(entry_id, entry)]


@pytest.fixture
def k(prefix) -> QueueKeys:
    """The keys of :data:`QUEUE` under this test's prefix."""
    return QueueKeys.build(prefix, QUEUE)


@pytest.fixture
def events(r, k) -> Events:
    return Events(r, k)


@contextmanager
def jobs_settings(**overrides: Any) -> Generator[Engine]:
    """Override DJANGO_JOBS keys on top of the test settings; yield an engine built from them.

    Changing settings rebuilds the process engine, so use the yielded one, not the
    ``engine`` fixture, inside the block.
    """
    from django.conf import settings

    from django_jobs.engine import get_engine

    with override_settings(DJANGO_JOBS={**settings.DJANGO_JOBS, **overrides}):
        yield get_engine()


def check_consistency(r, k: QueueKeys) -> None:
    """Assert every job is in exactly one state ZSET matching ``s``, and there are no orphans."""
    job_keys = list(r.scan_iter(match=k.job_prefix + "*", count=1000))
    job_ids = {key[len(k.job_prefix):] for key in job_keys}
    for job_id in job_ids:
        state = r.hget(k.job(job_id), "s")
        assert state in SET_OF_STATE, f"job {job_id!r} has state {state!r}"
        assert where(r, k, job_id) == [SET_OF_STATE[state]], f"job {job_id!r} ({state}) is in {where(r, k, job_id)}"
    for name in QueueKeys.STATE_SETS:
        members = set(r.zrange(getattr(k, name), 0, -1))
        assert members <= job_ids, f"{name} holds ids without a job hash: {sorted(members - job_ids)}"


@pytest.fixture(autouse=True)
def _consistent_at_teardown(r, k):
    yield
    check_consistency(r, k)
