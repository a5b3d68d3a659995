"""The long chaos tier: thousands of jobs under repeated faults, one table row per scenario.

Not part of the test run (pytest collects only ``test_*.py``). Run it with::

    .venv/bin/python -m tests.chaos.long --jobs 10000
    .venv/bin/python -m tests.chaos.long --jobs 2000 --scenarios worker-kills,redis-restart

It starts its own redis-server (AOF on), and for each scenario a fresh key prefix, a ledger
file outside Redis (one timestamped line per job start and end, written by the job itself),
and one ``manage.py runworkers`` supervisor with several worker processes. It enqueues the
jobs, injects the scenario's faults until every job completed, stops the workers (SIGTERM,
must exit 0), then checks:

* **lost**: jobs that are not ``completed`` in Redis, or never finished a run in the ledger;
* **duplicates**: jobs that started more than once (allowed only after a fault, so each
  must have been recovered that many times: ``starts <= 1 + rec``; otherwise "unexplained");
* one attempt counted per job (``a == 1``), and the Redis invariants of
  :mod:`tests.chaos.invariants` (state sets, events, lease fields).

Scenarios:

``worker-kills``     SIGKILL a random worker process every 2 s.
``redis-restart``    once 30 % of the jobs completed, SIGKILL redis-server (``appendfsync always``)
                     and start it again on the same files.
``kills-and-restart``  both at once: a worker SIGKILL every 2 s and the Redis kill and restart.
``redis-kill-everysec``  the Redis kill and restart with ``appendfsync everysec`` (the usual
                     setting): a process crash, not a machine crash, so the kernel keeps the writes.
``script-flush``     ``SCRIPT FLUSH`` every 20 ms.
``dropped-replies``  workers reach Redis through :class:`tests.chaos.proxy.DropProxy`, which
                     loses the reply of one script call (after it ran) every 50 ms.

Recovery time: for ``worker-kills``, the longest time from a kill until every job the killed
process had started was running again elsewhere; for ``redis-restart``, from the kill until a
job started again (``kills-and-restart``: the longer of the two); for the storms, the longest
pause between two job completions.

Prints progress on stderr and a Markdown table on stdout; exits 1 if any check failed.
"""

from __future__ import annotations

import argparse
import itertools
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SCENARIOS = ("worker-kills", "redis-restart", "kills-and-restart", "redis-kill-everysec", "script-flush", "dropped-replies")
QUEUES = ("default", "high", "low")
KILL_EVERY = 2.0
FLUSH_EVERY = 0.02
DROP_EVERY = 0.05


@dataclass
class Row:
    scenario: str
    jobs: int
    faults: int = 0
    lost: int = 0
    duplicates: int = 0
    unexplained: int = 0
    bad_attempts: int = 0
    violations: list[str] = field(default_factory=list)
    recovery: float | None = None
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not (self.lost or self.unexplained or self.bad_attempts or self.violations)


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


