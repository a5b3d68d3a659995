"""``python -m bench --peers``: django_jobs side by side with Huey, Dramatiq and Celery.

Every library runs, in the same run and against the same bench-started redis-server:

* the same job bodies (``incr``: one Redis ``INCR``; ``stamp``: one ``RPUSH`` of its start delay),
  defined in ``bench/jobs.py`` and ``bench/peer_*.py``;
* the same 16 slots: 2 processes x 8 threads (``--processes``/``--threads``);
* fire-and-forget: django_jobs with ``--no-mirror`` and ``KEEP_COMPLETED={"AGE": 0}``, the
  peers without a result backend;
* repetitions interleaved between libraries (the order rotates each repetition), so machine
  noise falls on all alike; every figure is the median of the repetitions.

One repetition of one library: FLUSHALL; ``--jobs`` single enqueue calls from one thread with no
worker running (timed: enqueue jobs/s; Redis CPU and commands of the enqueue counted); the
workers start on that backlog and drain it, the steady window being from 10 % to 90 % of the
counter (drain jobs/s, worker CPU, Redis CPU and commands per job); ``--latency-jobs`` stamp jobs
into the now idle workers, one every ~5 ms (start latency); RSS and PSS summed over the worker
process tree; workers stopped; bulk enqueue where the library has a bulk call.
"""

from __future__ import annotations

import argparse
import datetime
import importlib
import importlib.metadata
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis

from bench.counter import COUNTER_KEY, LATENCY_KEY
from bench.run import (
    CLK_TCK,
    ROOT,
    PhaseTimeout,
    RedisServer,
    _cpu_model,
    command_calls,
    cpu_ticks,
    percentile,
    redis_cpu_s,
    wait_for,
)

#: Commands the benchmark itself sends while measuring (never counted as the library's).
OWN_COMMANDS = {"info", "config", "flushall", "ping", "client", "hello", "select"}


# -- process trees --------------------------------------------------------------------------


def _ppid_map() -> dict[int, int]:
    parents = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            parents[int(entry)] = int(stat.rsplit(")", 1)[1].split()[1])
    return parents


def process_tree(roots: list[int]) -> list[int]:
    """Return ``roots`` and all their descendants."""
    parents = _ppid_map()
    tree, frontier = list(roots), list(roots)
    while frontier:
        children = [pid for pid, ppid in parents.items() if ppid in frontier and pid not in tree]
        tree += children
        frontier = children
    return tree


def memory_kb(pid: int) -> tuple[int, int]:
    """Return (RSS, PSS) of ``pid`` in kB, from /proc/<pid>/smaps_rollup."""
    rss = pss = 0
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Rss:"):
                rss = int(line.split()[1])
            elif line.startswith("Pss:"):
                pss = int(line.split()[1])
    except OSError:
        pass
    return rss, pss


def tree_ticks(pids: list[int]) -> int:
    total = 0
    for pid in pids:
        try:
            total += cpu_ticks(pid)
        except OSError:
            pass
    return total


# -- the libraries --------------------------------------------------------------------------


class Library:
    """How one library enqueues the benchmark's jobs and starts its workers."""

    name = ""
    dist = ""  # the distribution whose version is reported
    cwd = ROOT  # where its worker processes start

    def __init__(self, args: argparse.Namespace, env: dict[str, str]) -> None:
        self.args = args
        self.env = env

    def version(self) -> str:
        return importlib.metadata.version(self.dist)

    def label(self) -> str:
        return f"{self.name} {self.version()}"

    def load(self) -> None:
        """Import the job definitions in the benchmark process."""

    def enqueue(self) -> None:
        raise NotImplementedError

    def enqueue_stamp(self, enqueued_ns: int) -> None:
        raise NotImplementedError

    def enqueue_bulk(self, count: int) -> None | bool:
        """Enqueue ``count`` jobs with the library's bulk call; False if it has none."""
        return False

    def commands(self) -> list[list[str]]:
        """The worker processes to start (each command one process tree)."""
        raise NotImplementedError


