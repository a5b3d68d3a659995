"""Redis invariants of the job store, checked after a fault scenario once workers stopped.

* every job hash ``{prefix}:{queue}:job:<id>`` is in exactly one state ZSET, the one its
  ``s`` field names (waiting ↔ ``wait``, scheduled ↔ ``scheduled``, ...);
* every member of a state ZSET has a job hash (no orphans);
* (:func:`event_violations`) no job has two terminal events in its queue's ``events``
  stream, nor an event after its terminal one: nothing both completed and requeued
  (an operator's ``jobs retry`` starts a job over);
* (:func:`field_violations`) an active job has a lease (``tok``, ``w``) and a claimed job
  an attempt count of at least one; a finished job has its finish time.
* every flow parent in ``waiting_children`` waits for something: its ``pend`` count is the
  number of its children whose end it has not recorded, at least 1, and each of those children
  exists and has not ended, or its end (or its parent's re-open toward it) waits in a flow
  outbox for the relay, or (a flow written in parts on a Redis Cluster) it does not exist yet
  and a create entry of some queue's outbox holds it
  (otherwise the parent would wait forever); and a flow parent
  that is waiting, scheduled or running has recorded the end of every child (it runs last);
* (:func:`_outbox_violations`) each queue's flow outbox (a Redis Cluster) lists the same
  members in its HASH and its due ZSETs (``outbox_due`` for steps, ``outbox_parts`` for
  create entries), each a well-formed step toward a job of another queue or a part to write;
* (:func:`guard_violations`) no unique key is held by a job that ended or is gone (unless a
  throttle window, its TTL, holds it), and no per-key limit slot (``lim:<key>:a``) or parked
  entry (``lim:<key>:p``) names a job that ended or is gone.

Reads only (SCAN and ZSCORE), so it can run on a live store too, but a job moving
between two reads would show up as a violation: call it when no worker runs.
"""

from __future__ import annotations

from collections.abc import Iterable

import redis

from django_jobs.engine.keys import STATE_TO_SET, QueueKeys
from django_jobs.engine.streams import expand_entry


def invariant_violations(client: redis.Redis, prefix: str, queues: Iterable[str]) -> list[str]:
    """Return a description of each broken invariant of ``queues`` under ``prefix`` (empty: all hold)."""
    problems: list[str] = []
    queues = list(queues)
    unwritten = _unwritten_jobs(client, prefix, queues)
    for queue in queues:
        keys = QueueKeys.build(prefix, queue)
        job_prefix = keys.job_prefix
        # SCAN MATCH treats [ ] * ? specially; a queue name with them would need escaping.
        job_keys = sorted(client.scan_iter(match=job_prefix + "*", count=1000))
        set_names = QueueKeys.STATE_SETS
        members = {name: set(client.zrange(getattr(keys, name), 0, -1)) for name in set_names}

        ids = []
        with client.pipeline(transaction=False) as pipe:
            for key in job_keys:
                pipe.type(key)
                pipe.hget(key, "s")
            raw = pipe.execute()
        for key, kind, state in zip(job_keys, raw[::2], raw[1::2]):
            job_id = key[len(job_prefix):]
            if kind != "hash":
                problems.append(f"{queue}: {key} is a {kind}, not a job hash")
                continue
            if state in RUNNABLE and client.hexists(key, "kids"):
                problems += _parent_runs_early(client, queue, job_id, client.hgetall(key))
            ids.append(job_id)
            holding = [name for name in set_names if job_id in members[name]]
            expected = STATE_TO_SET.get(state or "")
            if expected is None:
                problems.append(f"{queue}: job {job_id} has unknown state {state!r} (in {holding or 'no set'})")
            elif holding != [expected]:
                problems.append(f"{queue}: job {job_id} is {state!r} but is in {holding or 'no state set'}, expected [{expected!r}]")
        known = set(ids)
        for name in set_names:
            for job_id in sorted(members[name] - known):
                problems.append(f"{queue}: {name} holds {job_id}, which has no job hash")
        problems += _flow_violations(client, queue, keys, sorted(members.get("waiting_children", ())), unwritten)
    return problems