class Scenario:
    """One scenario's prefix, ledger, supervisor and checks."""

    def __init__(self, name: str, server, opts: argparse.Namespace, workdir: Path) -> None:
        self.name = name
        self.server = server
        self.opts = opts
        self.prefix = "long" + uuid.uuid4().hex[:8]
        self.ledger = workdir / f"{name}.ledger"
        self.output = workdir / f"{name}.log"
        self.faults: list[tuple[float, str, int]] = []  # (wall time, kind, pid)
        self.sup: subprocess.Popen[bytes] | None = None
        #: How many faults were injected so far (for the progress lines).
        self.fault_count: Callable[[], int] = lambda: len(self.faults)

    # -- settings and Redis -------------------------------------------------------------------

    def settings(self):
        from django.conf import settings
        from django.test import override_settings

        return override_settings(DJANGO_JOBS={**settings.DJANGO_JOBS, "REDIS_URL": self.server.url, "PREFIX": self.prefix})

    def engine(self):
        from django_jobs.engine import get_engine

        return get_engine()

    def completed(self) -> int | None:
        from django_jobs.exceptions import DjangoJobsError

        try:
            return self.engine().counts("default")["completed"]
        except DjangoJobsError:
            return None  # Redis is restarting

    # -- workers ------------------------------------------------------------------------------

    def start_workers(self, url: str) -> None:
        env = {
            **os.environ, "DJJ_REDIS_URL": url, "DJJ_PREFIX": self.prefix, "DJJ_LEDGER": str(self.ledger),
            "DJANGO_SETTINGS_MODULE": "tests.chaos.long_settings",
        }
        cmd = [sys.executable, "-m", "django", "runworkers", f"--processes={self.opts.processes}",
               f"--threads={self.opts.threads}", "--grace=5"]
        with open(self.output, "ab") as out:
            self.sup = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)

    def children(self) -> list[int]:
        assert self.sup is not None
        out = subprocess.run(["pgrep", "-P", str(self.sup.pid)], capture_output=True, text=True).stdout
        return [int(p) for p in out.split()]

    def stop_workers(self) -> int:
        assert self.sup is not None
        self.sup.send_signal(signal.SIGTERM)
        try:
            return self.sup.wait(timeout=40)
        except subprocess.TimeoutExpired:
            os.killpg(self.sup.pid, signal.SIGKILL)
            self.sup.wait(timeout=10)
            return -9

    # -- the run ------------------------------------------------------------------------------

    def run(self, inject: Callable[[Scenario, float, int], None], *, url: str | None = None,
            before: Callable[[], None] | None = None, after: Callable[[], None] | None = None) -> Row:
        from django_jobs.engine import reset_engine

        total = self.opts.jobs
        row = Row(self.name, total)
        with self.settings():
            reset_engine()
            from tests.chaos.long_jobs import timed

            log(f"[{self.name}] enqueueing {total:,} jobs (prefix {self.prefix})")
            results = timed.enqueue_many([(f"j{i}", self.opts.job_seconds) for i in range(total)])
            ids = {f"j{i}": r.id for i, r in enumerate(results)}
            if before:
                before()
            started = time.monotonic()
            self.start_workers(url or self.server.url)
            deadline = started + self.opts.timeout
            last_log = 0.0
            done = 0
            while True:
                now = time.monotonic()
                count = self.completed()
                if count is not None:
                    done = count
                if done >= total:
                    break
                if now > deadline:
                    log(f"[{self.name}] timed out after {self.opts.timeout:.0f} s with {done:,}/{total:,} completed")
                    break
                inject(self, now - started, done)
                if now - last_log >= 2.0:
                    last_log = now
                    log(f"[{self.name}] {now - started:6.1f} s  completed {done:,}/{total:,}  faults {self.fault_count()}")
                time.sleep(0.05)
            row.seconds = time.monotonic() - started
            if after:
                after()
            code = self.stop_workers()
            if code != 0:
                row.violations.append(f"runworkers exited with {code}")
            log(f"[{self.name}] done in {row.seconds:.1f} s; checking")
            self.check(row, ids)
            self.clean()
            reset_engine()
        return row

    # -- the checks ---------------------------------------------------------------------------

    def read_ledger(self) -> tuple[dict[str, list[tuple[float, int]]], dict[str, list[tuple[float, int]]]]:
        starts: dict[str, list[tuple[float, int]]] = defaultdict(list)
        ends: dict[str, list[tuple[float, int]]] = defaultdict(list)
        if self.ledger.exists():
            for line in self.ledger.read_text().splitlines():
                parts = line.split("\t")
                if len(parts) != 4:
                    continue
                event, pid, tag, when = parts
                (starts if event == "start" else ends)[tag].append((float(when), int(pid)))
        return starts, ends

    def check(self, row: Row, ids: dict[str, str]) -> None:
        from tests.chaos.invariants import event_violations, field_violations, invariant_violations

        engine = self.engine()
        client = engine.client
        keys = engine.keys("default")
        starts, ends = self.read_ledger()
        tags = list(ids)
        with client.pipeline(transaction=False) as pipe:
            for tag in tags:
                pipe.hmget(keys.job_prefix + ids[tag], "s", "rec", "a")
            rows = pipe.execute()
        for tag, (state, rec, attempts) in zip(tags, rows):
            if state != "completed" or not ends.get(tag):
                row.lost += 1
                if row.lost <= 5:
                    log(f"[{self.name}] LOST {tag} ({ids[tag]}): state {state!r}, ledger starts {len(starts.get(tag, []))}")
                continue
            runs = len(starts[tag])
            if runs > 1:
                row.duplicates += 1
            if runs > 1 + int(rec or 0):
                row.unexplained += 1
            if attempts != "1":
                row.bad_attempts += 1
        row.violations += invariant_violations(client, self.prefix, QUEUES)
        row.violations += event_violations(client, self.prefix, QUEUES)
        row.violations += field_violations(client, self.prefix, QUEUES)
        if row.recovery is None:
            row.recovery = self.recovery(starts, ends)

    def clean(self) -> None:
        """Delete this scenario's keys, so the next Redis restart loads the same amount of data."""
        client = self.engine().client
        batch: list[str] = []
        for key in client.scan_iter(match=self.prefix + ":*", count=1000):
            batch.append(key)
            if len(batch) >= 1000:
                client.unlink(*batch)
                batch.clear()
        if batch:
            client.unlink(*batch)
        try:
            client.bgrewriteaof()  # compact the append-only file the next restart loads
        except Exception as exc:  # noqa: BLE001 - e.g. a rewrite already runs: only slower restarts
            log(f"[{self.name}] BGREWRITEAOF: {exc}")

    def recovery(self, starts, ends) -> float | None:
        """Longest pause between two job completions (the storms' recovery time)."""
        times = sorted(t for runs in ends.values() for t, _ in runs)
        if len(times) < 2:
            return None
        return max(b - a for a, b in itertools.pairwise(times))


