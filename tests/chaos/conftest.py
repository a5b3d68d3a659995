"""Helpers for fault tests: real ``runworkers`` subprocesses, their output, the ledger."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from collections import Counter
from pathlib import Path

import pytest

from tests.chaos.invariants import assert_invariants
from tests.conftest import Workers, read_ledger
from tests.redis_server import wait_until

#: Every queue tests/settings.py configures.
QUEUES = ("default", "high", "low")


class Supervisor:
    """One ``manage.py runworkers`` subprocess whose output is read (and kept) as it comes."""

    def __init__(self, proc: subprocess.Popen[str], workers: Workers) -> None:
        self.proc = proc
        self.workers = workers
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def output(self) -> str:
        return "\n".join(self.lines)

    def children(self) -> list[int]:
        return self.workers.children(self.proc)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def signal(self, sig: int) -> None:
        os.kill(self.proc.pid, sig)

    def wait_output(self, text: str, timeout: float = 10, count: int = 1) -> None:
        deadline = time.monotonic() + timeout
        while self.output.count(text) < count:
            if not self.alive():
                self._reader.join(timeout=1)
                break
            if time.monotonic() > deadline:
                break
            time.sleep(0.02)
        assert self.output.count(text) >= count, f"{text!r} not printed {count} time(s); output:\n{self.output}"

    def wait_exit(self, timeout: float) -> int:
        """Wait for the supervisor to exit; return its exit code."""
        try:
            code = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"runworkers did not exit within {timeout} s; output:\n{self.output}") from None
        self._reader.join(timeout=5)
        return code

    def close(self) -> None:
        self._reader.join(timeout=5)
        if self.proc.stdout is not None:
            self.proc.stdout.close()

    def stop(self, timeout: float = 15) -> int:
        """SIGTERM the supervisor and return its exit code (it must exit within ``timeout``)."""
        if self.alive():
            self.signal(signal.SIGTERM)
        return self.wait_exit(timeout)


class Chaos:
    """What a fault test needs: start supervisors, read the ledger, check Redis."""

    def __init__(self, workers: Workers, r, engine, prefix: str, ledger_path: Path) -> None:
        self.workers = workers
        self.r = r
        self.engine = engine
        self.prefix = prefix
        self.ledger_path = ledger_path
        self.supervisors: list[Supervisor] = []

    def start(self, *args: str, ready: int | None = None, env: dict[str, str] | None = None) -> Supervisor:
        """Start ``runworkers`` with ``args``; with ``ready``, wait until that many worker processes beat."""
        sup = Supervisor(self.workers.start(*args, env=env), self.workers)
        self.supervisors.append(sup)
        if ready:
            self.wait_ready(sup, ready)
        return sup

    def wait_ready(self, sup: Supervisor, count: int, timeout: float = 20) -> list[int]:
        """Wait until ``count`` worker processes of ``sup`` run and wrote a heartbeat; return their pids."""

        def ready() -> list[int] | None:
            assert sup.alive(), f"runworkers exited with {sup.proc.returncode}; output:\n{sup.output}"
            children = sup.children()
            beating = self.beating_pids()
            if len(children) >= count and set(children) <= beating:
                return children
            return None

        return wait_until(ready, timeout, message=f"{count} worker processes of {sup.pid} to beat")

    def beating_pids(self) -> set[int]:
        return {info["pid"] for info in self.engine.workers().values()}

    # -- the ledger ---------------------------------------------------------------------------

    def ledger(self) -> list[list[str]]:
        return read_ledger(self.ledger_path)

    def counts(self, event: str) -> Counter[str]:
        """How many ``event`` lines ("start" / "end") each tag has."""
        return Counter(row[2] for row in self.ledger() if row[0] == event)

    def pids_of(self, event: str, tag: str) -> list[int]:
        return [int(row[1]) for row in self.ledger() if row[0] == event and row[2] == tag]

    def wait_ledger(self, event: str, tags, timeout: float = 20) -> None:
        """Wait until every tag of ``tags`` has at least one ``event`` line."""
        tags = set(tags)
        wait_until(
            lambda: tags <= set(self.counts(event)), timeout,
            message=f"{event!r} of {len(tags - set(self.counts(event)))} more of {len(tags)} job(s)",
        )

    # -- Redis --------------------------------------------------------------------------------

    def job(self, job_id: str, queue: str = "default") -> dict[str, str]:
        data = self.engine.get_job(queue, job_id)
        assert data is not None, f"job {job_id} is gone from Redis"
        return data

    def state(self, job_id: str, queue: str = "default") -> str:
        return self.job(job_id, queue)["s"]

    def wait_state(self, job_id: str, state: str, timeout: float = 20, queue: str = "default") -> dict[str, str]:
        wait_until(lambda: self.state(job_id, queue) == state, timeout, message=f"job {job_id} to be {state}")
        return self.job(job_id, queue)

    def check_invariants(self) -> None:
        for sup in self.supervisors:
            assert not sup.alive(), "check invariants only after the workers stopped"
        assert_invariants(self.r, self.prefix, QUEUES)


@pytest.fixture
def chaos(workers, r, engine, prefix, ledger_path):
    c = Chaos(workers, r, engine, prefix, ledger_path)
    yield c
    # Kill each process group, not only live supervisors: a test may leave orphaned workers.
    for sup in c.supervisors:
        try:
            os.killpg(sup.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        sup.proc.wait(timeout=10)
        sup.close()


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of process ``pid`` so far, in seconds (from /proc/<pid>/stat)."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()
    # Fields after the command name start at field 3 (state); utime and stime are fields 14 and 15.
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def pid_gone(pid: int) -> bool:
    """True when ``pid`` exited (a zombie waiting for its reaper counts as exited)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return True
    return stat[stat.rindex(")") + 2] in "ZX"