def _unwritten_jobs(client: redis.Redis, prefix: str, queues: list[str]) -> set[tuple[str, str]]:
    """The ``(queue base, job id)`` of the jobs that the create entries (kind ``c``) of the outboxes of
    ``queues`` will write (parked ones will not: a parent waiting for such a child is reported)."""
    import json

    from django_jobs.engine.relay import PARKED

    out: set[tuple[str, str]] = set()
    for queue in queues:
        keys = QueueKeys.build(prefix, queue)
        for member in client.zrangebyscore(keys.outbox_parts, "-inf", f"({PARKED}"):
            raw = client.hget(keys.outbox, member)
            if raw:
                args = json.loads(raw).get("a", [])
                out.update((args[g], args[g + 1]) for g in range(0, len(args) - 1, 12))
    return out


#: States from which a job runs (or runs now).
RUNNABLE = frozenset({"waiting", "scheduled", "active"})


def _parent_runs_early(client: redis.Redis, queue: str, parent_id: str, data: dict[str, str]) -> list[str]:
    """A flow parent that is about to run (or runs) must have recorded the end of every child."""
    import json

    kids = json.loads(data.get("kids") or "[]")
    missing = [kid_id for _base, kid_id, _queue, _name in kids if "c:" + kid_id not in data]
    if missing:
        return [f"{queue}: parent {parent_id} is {data.get('s')} but children {missing} have not ended for it"]
    return []


def _flow_violations(
    client: redis.Redis, queue: str, keys: QueueKeys, parents: list[str], unwritten: set[tuple[str, str]]
) -> list[str]:
    """Return what is wrong with the flow parents ``parents`` of ``queue`` (waiting for their children)."""
    import json

    problems: list[str] = []
    for parent_id in parents:
        data = client.hgetall(keys.job(parent_id))
        if not data:
            continue  # reported above as an orphan
        kids = json.loads(data.get("kids") or "[]")
        pending = [(base, kid_id) for base, kid_id, _queue, _name in kids if "c:" + kid_id not in data]
        if int(data.get("pend") or 0) != len(pending) or not pending:
            problems.append(f"{queue}: parent {parent_id} has pend={data.get('pend')!r} but {len(pending)} unrecorded children")
        for base, kid_id in pending:
            state = client.hget(base + "job:" + kid_id, "s")
            # The relay delivers it: the child's end, or the parent's re-open toward the child (k "o").
            in_flight = client.hexists(base + "outbox", f"d|{parent_id}|{kid_id}") or '"k":"o"' in (
                client.hget(keys.outbox, f"x|{kid_id}") or ""
            )
            in_flight = in_flight or (state is None and (base, kid_id) in unwritten)
            if (state is None or state in ("completed", "failed", "cancelled")) and not in_flight:
                problems.append(f"{queue}: parent {parent_id} waits for child {kid_id}, which is {state or 'gone'}")
    return problems + _outbox_violations(client, queue, keys)


def _outbox_violations(client: redis.Redis, queue: str, keys: QueueKeys) -> list[str]:
    """The flow outbox of ``queue`` (a Redis Cluster, engine/relay.py): its HASH and its due ZSET name
    the same members, and each entry is a well-formed step toward a job of another queue."""
    import json

    problems: list[str] = []
    entries = client.hgetall(keys.outbox)
    due = set(client.zrange(keys.outbox_due, 0, -1))
    parts = set(client.zrange(keys.outbox_parts, 0, -1))
    for member in sorted(due & parts):
        problems.append(f"{queue}: outbox member {member} is in both outbox_due and outbox_parts")
    for member in sorted(set(entries) ^ (due | parts)):
        problems.append(f"{queue}: outbox member {member} is in only one of outbox / its due sets")
    for member, raw in sorted(entries.items()):
        entry = json.loads(raw)
        if entry["k"] not in ("d", "x", "o", "r", "c") or not isinstance(entry.get("seq"), int):
            problems.append(f"{queue}: outbox entry {member} is malformed: {raw}")
        if (entry["k"] == "c") != (member in parts):
            problems.append(f"{queue}: outbox entry {member} of kind {entry['k']!r} is in the wrong due set")
        if entry["k"] == "c":
            args = entry.get("a")
            if not isinstance(args, list) or not args or len(args) % 12 or not isinstance(entry.get("e"), int):
                problems.append(f"{queue}: create entry {member} is malformed: {raw[:200]}")
        elif entry["b"] == keys.base:
            problems.append(f"{queue}: outbox entry {member} is for a job of the same queue (done in place)")
    return problems


#: Events after which a job never changes again.
TERMINAL_EVENTS = frozenset({"completed", "failed", "cancelled"})
#: Events that only say something about a job without changing its state (or end its record).
NOTE_EVENTS = frozenset({"cancel_requested", "deleted"})


