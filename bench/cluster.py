"""``python -m bench --cluster N``: enqueue and drain figures on a Redis Cluster of N primaries.

The bench starts the cluster itself (N ``redis-server --cluster-enabled yes`` primaries, no
replicas, AOF everysec as the single-server bench; tests/redis_server.py's ``ClusterGroup``),
picks ``--cluster-queues-per-node`` queues on each primary (by their hash tag's slot), and runs
the real ``manage.py runworkers`` on all of them. It reports:

- enqueue rate: ``enqueue()`` one by one (one thread, round robin over the queues) and
  ``enqueue_many`` of 1,000 per call;
- Redis memory per waiting job (``used_memory`` summed over the primaries, before and after
  enqueueing the drain's jobs on paused queues);
- drain rate of no-op jobs and the CPU per job: Redis (``INFO cpu`` of every primary, summed,
  and each primary's share) and the worker processes.

Everything runs on this machine, so the primaries, the workers and this process share its
cores: compare runs with several N by their ratios (CPU per job, the spread over the primaries),
not by absolute rates. ``--json PATH`` writes the figures.

    .venv/bin/python -m bench --cluster 3
    .venv/bin/python -m bench --cluster 2 --cluster-jobs 2000 --processes 1 --threads 4 --json out.json
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import time
from itertools import cycle
from pathlib import Path
from typing import Any

from bench.run import CLK_TCK, ROOT, PhaseTimeout, Workers, cpu_ticks, fmt, wait_for

#: Seconds the primaries' CPU is measured with the workers idle, before the drain.
IDLE_WINDOW = 2.0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("cluster (python -m bench --cluster N)")
    group.add_argument("--cluster", type=int, default=0, metavar="N",
                       help="start a Redis Cluster of N primaries and measure on it (bench/cluster.py)")
    group.add_argument("--cluster-jobs", type=int, default=20_000, help="jobs of the drain (default 20,000)")
    group.add_argument("--cluster-queues-per-node", type=int, default=2, help="queues on each primary (default 2)")
    group.add_argument("--cluster-baseline", action="store_true",
                       help="first run the same phases on one plain redis-server (not a cluster), for the ratios")


def pick_queues(client: Any, per_node: int) -> dict[str, list[str]]:
    """Return {primary "host:port": [queue names]}: ``per_node`` queues whose hash tag lives on each primary."""
    primaries = {node.name for node in client.get_primaries()}
    found: dict[str, list[str]] = {name: [] for name in primaries}
    for i in range(10_000):
        name = f"q{i}"
        owner = client.get_node_from_key(f"{{{name}}}").name  # a queue's keys carry {name}: one slot
        if len(found[owner]) < per_node:
            found[owner].append(name)
        if all(len(q) == per_node for q in found.values()):
            return found
    raise RuntimeError("could not find queues for every primary")


def memory_used(nodes: list[Any]) -> int:
    return sum(int(n.info("memory")["used_memory"]) for n in nodes)


def calls(nodes: dict[str, Any]) -> dict[str, int]:
    """Commands called on all ``nodes`` together, by name (INFO commandstats; scripts' own commands included)."""
    out: dict[str, int] = {}
    for node in nodes.values():
        for name, v in node.info("commandstats").items():
            out[name.removeprefix("cmdstat_")] = out.get(name.removeprefix("cmdstat_"), 0) + int(v["calls"])
    return out


def cpu_by_node(nodes: dict[str, Any]) -> dict[str, float]:
    out = {}
    for name, node in nodes.items():
        info = node.info("cpu")
        out[name] = float(info["used_cpu_sys"]) + float(info["used_cpu_user"])
    return out


class ClusterBench:
    """One run: start the cluster, measure, stop everything (see the module doc)."""

    def __init__(self, args: argparse.Namespace, *, baseline: bool = False) -> None:
        self.args = args
        #: Run on one plain redis-server (no cluster) with the same queues and phases.
        self.baseline = baseline
        self.n = args.cluster
        scale = 10 if args.quick else 1
        self.n_drain = max(1, args.cluster_jobs // scale)
        self.n_single = max(1, min(5_000, self.n_drain) // 2)
        self.group: Any = None
        self.workers: Workers | None = None
        self.results: dict[str, Any] = {}

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update({
            "DJANGO_SETTINGS_MODULE": "bench.settings",
            "DJJ_BENCH_REDIS_URL": self.group.url,
            "DJJ_BENCH_CLUSTER": "" if self.baseline else "1",
            "DJJ_BENCH_QUEUES": ",".join(self.queues),
            "DJJ_BENCH_PREFIX": "bench",
            "DJJ_BENCH_KEEP_COMPLETED": "none",
            "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH", "")])),
        })
        return env

    def run(self) -> int:
        if self.n < 1:
            raise SystemExit("--cluster N needs N >= 1 primaries")
        sys.path.insert(0, str(ROOT))
        from tests.redis_server import ClusterGroup, RedisServer

        self.group = RedisServer() if self.baseline else ClusterGroup(primaries=self.n, replicas=0)
        started = time.perf_counter()
        try:
            self.group.start()
            if self.baseline:
                print(f"baseline: one redis-server (not a cluster) up in {time.perf_counter() - started:.1f} s", flush=True)
                plain = self.group.client()
                by_node = {"server": [f"q{i}" for i in range(self.n * self.args.cluster_queues_per_node)]}
                self.nodes = {"server": plain}
                self.root = self.group.dir
            else:
                print(f"cluster: {self.n} primar{'y' if self.n == 1 else 'ies'} up in {time.perf_counter() - started:.1f} s",
                      flush=True)
                client = self.group.client()
                by_node = pick_queues(client, self.args.cluster_queues_per_node)
                self.nodes = {node.name: client.get_redis_connection(node) for node in client.get_primaries()}
                self.root = self.group.root
            self.queues = [q for queues in by_node.values() for q in queues]
            os.environ.update(self.env())
            import django

            django.setup()
            self._point_settings()
            self.results.update(
                primaries=self.n, queues=by_node, jobs=self.n_drain, load_start=os.getloadavg()[0],
                workers=f"{self.args.processes} x {self.args.threads}", cpus=os.cpu_count(),
            )
            self.phase_enqueue()
            self.phase_drain()
            self.results["load_end"] = os.getloadavg()[0]
        finally:
            if self.workers is not None:
                self.workers.stop()
            for node in getattr(self, "nodes", {}).values():
                node.close()
            self.group.stop()
            from django_jobs.engine import reset_engine

            reset_engine()
            shutil.rmtree(self.root if hasattr(self, "root") else self.group.dir, ignore_errors=True)
        self.print_report()
        return 0

    def _point_settings(self) -> None:
        """Point DJANGO_JOBS at this run's Redis (a second run in one process: the baseline, then the cluster)."""
        import importlib

        from django.test import override_settings

        import bench.settings
        from django_jobs.engine import reset_engine

        importlib.reload(bench.settings)  # it reads the environment this run set
        override_settings(DJANGO_JOBS=bench.settings.DJANGO_JOBS).enable()
        reset_engine()

    def flush(self) -> None:
        for node in self.nodes.values():
            node.flushall()
            node.config_resetstat()

    def phase_enqueue(self) -> None:
        from bench.jobs import noop

        tasks = [noop.using(queue_name=q) for q in self.queues]
        for task in tasks:  # connect to every primary, load the scripts
            task.enqueue()
        self.flush()
        n = self.n_single
        print(f"enqueue: {n:,} enqueue() calls round robin over {len(tasks)} queues, then enqueue_many x 1,000",
              flush=True)
        turn = cycle(tasks)
        cpu0 = sum(cpu_by_node(self.nodes).values())
        t0 = time.perf_counter()
        for _ in range(n):
            next(turn).enqueue()
        self.results["enqueue_rate"] = n / (time.perf_counter() - t0)
        self.results["redis_cpu_us_per_enqueue"] = (sum(cpu_by_node(self.nodes).values()) - cpu0) / n * 1e6
        self.flush()
        chunks = max(len(tasks), self.n_drain // 1000)
        t0 = time.perf_counter()
        for _ in range(chunks):
            next(turn).enqueue_many([()] * 1000)
        self.results["bulk_rate"] = chunks * 1000 / (time.perf_counter() - t0)
        self.flush()

    def pending(self) -> int:
        from django_jobs.engine import get_engine

        engine = get_engine()
        return sum(c["waiting"] + c["active"] + c["scheduled"] for c in (engine.counts(q) for q in self.queues))

    def phase_drain(self) -> None:
        from bench.jobs import noop
        from django_jobs.engine import get_engine

        p, t = self.args.processes, self.args.threads
        engine = get_engine()
        self.workers = Workers(self.env(), Path(self.root) / "workers.log", p, t,
                               ("--queues", ",".join(self.queues), "--no-mirror"))
        self.workers.start()
        try:
            wait_for(lambda: len(engine.workers()) >= p, 30, "worker heartbeats", 0.05)
            for q in self.queues:  # warm every worker's path to every primary
                noop.using(queue_name=q).enqueue_many([()] * (p * 2))
            wait_for(lambda: self.pending() == 0, 30, "warm-up jobs", 0.02)
        except PhaseTimeout:
            print(self.workers.log.read_text()[-3000:], file=sys.stderr)
            raise
        # What the primaries spend with idle workers (cluster bus, serverCron, the workers' and the
        # supervisor's periodic calls): subtracted from the drain's CPU for the net figure.
        idle0, t_idle = cpu_by_node(self.nodes), time.perf_counter()
        time.sleep(IDLE_WINDOW)
        idle1, idle_s = cpu_by_node(self.nodes), time.perf_counter() - t_idle
        background = {name: (idle1[name] - idle0[name]) / idle_s for name in self.nodes}  # CPU s per s
        print(f"drain: {self.n_drain:,} no-op jobs over {len(self.queues)} queues, runworkers {p} x {t}", flush=True)
        for q in self.queues:
            engine.pause(q)
        memory0 = memory_used(list(self.nodes.values()))
        cpu0 = sum(cpu_by_node(self.nodes).values())
        per_queue = self.n_drain // len(self.queues)
        for q in self.queues:
            task = noop.using(queue_name=q)
            for start in range(0, per_queue, 1000):
                task.enqueue_many([()] * min(1000, per_queue - start))
        total = per_queue * len(self.queues)
        self.results["redis_cpu_us_per_bulk_enqueue"] = (sum(cpu_by_node(self.nodes).values()) - cpu0) / total * 1e6
        self.results["memory_bytes_per_waiting_job"] = (memory_used(list(self.nodes.values())) - memory0) / total
        pids = self.workers.children()
        worker0 = {pid: cpu_ticks(pid) for pid in pids}
        redis0 = cpu_by_node(self.nodes)
        calls0 = calls(self.nodes)
        t0 = time.perf_counter()
        for q in self.queues:
            engine.resume(q)
        wait_for(lambda: self.pending() == 0, 300, f"{total:,} jobs to finish", 0.05)
        elapsed = time.perf_counter() - t0
        redis1 = cpu_by_node(self.nodes)
        calls1 = calls(self.nodes)
        per_job_calls = {name: (c - calls0.get(name, 0)) / total for name, c in calls1.items() if c > calls0.get(name, 0)}
        worker_cpu = sum(cpu_ticks(pid) - worker0[pid] for pid in pids) / CLK_TCK
        by_node = {name: (redis1[name] - redis0[name]) / total * 1e6 for name in self.nodes}
        failed = sum(engine.counts(q)["failed"] for q in self.queues)
        if failed:
            raise RuntimeError(f"{failed} job(s) failed during the drain: see {self.workers.log}")
        net = {name: max(0.0, by_node[name] - background[name] * elapsed / total * 1e6) for name in self.nodes}
        self.results.update(
            drain_rate=total / elapsed, drain_s=elapsed, drained=total,
            redis_cpu_us_per_job=sum(by_node.values()), redis_cpu_us_per_job_by_node=by_node,
            redis_idle_cpu_percent_by_node={name: v * 100 for name, v in background.items()},
            redis_cpu_us_per_job_net=sum(net.values()), redis_cpu_us_per_job_net_by_node=net,
            worker_cpu_us_per_job=worker_cpu / total * 1e6,
            # EVALSHA: script calls of the workers (and the bench's counts polls, a few per 50 ms).
            script_calls_per_job=per_job_calls.get("evalsha", 0.0), commands_per_job=per_job_calls,
        )
        self.workers.stop()
        self.workers = None

    def print_report(self) -> None:
        r = self.results
        by_node = r.get("redis_cpu_us_per_job_by_node", {})
        busiest = max(by_node.values(), default=0)
        rows = [
            ("queues", len(self.queues), "" if self.baseline else f"{self.args.cluster_queues_per_node} per primary"),
            ("enqueue, single (1 thread)", r.get("enqueue_rate"), "jobs/s"),
            ("enqueue, bulk (enqueue_many x 1,000)", r.get("bulk_rate"), "jobs/s"),
            (f"drain, no-op ({r.get('workers')})", r.get("drain_rate"), f"jobs/s ({r.get('drained', 0):,} jobs)"),
            ("Redis CPU per enqueue() (single)", r.get("redis_cpu_us_per_enqueue"), "us"),
            ("Redis CPU per job, enqueue_many", r.get("redis_cpu_us_per_bulk_enqueue"), "us"),
            ("Redis CPU per job, all primaries", r.get("redis_cpu_us_per_job"), "us, fetch + settle (the drain)"),
            ("Redis CPU per job, busiest primary", busiest, "us"),
            ("Redis CPU per job, all primaries, net of idle", r.get("redis_cpu_us_per_job_net"), "us"),
            ("Redis idle CPU, per primary (mean)", statistics.mean(r.get("redis_idle_cpu_percent_by_node", {0: 0}).values()),
             "% of a core, workers idle"),
            ("worker CPU per job", r.get("worker_cpu_us_per_job"), "us"),
            ("script calls (EVALSHA) per job", r.get("script_calls_per_job"), "calls, all primaries"),
            ("Redis memory per waiting job", r.get("memory_bytes_per_waiting_job"), "bytes"),
        ]
        print()
        where = "one redis-server, not a cluster (baseline)" if self.baseline else (
            f"a Redis Cluster of {self.n} primar{'y' if self.n == 1 else 'ies'}")
        print(f"django_jobs on {where} ({r.get('cpus')} CPUs shared by Redis, the workers and the bench)")
        width = max(len(name) for name, _, _ in rows)
        for name, value, unit in rows:
            shown = f"{value:,}" if isinstance(value, int) else fmt(value if isinstance(value, float) else None)
            print(f"  {name.ljust(width)}  {shown:>10}  {unit}")
        if by_node:
            spread = " / ".join(f"{v:.1f}" for v in by_node.values())
            print(f"  Redis CPU per job by primary (us): {spread}")
        if busiest:
            print(f"  the busiest primary saturates its core at ~{1e6 / busiest:,.0f} jobs/s over the cluster "
                  "(1e6 us / its us per job), if the workers keep up")
        loads = [r.get("load_start", 0), r.get("load_end", 0)]
        if max(loads) > 0.5:
            print(f"  note: the machine was busy (load {loads[0]:.2f} -> {loads[1]:.2f}); rates are noisy, "
                  "CPU per job holds better")


def main(args: argparse.Namespace) -> int:
    """Run the baseline (with ``--cluster-baseline``) and the cluster; write both to ``--json``."""
    runs = [ClusterBench(args, baseline=True)] if args.cluster_baseline else []
    runs.append(ClusterBench(args))
    for run in runs:
        run.run()
    if args.json:
        data = {"cluster": runs[-1].results}
        if args.cluster_baseline:
            data["baseline"] = runs[0].results
        Path(args.json).write_text(json.dumps(data, indent=2))
    return 0