class DjangoJobs(Library):
    name = "django_jobs"
    dist = "django-jobs-redis"

    def load(self) -> None:
        import django

        django.setup()
        from bench import jobs

        self.jobs = jobs

    def enqueue(self) -> None:
        self.jobs.incr.enqueue()

    def enqueue_stamp(self, enqueued_ns: int) -> None:
        self.jobs.stamp.enqueue(enqueued_ns)

    def enqueue_bulk(self, count: int) -> None | bool:
        for start in range(0, count, 1000):
            self.jobs.incr.enqueue_many([()] * min(1000, count - start))
        return None

    def commands(self) -> list[list[str]]:
        return [[sys.executable, "-m", "django", "runworkers", "--processes", str(self.args.processes),
                 "--threads", str(self.args.threads), "--no-mirror"]]


class Huey(Library):
    name = "Huey"
    dist = "huey"

    def load(self) -> None:
        from bench import peer_huey

        self.mod = peer_huey

    def enqueue(self) -> None:
        self.mod.incr()

    def enqueue_stamp(self, enqueued_ns: int) -> None:
        self.mod.stamp(enqueued_ns)

    def commands(self) -> list[list[str]]:
        # Huey's consumer is one process with N worker threads: one consumer per process.
        consumer = str(Path(sys.executable).with_name("huey_consumer"))
        return [[consumer, "bench.peer_huey.huey", "-w", str(self.args.threads), "-k", "thread", "-q"]
                for _ in range(self.args.processes)]


class Dramatiq(Library):
    name = "Dramatiq"
    dist = "dramatiq"

    def load(self) -> None:
        from bench import peer_dramatiq

        self.mod = peer_dramatiq

    def enqueue(self) -> None:
        self.mod.incr.send()

    def enqueue_stamp(self, enqueued_ns: int) -> None:
        self.mod.stamp.send(enqueued_ns)

    def commands(self) -> list[list[str]]:
        return [[sys.executable, "-m", "dramatiq", "bench.peer_dramatiq", "--processes", str(self.args.processes),
                 "--threads", str(self.args.threads)]]


class Celery(Library):
    name = "Celery"
    dist = "celery"

    def load(self) -> None:
        from bench import peer_celery

        self.mod = peer_celery

    def enqueue(self) -> None:
        self.mod.incr.delay()

    def enqueue_stamp(self, enqueued_ns: int) -> None:
        self.mod.stamp.delay(enqueued_ns)

    def enqueue_bulk(self, count: int) -> None | bool:
        from celery import group

        for start in range(0, count, 1000):
            group(self.mod.incr.s() for _ in range(min(1000, count - start))).apply_async()
        return None

    def commands(self) -> list[list[str]]:
        # The threads pool: one worker process with N threads, one worker per process.
        return [[sys.executable, "-m", "celery", "-A", "bench.peer_celery", "worker", "--pool", "threads",
                 "--concurrency", str(self.args.threads), "-n", f"w{i}@%h", "--without-gossip",
                 "--without-mingle", "--without-heartbeat", "--loglevel", "WARNING"]
                for i in range(self.args.processes)]


