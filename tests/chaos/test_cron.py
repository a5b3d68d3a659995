"""Three supervisors fire second-level schedules while the leader is killed and paused.

Each (schedule, tick) must be enqueued and run exactly once, and no tick of the catch-up
schedule may be missing.
"""

from __future__ import annotations

import os
import signal
from collections import Counter

import pytest

from tests.redis_server import wait_until

pytestmark = pytest.mark.chaos

SETTINGS = {"DJANGO_SETTINGS_MODULE": "tests.settings_cron"}


def leader_pid(engine) -> int:
    """Return the pid of the supervisor holding the lease ("<epoch>|<host>:<pid>:<rand>")."""
    value = wait_until(engine.leader, timeout=10, message="a leader")
    return int(value.split("|", 1)[1].split(":")[1])


def new_leader(engine, old: str) -> str:
    return wait_until(lambda: (v := engine.leader()) and v != old and v, timeout=10, message="a new leader")


def test_every_tick_runs_exactly_once_while_leaders_are_killed_and_paused(chaos, engine, work):
    from tests.testapp import jobs_cron  # registers the jobs for the final drain

    sups = {}
    for _ in range(3):
        sup = chaos.start("--processes=1", "--threads=4", "--grace=2", env=SETTINGS)
        sups[sup.pid] = sup
    for sup in list(sups.values()):
        chaos.wait_ready(sup, 1)

    def ticks() -> list[list[str]]:
        return [row for row in chaos.ledger() if row[0] == "tick"]

    wait_until(lambda: len(ticks()) >= 3, timeout=15, message="first ticks")

    # Kill the leader three times; a new supervisor replaces each one.
    for _ in range(3):
        old = engine.leader()
        victim = sups.pop(leader_pid(engine))
        victim.signal(signal.SIGKILL)
        new_leader(engine, old)
        before = len(ticks())
        wait_until(lambda before=before: len(ticks()) >= before + 2, timeout=10, message="ticks under the new leader")
        sup = chaos.start("--processes=1", "--threads=4", "--grace=2", env=SETTINGS)
        sups[sup.pid] = sup

    # Pause the leader past its lease; it must not fire with its stale epoch when it resumes.
    old = engine.leader()
    paused = sups[leader_pid(engine)]
    paused.signal(signal.SIGSTOP)
    try:
        new_leader(engine, old)
        before = len(ticks())
        wait_until(lambda: len(ticks()) >= before + 3, timeout=10, message="ticks while the old leader is paused")
    finally:
        paused.signal(signal.SIGCONT)
    before = len(ticks())
    wait_until(lambda: len(ticks()) >= before + 3, timeout=10, message="ticks after the old leader resumed")

    # The leader forks a replacement for a killed worker while its scheduler thread runs.
    leading = sups[leader_pid(engine)]
    [child] = leading.children()
    os.kill(child, signal.SIGKILL)
    wait_until(lambda: (c := leading.children()) and child not in c, timeout=10, message="a restarted worker")
    chaos.wait_ready(leading, 1)
    before = len(ticks())
    wait_until(lambda: len(ticks()) >= before + 2, timeout=10, message="ticks after the restart")

    # is_leader() is True in the worker processes of the leading supervisor only.
    current = leader_pid(engine)
    jobs_cron.leader_here.enqueue_many([(f"l{i}",) for i in range(12)])
    wait_until(lambda: len([r for r in chaos.ledger() if r[0] == "leader"]) == 12, timeout=10, message="leader checks")
    answers = {(int(row[3]), row[4]) for row in chaos.ledger() if row[0] == "leader"}
    assert answers == {(ppid, str(ppid == current)) for ppid, _ in answers}
    assert leader_pid(engine) == current  # (no change of leader meanwhile)

    for sup in sups.values():
        assert sup.stop(timeout=15) == 0, sup.output
    work()  # run the ticks enqueued just before the stop

    runs = Counter(row[3] for row in ticks())
    assert runs and all(count == 1 for count in runs.values()), [j for j, c in runs.items() if c > 1]
    slots: dict[str, list[int]] = {}
    for job_id in runs:
        _, name, slot = job_id.split(":")
        slots.setdefault(name, []).append(int(slot))
    every = sorted(slots["every-second"])
    assert every == list(range(every[0], every[-1] + 1, 1000)), "a missed tick was not caught up"
    even = sorted(slots["even-seconds"])
    assert even and all(slot % 2000 == 0 for slot in even)
    # Every tick enqueued was run: the state hash's last tick is the last run.
    state = engine.cron_state()
    assert int(state["every-second"]) == every[-1] and int(state["even-seconds"]) == even[-1]
    assert int(state["every-second:enq"]) == every[-1]