# -- the scenarios ---------------------------------------------------------------------------


def killer() -> Callable[[Scenario, float, int], None]:
    """Return an injector that SIGKILLs a random worker process every :data:`KILL_EVERY` s."""
    state = {"next": KILL_EVERY}

    def inject(sc: Scenario, elapsed: float, done: int) -> None:
        if elapsed < state["next"]:
            return
        state["next"] = elapsed + KILL_EVERY
        children = sc.children()
        if not children:
            return
        victim = random.choice(children)
        try:
            os.kill(victim, signal.SIGKILL)
        except ProcessLookupError:
            return
        sc.faults.append((time.time(), "kill", victim))

    return inject


def kill_recovery(sc: Scenario) -> float:
    """Longest time from a worker kill until every job the killed process had started ran again."""
    starts, ends = sc.read_ledger()
    worst = 0.0
    for when, kind, pid in sc.faults:
        if kind != "kill":
            continue
        ended_there = {tag for tag, runs in ends.items() if any(p == pid for _, p in runs)}
        for tag, runs in starts.items():
            if tag in ended_there or not any(p == pid and t <= when for t, p in runs):
                continue
            later = [t for t, p in runs if t > when and p != pid]
            if later:
                worst = max(worst, min(later) - when)
    return worst


def worker_kills(sc: Scenario) -> Row:
    row = sc.run(killer())
    row.faults = len(sc.faults)
    row.recovery = kill_recovery(sc)
    return row


def redis_restart(sc: Scenario, *, with_kills: bool = False, fsync: str = "always") -> Row:
    state: dict[str, float] = {}
    kill = killer() if with_kills else None

    def always() -> None:
        with sc.server.client() as c:
            c.config_set("appendfsync", fsync)

    def inject(sc: Scenario, elapsed: float, done: int) -> None:
        if kill is not None:
            kill(sc, elapsed, done)
        if "killed" in state or done < sc.opts.jobs * 0.3:
            return
        assert sc.server.proc is not None
        pid = sc.server.proc.pid
        state["killed"] = time.time()
        sc.server.kill()
        sc.server.start()  # same port and directory: it loads the append-only file
        state["up"] = time.time()
        always()
        sc.faults.append((state["killed"], "redis-kill", pid))
        log(f"[{sc.name}] redis-server (appendfsync {fsync}) SIGKILLed and restarted in {state['up'] - state['killed']:.2f} s")

    def everysec() -> None:
        with sc.server.client() as c:
            c.config_set("appendfsync", "everysec")

    row = sc.run(inject, before=always, after=everysec)
    row.faults = len(sc.faults)
    if "killed" in state:
        starts, _ = sc.read_ledger()
        after = [t for runs in starts.values() for t, _ in runs if t > state["up"]]
        row.recovery = min(after) - state["killed"] if after else None
    if kill is not None and row.recovery is not None:
        row.recovery = max(row.recovery, kill_recovery(sc))
    return row


def kills_and_restart(sc: Scenario) -> Row:
    return redis_restart(sc, with_kills=True)


def redis_kill_everysec(sc: Scenario) -> Row:
    return redis_restart(sc, fsync="everysec")


def script_flush(sc: Scenario) -> Row:
    stop = threading.Event()

    def loop() -> None:
        with sc.server.client() as c:
            while not stop.is_set():
                c.script_flush()
                sc.faults.append((time.time(), "flush", 0))
                stop.wait(FLUSH_EVERY)

    thread = threading.Thread(target=loop, daemon=True)

    def after() -> None:
        stop.set()
        thread.join(timeout=5)

    row = sc.run(lambda *_: None, before=thread.start, after=after)
    row.faults = len(sc.faults)
    return row