class DjangoJobsAt(DjangoJobs):
    """django_jobs' workers from another checkout (``--compare PATH``); enqueues come from this one."""

    def __init__(self, args: argparse.Namespace, env: dict[str, str], path: Path, workdir: Path) -> None:
        # This checkout's ``bench`` package (settings and jobs) with the other checkout's django_jobs:
        # the workers start in a folder holding only a link to ``bench`` (``python -m`` puts the
        # current folder first on sys.path), then ``path``.
        shim = workdir / "compare-path"
        shim.mkdir(exist_ok=True)
        if not (shim / "bench").exists():
            (shim / "bench").symlink_to(ROOT / "bench")
        env = {**env, "PYTHONPATH": os.pathsep.join([str(shim), str(path)])}
        super().__init__(args, env)
        self.cwd = shim
        rev = subprocess.run(["git", "-C", str(path), "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                             check=False).stdout.strip()
        self.name = f"django_jobs@{rev or path.name}"

    def load(self) -> None:
        from bench import jobs

        self.jobs = jobs


LIBRARIES: dict[str, type[Library]] = {"django_jobs": DjangoJobs, "huey": Huey, "dramatiq": Dramatiq, "celery": Celery}


# -- one repetition -------------------------------------------------------------------------


@dataclass
class Figures:
    """One repetition of one library."""

    enqueue_rate: float = 0.0
    drain_rate: float = 0.0
    latency_p50: float = 0.0
    latency_p99: float = 0.0
    rss_mb: float = 0.0
    pss_mb: float = 0.0
    redis_cpu_us: float = 0.0
    redis_cpu_enqueue_us: float = 0.0
    commands: float = 0.0
    commands_enqueue: float = 0.0
    worker_cpu_us: float = 0.0
    redis_bytes: float = 0.0
    bulk_rate: float | None = None
    command_detail: dict[str, float] = field(default_factory=dict)


class Workers:
    """The worker processes of one library (one or more process trees)."""

    def __init__(self, commands: list[list[str]], env: dict[str, str], log: Path, cwd: Path = ROOT) -> None:
        self.commands, self.env, self.log, self.cwd = commands, env, log, cwd
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self) -> None:
        with self.log.open("ab") as out:
            for command in self.commands:
                self.procs.append(subprocess.Popen(command, cwd=self.cwd, env=self.env, stdout=out, stderr=subprocess.STDOUT,
                                                   start_new_session=True))

    def tree(self) -> list[int]:
        return process_tree([p.pid for p in self.procs])

    def check(self) -> None:
        for proc in self.procs:
            if proc.poll() is not None:
                tail = self.log.read_text(errors="replace")[-1500:]
                raise RuntimeError(f"a worker process exited with {proc.returncode}; the end of its log:\n{tail}")

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 20
        for proc in self.procs:
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
            try:
                os.killpg(proc.pid, signal.SIGKILL)  # whatever is left of the group
            except ProcessLookupError:
                pass
            if proc.poll() is None:
                proc.wait(timeout=5)
        self.procs = []


class PeerBench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.workdir = Path(tempfile.mkdtemp(prefix="djj-bench-peers-"))
        self.server = RedisServer(self.workdir)
        self.r: redis.Redis | None = None
        self.libraries: list[Library] = []
        self.skipped: dict[str, str] = {}
        self.results: dict[str, list[Figures]] = {}
        self.info: dict[str, Any] = {}
        self.workers: Workers | None = None
        self.gets = 0  # the benchmark's own GETs of the counter (subtracted from the commands)

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            {
                "DJANGO_SETTINGS_MODULE": "bench.settings",
                "DJJ_BENCH_REDIS_URL": self.server.url(False),
                "DJJ_BENCH_PREFIX": "bench",
                "DJJ_BENCH_LOG_LEVEL": "WARNING",
                "DJJ_BENCH_KEEP_COMPLETED": "none",
                "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH", "")])),
            }
        )
        return env

    def setup(self) -> None:
        self.server.start()
        env = self.env()
        os.environ.update(env)
        self.r = self.server.client()
        for key in self.args.libraries:
            library = LIBRARIES[key](self.args, env)
            try:
                library.load()
                library.version()
            except (ImportError, importlib.metadata.PackageNotFoundError) as exc:
                self.skipped[library.name] = f"not installed ({exc}); pip install -e '.[bench]'"
                continue
            self.libraries.append(library)
            self.results[library.name] = []
            if key == "django_jobs" and self.args.compare:
                other = DjangoJobsAt(self.args, env, Path(self.args.compare).resolve(), self.workdir)
                other.load()
                self.libraries.append(other)
                self.results[other.name] = []
        self.info.update(
            date=datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
            cpus=os.cpu_count(),
            cpu_model=_cpu_model(),
            python=platform.python_version(),
            redis=self.server.version(),
            versions={lib.name: lib.version() for lib in self.libraries},
            load=[os.getloadavg()[0]],
            command=" ".join([Path(sys.executable).name, "-m", "bench", *sys.argv[1:]]),
        )

    def cleanup(self) -> None:
        if self.workers is not None:
            self.workers.stop()
            self.workers = None
        if self.r is not None:
            self.r.close()
        self.server.stop()
        shutil.rmtree(self.workdir, ignore_errors=True)

    def flush(self) -> None:
        assert self.r is not None
        self.r.flushall()
        self.r.config_resetstat()

    def counter(self) -> int:
        assert self.r is not None
        self.gets += 1
        return int(self.r.get(COUNTER_KEY) or 0)

    def snapshot(self, pids: list[int]) -> tuple[float, int, int, float, dict[str, tuple[int, int]], int]:
        """(time, counter, worker ticks, Redis CPU s, commandstats, own GETs so far), taken together.

        The counter and Redis' figures come from one pipelined read, which Redis runs without
        another client's command in between: reading them one after the other (and the workers'
        ticks from /proc in between) let a loaded machine's fast drain move on between the
        counter and ``INFO commandstats`` (a fresh-clone run counted 0.04 of its INCRs a job).
        """
        assert self.r is not None
        ticks = tree_ticks(pids)
        t = time.perf_counter()
        pipe = self.r.pipeline(transaction=False)
        pipe.get(COUNTER_KEY).info("cpu").info("commandstats")
        raw, cpu, stats = pipe.execute()
        self.gets += 1
        calls = {name.removeprefix("cmdstat_"): (int(v["calls"]), int(v["usec"])) for name, v in stats.items()}
        return t, int(raw or 0), ticks, float(cpu["used_cpu_sys"]) + float(cpu["used_cpu_user"]), calls, self.gets

    def one(self, library: Library) -> Figures:
        """One repetition of one library (see the module docstring)."""
        assert self.r is not None
        n = self.args.jobs
        fig = Figures()
        self.flush()
        for _ in range(min(200, n)):  # connect, load scripts, warm caches
            library.enqueue()
        self.flush()

        cpu0, cmds0, mem0 = redis_cpu_s(self.r), command_calls(self.r), _used_memory(self.r)
        t0 = time.perf_counter()
        for _ in range(n):
            library.enqueue()
        fig.enqueue_rate = n / (time.perf_counter() - t0)
        cpu1, cmds1 = redis_cpu_s(self.r), command_calls(self.r)
        fig.redis_bytes = (_used_memory(self.r) - mem0) / n
        fig.redis_cpu_enqueue_us = (cpu1 - cpu0) / n * 1e6
        enqueue_cmds = _delta(cmds0, cmds1)
        fig.commands_enqueue = sum(enqueue_cmds.values()) / n

        self.workers = Workers(library.commands(), library.env, self.workdir / f"{library.name}.log", library.cwd)
        self.workers.start()
        start = self.snapshot([])
        low, high = max(1, n // 10), max(2, n * 9 // 10)
        pids: list[int] = []
        marks = []
        deadline = time.monotonic() + self.args.timeout
        checked = time.monotonic()
        while True:
            count = self.counter()
            if time.monotonic() - checked >= 0.5:  # a worker tree that died says so now, not at the deadline
                self.workers.check()
                checked = time.monotonic()
            if count > 0 and not pids:
                pids = self.workers.tree()
            if (not marks and count >= low) or (len(marks) == 1 and count >= high):
                if not marks:
                    pids = self.workers.tree()
                marks.append(self.snapshot(pids))
            if count >= n:
                break
            if time.monotonic() > deadline:
                self.workers.check()
                raise PhaseTimeout(f"{library.name}: {count:,} of {n:,} jobs done after {self.args.timeout:.0f} s")
            time.sleep(0.002)
        if len(marks) == 1:  # the counter passed both marks between two polls (a small, fast drain)
            marks.append(self.snapshot(pids))
        (ta, ca, ka, ra, cmda, ga), (tb, cb, kb, rb, cmdb, gb) = marks
        window = cb - ca
        if window <= 0:  # a drain of few jobs ended between two polls: no steady window to time
            print(f"  {library.name}: the drain ended before a steady window; figures over the whole drain,"
                  " the workers' start included", flush=True)
            (ta, ca, _, ra, cmda, ga), ka = start, 0
            window = cb - ca
        fig.drain_rate = window / (tb - ta)
        fig.worker_cpu_us = (kb - ka) / CLK_TCK / window * 1e6
        fig.redis_cpu_us = fig.redis_cpu_enqueue_us + (rb - ra) / window * 1e6
        drain_cmds = _delta(cmda, cmdb)
        drain_cmds["get"] = max(0, drain_cmds.get("get", 0) - (gb - ga))  # the benchmark's own polling
        fig.commands = fig.commands_enqueue + sum(drain_cmds.values()) / window
        fig.command_detail = {
            name: round(enqueue_cmds.get(name, 0) / n + drain_cmds.get(name, 0) / window, 3)
            for name in sorted(set(enqueue_cmds) | set(drain_cmds))
            if enqueue_cmds.get(name, 0) or drain_cmds.get(name, 0)
        }

        time.sleep(0.5)  # let the workers go idle
        self.r.delete(LATENCY_KEY)
        for _ in range(self.args.latency_jobs):
            library.enqueue_stamp(time.time_ns())
            time.sleep(0.005)
        def stamped() -> bool:
            assert self.r is not None and self.workers is not None
            self.workers.check()
            return self.r.llen(LATENCY_KEY) >= self.args.latency_jobs

        wait_for(stamped, 30, f"{library.name} latency jobs", 0.01)
        lat = [int(v) / 1e6 for v in self.r.lrange(LATENCY_KEY, 0, -1)]
        fig.latency_p50, fig.latency_p99 = percentile(lat, 50), percentile(lat, 99)

        memory = [memory_kb(pid) for pid in self.workers.tree()]
        fig.rss_mb = sum(m[0] for m in memory) / 1024
        fig.pss_mb = sum(m[1] for m in memory) / 1024
        self.workers.stop()
        self.workers = None

        self.flush()
        t0 = time.perf_counter()
        if library.enqueue_bulk(n) is None:
            fig.bulk_rate = n / (time.perf_counter() - t0)
        self.flush()
        return fig

    def run(self) -> int:
        try:
            self.setup()
            if not self.libraries or self.libraries[0].name != "django_jobs":
                raise SystemExit("--peers compares django_jobs with the others: keep django_jobs in --libraries.")
            for rep in range(self.args.reps):
                k = rep % len(self.libraries)
                for library in self.libraries[k:] + self.libraries[:k]:  # rotate the order
                    print(f"rep {rep + 1}/{self.args.reps}: {library.label()}, {self.args.jobs:,} jobs", flush=True)
                    try:
                        fig = self.one(library)
                    except (PhaseTimeout, RuntimeError, redis.RedisError) as exc:
                        print(f"  {library.name}: {exc}", file=sys.stderr, flush=True)
                        if self.workers is not None:
                            self.workers.stop()
                            self.workers = None
                        continue
                    self.results[library.name].append(fig)
                    print(f"  enqueue {fig.enqueue_rate:,.0f}/s, drain {fig.drain_rate:,.0f}/s, start p50/p99 "
                          f"{fig.latency_p50:.2f}/{fig.latency_p99:.2f} ms, RSS {fig.rss_mb:.0f} MB, Redis "
                          f"{fig.redis_cpu_us:.0f} us/job, {fig.commands:.1f} cmds/job, worker {fig.worker_cpu_us:.0f} us/job",
                          flush=True)
            self.info["load"].append(os.getloadavg()[0])
        finally:
            self.cleanup()
        print()
        print(self.report())
        if self.args.json:
            data = {"info": self.info, "skipped": self.skipped,
                    "results": {name: [f.__dict__ for f in figs] for name, figs in self.results.items()}}
            Path(self.args.json).write_text(json.dumps(data, indent=2))
        return 0 if all(self.results.values()) else 1

    def report(self) -> str:
        info = self.info
        median = {name: _medians(figs) for name, figs in self.results.items() if figs}
        names = [lib.name for lib in self.libraries if lib.name in median]
        out = [
            f"django_jobs and its peers, {info['date']}; median of {self.args.reps} interleaved repetitions",
            (f"machine: {info['cpus']} CPUs ({info['cpu_model']}), Python {info['python']}, Redis {info['redis']} "
            f"over TCP 127.0.0.1, AOF everysec; 1-min load average {' -> '.join(f'{x:.2f}' for x in info['load'])}"),
            (f"workers: {self.args.processes} processes x {self.args.threads} threads each; {self.args.jobs:,} jobs "
            f"per drain, {self.args.latency_jobs} latency jobs; job body: one Redis INCR"),
            f"command: {info['command']}",
            "",
            "(xR: django_jobs' figure is R times the peer's; the arrow says which way is better)",
            "",
        ]
        header = ["figure", *(f"{n} {info['versions'][n]}" for n in names)]
        rows = [header, ["---", *(["---:"] * len(names))]]
        for label, attr, higher, fmt in ROWS:
            dj = median["django_jobs"].get(attr)
            cells = [f"{label} {'↑' if higher else '↓'}"]
            for name in names:
                value = median[name].get(attr)
                if value is None:
                    cells.append("—")
                elif name == "django_jobs" or dj is None or value == 0:
                    cells.append(fmt.format(value))
                else:
                    cells.append(f"{fmt.format(value)} (x{dj / value:.2f})")
            rows.append(cells)
        out += ["| " + " | ".join(row) + " |" for row in rows]
        for name, why in self.skipped.items():
            out.append(f"\n{name} skipped: {why}")
        detail = {name: _median_detail(figs) for name, figs in self.results.items() if figs}
        out.append("\nRedis commands per job (enqueue + drain, INFO commandstats, commands run by scripts included):")
        for name in names:
            items = sorted(detail[name].items(), key=lambda kv: -kv[1])
            out.append(f"  {name}: " + ", ".join(f"{cmd} {v:.2f}" for cmd, v in items if v >= 0.005))
        load = info["load"]
        if max(load) > 0.5:
            out.append(f"\nThe machine was busy (load average {' -> '.join(f'{x:.2f}' for x in load)}): rates and latencies "
                       "are lower than on an idle machine; ratios and CPU per job are the steadier figures.")
        return "\n".join(out)


#: (label, Figures attribute, higher is better, format)
ROWS: list[tuple[str, str, bool, str]] = [
    ("enqueue, one call per job (jobs/s)", "enqueue_rate", True, "{:,.0f}"),
    ("drain (jobs/s, steady window 10-90 %)", "drain_rate", True, "{:,.0f}"),
    ("start latency into idle workers p50 (ms)", "latency_p50", False, "{:.2f}"),
    ("start latency p99 (ms)", "latency_p99", False, "{:.2f}"),
    ("worker tree RSS, summed (MB)", "rss_mb", False, "{:.0f}"),
    ("worker tree PSS, summed (MB)", "pss_mb", False, "{:.0f}"),
    ("Redis server CPU per job (us, INFO cpu)", "redis_cpu_us", False, "{:.0f}"),
    ("Redis commands per job (in scripts too)", "commands", False, "{:.1f}"),
    ("worker CPU per job (us, drain window)", "worker_cpu_us", False, "{:.0f}"),
    ("Redis memory per waiting job (bytes)", "redis_bytes", False, "{:.0f}"),
    ("bulk enqueue (jobs/s)", "bulk_rate", True, "{:,.0f}"),
]


def _used_memory(client: redis.Redis) -> int:
    return int(client.info("memory")["used_memory"])


def _delta(before: dict[str, tuple[int, int]], after: dict[str, tuple[int, int]]) -> dict[str, int]:
    return {name: c - before.get(name, (0, 0))[0] for name, (c, _) in after.items()
            if name not in OWN_COMMANDS and c - before.get(name, (0, 0))[0] > 0}


def _medians(figs: list[Figures]) -> dict[str, float | None]:
    out: dict[str, float | None] = {}
    for _, attr, _, _ in ROWS:
        values = [getattr(f, attr) for f in figs if getattr(f, attr) is not None]
        out[attr] = statistics.median(values) if values else None
    return out


def _median_detail(figs: list[Figures]) -> dict[str, float]:
    names = {name for f in figs for name in f.command_detail}
    return {name: statistics.median(f.command_detail.get(name, 0.0) for f in figs) for name in names}


def main(args: argparse.Namespace) -> int:
    unknown = [name for name in args.libraries if name not in LIBRARIES]
    if unknown:
        raise SystemExit(f"--libraries: unknown {', '.join(unknown)}; choose from {', '.join(LIBRARIES)}.")
    bench = PeerBench(args)
    return bench.run()


def add_arguments(parser: argparse.ArgumentParser, on: Callable[[str], None] | None = None) -> None:
    group = parser.add_argument_group("--peers (django_jobs side by side with Huey, Dramatiq, Celery)")
    group.add_argument("--peers", action="store_true", help="run the side-by-side comparison instead of the usual phases")
    group.add_argument("--reps", type=int, default=3, help="--peers: repetitions per library, interleaved (default 3)")
    group.add_argument("--jobs", type=int, default=20_000, help="--peers: jobs per enqueue and drain (default 20,000)")
    group.add_argument("--latency-jobs", type=int, default=300, help="--peers: start-latency jobs (default 300)")
    group.add_argument("--libraries", type=lambda s: [x.strip().lower() for x in s.split(",") if x.strip()],
                       default=list(LIBRARIES), help="--peers: comma-separated (default django_jobs,huey,dramatiq,celery)")
    group.add_argument("--compare", metavar="PATH",
                       help="--peers: also run django_jobs' workers from the checkout at PATH (e.g. main), interleaved; "
                            "worker-side changes only: the enqueues and their script come from this checkout")
    group.add_argument("--timeout", type=float, default=180, help="--peers: seconds allowed for one drain (default 180)")
