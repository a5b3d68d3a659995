"""``bench.run.Workers.mirror_child``: the benchmark finds the database mirror among the supervisor's children by pid.

Real processes: a parent that forks three children at once (as the supervisor forks its workers
and the mirror, within one clock tick), the two "workers" named as the heartbeats would name them.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from bench.run import Workers

FORK_THREE = """
import os, sys, time
pids = []
for _ in range(3):
    pid = os.fork()
    if pid == 0:
        time.sleep(60)
        os._exit(0)
    pids.append(pid)
print(" ".join(map(str, pids)), flush=True)
time.sleep(60)
"""


@pytest.fixture
def supervisor():
    proc = subprocess.Popen([sys.executable, "-c", FORK_THREE], stdout=subprocess.PIPE, text=True, start_new_session=True)
    try:
        assert proc.stdout is not None
        children = [int(pid) for pid in proc.stdout.readline().split()]
        workers = Workers({}, Path("/dev/null"), 2, 1)
        workers.proc = proc
        deadline = time.monotonic() + 10
        while sorted(workers.children()) != sorted(children) and time.monotonic() < deadline:
            time.sleep(0.01)
        yield workers, children
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()


def test_the_mirror_is_the_child_no_heartbeat_names(supervisor):
    workers, children = supervisor
    first, second, third = children
    assert workers.mirror_child({first, third}) == second
    assert workers.mirror_child({second, third, 99999999}) == first  # a stale heartbeat's pid is no child


def test_no_single_candidate_is_an_error_not_a_guess(supervisor):
    workers, children = supervisor
    with pytest.raises(RuntimeError, match="expected one child besides the workers"):
        workers.mirror_child({children[0]})
    with pytest.raises(RuntimeError, match="expected one child besides the workers"):
        workers.mirror_child(set(children))
