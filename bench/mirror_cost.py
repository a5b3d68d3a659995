"""What the database mirror costs a saturated drain (issue 17), ``python -m bench.mirror_cost [[LABEL=]DIR ...]``.

The drain of ``python -m bench --mirror`` (``runworkers`` 2 x 8, 20,000 no-op jobs, completed
jobs kept, the mirror writing a SQLite file in WAL mode), taken apart. For each checkout given
(``LABEL=DIR``, e.g. ``base=/tmp/base`` for a ``git archive`` of main; the workers and the mirror
run that checkout's code, the enqueues this one's) and this one, each round drains once with
``--no-mirror`` and once with the mirror, the variants in a rotating order (same run, alternated).
Per drain:

- ``rate``: jobs/s until the last job finished (what the mirror costs the drain);
- ``workers``, ``redis``, ``mirror``: CPU per job (us) of the worker processes, of Redis
  (``INFO cpu``) and of the mirror process while the jobs drained;
- ``+redis``, ``+mirror``: the same after the drain, until the mirror has written every row
  (the mirror's catch-up: the whole bill of a job, not only what the drain paid);
- ``cmds``: Redis commands per job (``INFO commandstats``, the commands scripts run included,
  the benchmark's own polling excluded), over the drain and the catch-up;
- ``catchup``: seconds from the drain's end until the mirror wrote the last row;
- ``pss`` / ``rss``: the mirror process' memory (MB) once caught up (``/proc/PID/smaps_rollup``);
  with ``--smaps`` also its PSS by kind of mapping (``heap``: the C heap, ``anon``: Python's
  arenas and other anonymous memory, ``file``).

``--commands``: also print, per variant, each command's calls per job (the last round's).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.cli import parse_args
from bench.run import (
    CLK_TCK,
    QUEUE,
    Bench,
    Workers,
    command_calls,
    cpu_ticks,
    redis_cpu_s,
    wait_for,
    worker_pids,
)

OWN = {"zcount", "info", "multi", "exec", "hdel", "ltrim", "flushall", "config|resetstat", "select", "client|setinfo",
       "ping", "hello"}


def smaps(pid: int) -> tuple[float, float]:
    """(PSS, RSS) of ``pid`` in MB."""
    pss = rss = 0.0
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        if line.startswith("Pss:"):
            pss = int(line.split()[1]) / 1024
        elif line.startswith("Rss:"):
            rss = int(line.split()[1]) / 1024
    return pss, rss


def pss_by_kind(pid: int) -> dict[str, float]:
    """The PSS (MB) of ``pid`` by kind of mapping: ``heap`` (the C heap), ``anon`` (other anonymous
    memory: Python's arenas, large allocations), ``file`` (code, ``-shm`` and other mapped files)."""
    kinds = {"heap": 0.0, "anon": 0.0, "file": 0.0}
    kind = "anon"
    for line in Path(f"/proc/{pid}/smaps").read_text().splitlines():
        head = line.split(None, 5)
        if len(head) >= 5 and "-" in head[0] and not head[0].endswith(":"):
            name = head[5] if len(head) > 5 else ""
            kind = "heap" if name == "[heap]" else "file" if name.startswith("/") else "anon"
        elif line.startswith("Pss:"):
            kinds[kind] += int(line.split()[1]) / 1024
    return kinds


class CheckoutWorkers(Workers):
    """``runworkers`` run from another checkout (its directory first on the path)."""

    def __init__(self, root: Path, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.root = root

    def start(self) -> None:
        import subprocess

        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                self.args, cwd=self.root, env=self.env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
            )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkouts", nargs="*", help="[LABEL=]DIR of other checkouts (default: this one only)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("-n", "--jobs", type=int, default=20_000)
    parser.add_argument("--no-off", action="store_true", help="skip the --no-mirror drains")
    parser.add_argument("--commands", action="store_true", help="print each command's calls per job")
    parser.add_argument("--smaps", action="store_true", help="also the mirror's PSS by kind of mapping (heap, anon, file)")
    args = parser.parse_args()
    here = Path(__file__).resolve().parent.parent
    roots: list[tuple[str, Path]] = [("this", here)]
    for spec in args.checkouts:
        label, _, path = spec.rpartition("=")
        roots.append((label or Path(path).name, Path(path).resolve()))
    bench = Bench(parse_args(["--mirror", "--mirror-only"]))
    bench.setup()
    from django.core.management import call_command
    from django.db import connection

    from bench.jobs import noop
    from django_jobs.engine import get_engine
    from django_jobs.models import JobRecord

    call_command("migrate", verbosity=0)
    with connection.cursor() as cursor:
        cursor.execute("PRAGMA journal_mode=WAL")
    variants = [(label, root, on) for label, root in roots for on in ((True,) if args.no_off else (False, True))]
    figures: dict[str, list[dict[str, float]]] = {}
    commands: dict[str, dict[str, tuple[float, float]]] = {}
    n = args.jobs
    p = bench.args.processes
    engine = get_engine()
    try:
        for rnd in range(args.rounds):
            k = rnd % len(variants)
            order = variants[k:] + variants[:k]
            if rnd % 2:
                order.reverse()
            for label, root, on in order:
                name = f"{label} {'mirror' if on else 'off'}"
                bench.flush()
                JobRecord.objects.all().delete()
                env = bench.env("1000000")
                env["PYTHONPATH"] = os.pathsep.join([str(root), str(here)])
                bench.workers = CheckoutWorkers(root, env, bench.workdir / "workers.log", p, bench.args.threads,
                                                () if on else ("--no-mirror",))
                bench.workers.start()
                wait_for(lambda: len(engine.workers()) >= p, 30, "worker heartbeats", 0.05)
                for _ in range(p * 4):
                    noop.enqueue()
                wait_for(lambda: bench.pending() == 0, 30, "warm-up jobs")
                mirror_pid = 0
                if on:
                    wait_for(lambda: JobRecord.objects.count() >= p * 4, 30, "the mirror's first rows", 0.05)
                    mirror_pid = bench.workers.mirror_child(worker_pids())
                workers = [pid for pid in bench.workers.children() if pid != mirror_pid]
                engine.pause(QUEUE)
                for start in range(0, n, 1000):
                    noop.enqueue_many([()] * min(1000, n - start))
                load = os.getloadavg()[0]
                w0 = {pid: cpu_ticks(pid) for pid in workers}
                m0 = cpu_ticks(mirror_pid) if on else 0
                r0 = redis_cpu_s(bench.r)
                c0 = command_calls(bench.r)
                t0 = time.perf_counter()
                engine.resume(QUEUE)
                wait_for(lambda: bench.pending() == 0, 300, f"{n:,} jobs to finish", 0.002)
                elapsed = time.perf_counter() - t0
                w1 = sum(cpu_ticks(pid) - w0[pid] for pid in workers) / CLK_TCK
                m1 = (cpu_ticks(mirror_pid) - m0) / CLK_TCK if on else 0.0
                r1 = redis_cpu_s(bench.r) - r0
                row = {"load": load, "rate": n / elapsed, "workers": w1 / n * 1e6, "redis": r1 / n * 1e6, "mirror": m1 / n * 1e6}
                if on:
                    total = n + p * 4
                    wait_for(lambda total=total: JobRecord.objects.filter(state="completed").count() >= total, 300,
                             "the mirror to catch up", 0.05)
                    row["catchup"] = time.perf_counter() - t0 - elapsed  # seconds from the drain's end to the last row
                    time.sleep(0.3)  # its last acknowledgement
                    row["+mirror"] = (cpu_ticks(mirror_pid) - m0) / CLK_TCK / n * 1e6 - row["mirror"]
                    row["+redis"] = (redis_cpu_s(bench.r) - r0) / n * 1e6 - row["redis"]
                    row["pss"], row["rss"] = smaps(mirror_pid)
                    if args.smaps:
                        row.update(pss_by_kind(mirror_pid))
                c1 = command_calls(bench.r)
                per = {cmd: (c - c0.get(cmd, (0, 0))[0]) / n for cmd, (c, _) in c1.items() if cmd not in OWN}
                usec = {cmd: (u - c0.get(cmd, (0, 0))[1]) / n for cmd, (_, u) in c1.items() if cmd not in OWN}
                row["cmds"] = sum(per.values())
                commands[name] = {cmd: (v, usec[cmd]) for cmd, v in per.items() if v > 0.0005}
                bench.stop_workers()
                figures.setdefault(name, []).append(row)
                print(f"round {rnd + 1} {name:14s} " + "  ".join(f"{key} {value:,.1f}" for key, value in row.items()),
                      flush=True)
    finally:
        bench.cleanup()
    print(f"\nmedians over {args.rounds} rounds ({n:,} jobs a drain):")
    keys = ["rate", "workers", "redis", "mirror", "+redis", "+mirror", "catchup", "cmds", "pss", "rss"] + ["heap", "anon", "file"] * args.smaps
    print(f"{'':16s}" + "".join(f"{key:>10s}" for key in keys))
    for name, rows in figures.items():
        print(f"{name:16s}" + "".join(f"{statistics.median(r[key] for r in rows):10,.1f}" if key in rows[0] else f"{'-':>10s}"
                                      for key in keys))
    for label, _ in roots:
        off, on = figures.get(f"{label} off"), figures.get(f"{label} mirror")
        if off and on:
            lost = [1 - b["rate"] / a["rate"] for a, b in zip(off, on, strict=True)]
            print(f"{label}: throughput lost to the mirror per round " + ", ".join(f"{x * 100:.1f} %" for x in lost)
                  + f" (median {statistics.median(lost) * 100:.1f} %)")
    if args.commands:
        for name, per in commands.items():
            print(f"\n{name}: commands per job (calls, usec; EVALSHA's usec includes its commands')")
            for cmd, (v, u) in sorted(per.items(), key=lambda kv: -kv[1][1]):
                print(f"  {cmd:22s} {v:8.3f} {u:8.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