def dropped_replies(sc: Scenario) -> Row:
    from tests.chaos.proxy import DropProxy

    proxy = DropProxy(sc.server.port).start()
    sc.fault_count = lambda: proxy.total_dropped
    stop = threading.Event()

    def loop() -> None:
        while not stop.is_set():
            proxy.drop_script_replies(1)
            stop.wait(DROP_EVERY)

    thread = threading.Thread(target=loop, daemon=True)

    def after() -> None:
        stop.set()
        thread.join(timeout=5)
        proxy.drop_script_replies(0)

    try:
        row = sc.run(lambda *_: None, url=proxy.url, before=thread.start, after=after)
    finally:
        proxy.close()
    row.faults = proxy.total_dropped
    return row


RUNNERS = {"worker-kills": worker_kills, "redis-restart": redis_restart, "kills-and-restart": kills_and_restart,
           "redis-kill-everysec": redis_kill_everysec, "script-flush": script_flush, "dropped-replies": dropped_replies}


def table(rows: list[Row], opts: argparse.Namespace) -> str:
    lines = [
        "| scenario | jobs | faults injected | lost | duplicates | recovery time | run time | checks |",
        "|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for row in rows:
        recovery = f"{row.recovery:.2f} s" if row.recovery is not None else "n/a"
        checks = "ok" if row.ok else (
            f"FAILED: {row.unexplained} unexplained duplicates, {row.bad_attempts} bad attempt counts, "
            f"{len(row.violations)} invariant violations"
        )
        lines.append(f"| {row.scenario} | {row.jobs:,} | {row.faults:,} | {row.lost} | {row.duplicates} | {recovery} "
                     f"| {row.seconds:.1f} s | {checks} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.chaos.long", description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=10_000, help="jobs per scenario (default 10,000)")
    parser.add_argument("--scenarios", default=",".join(SCENARIOS), help=f"comma-separated, from: {', '.join(SCENARIOS)}")
    parser.add_argument("--processes", type=int, default=4, help="worker processes (default 4)")
    parser.add_argument("--threads", type=int, default=4, help="threads per worker process (default 4)")
    parser.add_argument("--job-seconds", type=float, default=0.02, help="how long each job sleeps (default 0.02)")
    parser.add_argument("--timeout", type=float, default=600.0, help="give up on a scenario after this many seconds")
    parser.add_argument("--seed", type=int, default=None, help="random seed (which worker is killed)")
    opts = parser.parse_args(argv)
    names = [n.strip() for n in opts.scenarios.split(",") if n.strip()]
    unknown = [n for n in names if n not in RUNNERS]
    if unknown:
        parser.error(f"unknown scenario(s) {', '.join(unknown)}; choose from {', '.join(SCENARIOS)}")
    random.seed(opts.seed)

    sys.path.insert(0, str(ROOT))
    from tests.redis_server import RedisServer

    server = RedisServer(appendonly=True)
    server.start()
    os.environ["DJJ_REDIS_URL"] = server.url
    os.environ["DJANGO_SETTINGS_MODULE"] = "tests.chaos.long_settings"
    import django

    django.setup()
    rows: list[Row] = []
    try:
        with tempfile.TemporaryDirectory(prefix="djj-long-") as tmp:
            for name in names:
                sc = Scenario(name, server, opts, Path(tmp))
                row = RUNNERS[name](sc)
                rows.append(row)
                log(f"[{name}] {'ok' if row.ok else 'FAILED'}: lost {row.lost}, duplicates {row.duplicates}, "
                    f"faults {row.faults}")
                for problem in row.violations[:10]:
                    log(f"[{name}]   {problem}")
                if not row.ok:
                    log(f"[{name}] worker output (last 30 lines):")
                    for line in sc.output.read_text(errors="replace").splitlines()[-30:]:
                        log("    " + line)
    finally:
        server.stop()
    print(f"\n{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, `{' '.join(['python -m tests.chaos.long', *(argv if argv is not None else sys.argv[1:])])}`, "
          f"{opts.processes} processes x {opts.threads} threads, jobs of {opts.job_seconds} s, {os.cpu_count()} CPUs\n")
    print(table(rows, opts))
    return 0 if all(row.ok for row in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