def event_violations(client: redis.Redis, prefix: str, queues: Iterable[str]) -> list[str]:
    """Return each job whose events show two outcomes, or a transition after its outcome.

    The stream is capped (``EVENTS_MAXLEN``), so only the events still in it are checked.
    """
    problems: list[str] = []
    for queue in queues:
        keys = QueueKeys.build(prefix, queue)
        done: dict[str, str] = {}
        # One event per job: a batch entry (lua/includes/emit.lua) names several jobs.
        for entry_id, fields in (event for item in client.xrange(keys.events) for event in expand_entry(*item)):
            job_id, event = fields.get("j"), fields.get("e")
            if job_id is None or event in NOTE_EVENTS:
                continue
            if fields.get("why") == "retried":
                done.pop(job_id, None)  # an operator's retry (waiting, or a re-opened flow parent): a new life
                continue
            if job_id in done:
                problems.append(f"{queue}: job {job_id} got {event!r} ({entry_id}) after {done[job_id]!r}")
            if event in TERMINAL_EVENTS:
                done.setdefault(job_id, event)
    return problems


def field_violations(client: redis.Redis, prefix: str, queues: Iterable[str]) -> list[str]:
    """Return each job hash whose fields contradict its state (lease, attempts, finish time)."""
    problems: list[str] = []
    for queue in queues:
        keys = QueueKeys.build(prefix, queue)
        job_keys = sorted(client.scan_iter(match=keys.job_prefix + "*", count=1000))
        with client.pipeline(transaction=False) as pipe:
            for key in job_keys:
                pipe.hmget(key, "s", "tok", "w", "a", "f")
            rows = pipe.execute()
        for key, (state, tok, worker, attempts, finished) in zip(job_keys, rows):
            job_id = key[len(keys.job_prefix):]
            # A job never claimed may have no 'a' (0, its default: includes/job_store.lua).
            if int(attempts or 0) < 0:
                problems.append(f"{queue}: job {job_id} has attempt count {attempts!r}")
            if state == "active" and (not tok or not worker or int(attempts or 0) < 1):
                problems.append(f"{queue}: active job {job_id} has no lease (tok={tok!r}, w={worker!r}, a={attempts!r})")
            if state in ("completed", "failed", "cancelled") and not finished:
                problems.append(f"{queue}: job {job_id} is {state} without a finish time")
    return problems


ENDED = frozenset({"completed", "failed", "cancelled"})


def guard_violations(client: redis.Redis, prefix: str, queues: Iterable[str]) -> list[str]:
    """Return each unique key or per-key limit entry held by a job that ended or is gone."""
    problems: list[str] = []
    for queue in queues:
        keys = QueueKeys.build(prefix, queue)
        for lock in sorted(client.scan_iter(match=keys.unique_prefix + "*", count=1000)):
            holder = client.get(lock)
            if holder is None or client.pttl(lock) > 0:
                continue  # gone meanwhile, or a throttle window: held for its TTL whatever the job does
            state = client.hget(keys.job(holder), "s")
            if state is None or state in ENDED:
                problems.append(f"{queue}: unique key {lock} is held by job {holder}, which is {state or 'gone'}")
        for zset in sorted(client.scan_iter(match=keys.limit_prefix + "*", count=1000)):
            kind = zset.rsplit(":", 1)[-1]
            if kind not in ("a", "p"):
                continue
            for job_id in client.zrange(zset, 0, -1):
                state = client.hget(keys.job(job_id), "s")
                if kind == "a" and state != "active":
                    problems.append(f"{queue}: limit slot {zset} is held by job {job_id}, which is {state or 'gone'}")
                if kind == "p" and state not in ("waiting", "scheduled"):
                    problems.append(f"{queue}: {zset} parks job {job_id}, which is {state or 'gone'}")
    return problems


def assert_invariants(client: redis.Redis, prefix: str, queues: Iterable[str]) -> None:
    """Fail with every broken invariant listed (state sets, events, fields, unique keys and limit slots)."""
    queues = list(queues)
    problems = invariant_violations(client, prefix, queues)
    problems += event_violations(client, prefix, queues)
    problems += field_violations(client, prefix, queues)
    problems += guard_violations(client, prefix, queues)
    assert not problems, "Redis invariants broken:\n  " + "\n  ".join(problems)
