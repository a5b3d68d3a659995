"""A burst through the database mirror: does every job reach the database, and how fast?

Run from the repository root::

    .venv/bin/python -m bench.mirror_burst --jobs 1000000 --db sqlite
    .venv/bin/python -m bench.mirror_burst --jobs 200000 --db postgres   # a PostgreSQL on 127.0.0.1:5432

It starts its own redis-server (bench/run.py's: AOF, fsync every second) and the real
``manage.py runworkers`` with every default (the mirror on, EVENTS_MAXLEN 100,000,
KEEP_COMPLETED 10,000 / 24 h), waits until the mirror holds the queues, then bulk-enqueues
``--jobs`` no-op jobs over ``--queues`` (``enqueue_many`` x 1,000) while the workers drain
them. Every second it samples the queues, the rows and the mirror's lag; at the end it prints
the drain rate, the mirror's rate (rows/s over the run and after the drain), the most the
mirror fell behind, and how many jobs have no row (the issue's test: none). CPU per row and per
job come from /proc: the mirror process (the niced child of ``runworkers``), the workers, and on
PostgreSQL the database backends serving the benchmark's database (the mirror's, not niced).

``--db postgres`` creates (and at the end drops) the database ``--pg-name`` on the server
``DJJ_BENCH_PG_HOST`` / ``DJJ_BENCH_PG_PORT`` / ``DJJ_BENCH_PG_USER`` (default
127.0.0.1:5432, postgres); ``--db sqlite`` uses a SQLite file (WAL) in a temporary directory.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.run import PhaseTimeout, RedisServer, Workers, wait_for  # noqa: E402


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.mirror_burst", description=__doc__.split("\n\n")[0])
    p.add_argument("--jobs", type=int, default=200_000, help="jobs in the burst (default: 200,000)")
    p.add_argument("--db", choices=("sqlite", "postgres"), default="sqlite")
    p.add_argument("--queues", default="default,high,low", help="queues the burst is spread over (default: default,high,low)")
    p.add_argument("--processes", type=int, default=2, help="worker processes (default: 2)")
    p.add_argument("--threads", type=int, default=8, help="threads per worker process (default: 8)")
    p.add_argument("--pg-name", default="djj_bench_mirror", help="PostgreSQL database to create and drop")
    p.add_argument("--timeout", type=float, default=3600, help="give up after this many seconds (default: 3600)")
    p.add_argument("--json", action="store_true", help="print the result as JSON too")
    p.add_argument("--count-writes", action="store_true",
                   help="SQLite: count the mirror's row writes with two triggers (a few us a row more; PostgreSQL counts them always)")
    return p.parse_args(argv)


def _pg(args: argparse.Namespace, sql: str) -> None:
    import psycopg

    with psycopg.connect(host=os.environ.get("DJJ_BENCH_PG_HOST", "127.0.0.1"), port=os.environ.get("DJJ_BENCH_PG_PORT", "5432"),
                         user=os.environ.get("DJJ_BENCH_PG_USER", "postgres"), dbname="postgres", autocommit=True) as conn:
        conn.execute(sql)


def _cpu_seconds(pid: int) -> tuple[float, int]:
    """Return (user + system CPU seconds, nice) of process ``pid`` from /proc (0, 0 when gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0, 0
    # After the command: state ppid ... utime(11) stime(12) ... nice(16), 0-based from "state".
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK"), int(fields[16])


def _cpu_split(workers: Workers) -> tuple[float, float]:
    """Return the CPU seconds used so far by the mirror process (the niced child) and by the rest of runworkers."""
    mirror = rest = 0.0
    assert workers.proc is not None
    for pid in [workers.proc.pid, *workers.children()]:
        cpu, nice = _cpu_seconds(pid)
        if nice > 0:
            mirror += cpu
        else:
            rest += cpu
    return mirror, rest


class _Backends:
    """The CPU of the PostgreSQL backends serving the benchmark's database, other than this process' own (the mirror's)."""

    def __init__(self) -> None:
        self.cpu: dict[int, float] = {}

    def sample(self) -> float:
        """Record every such backend's CPU seconds so far; return their sum (a backend gone keeps its last figure)."""
        from django.db import connection

        if connection.vendor != "postgresql":
            return 0.0
        with connection.cursor() as cursor:
            cursor.execute("SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()")
            for (pid,) in cursor.fetchall():
                cpu, _nice = _cpu_seconds(pid)
                if cpu:
                    self.cpu[pid] = max(cpu, self.cpu.get(pid, 0.0))
        return sum(self.cpu.values())


def _row_writes() -> int | None:
    """PostgreSQL: rows of the mirror's table inserted plus updated so far (its statistics), else None.

    Each is one row write by the mirror (a job written as ``waiting`` and again as ``completed``
    counts two): deterministic where CPU figures are not, on a machine whose load varies.
    """
    from django.db import connection

    from django_jobs.models import JobRecord

    if connection.vendor == "sqlite":  # counted only with --count-writes (_count_sqlite_writes)
        with connection.cursor() as cursor:
            cursor.execute("SELECT name FROM sqlite_master WHERE type = 'table' AND name = 'bench_row_writes'")
            if cursor.fetchone() is None:
                return None
            cursor.execute("SELECT what, n FROM bench_row_writes WHERE n > 0 ORDER BY n DESC")
            kinds = cursor.fetchall()
            if kinds:  # none yet when the count is first read, before the burst
                print("  row writes by kind: " + ", ".join(f"{what} {n:,}" for what, n in kinds), flush=True)
            return sum(int(n) for _what, n in kinds)
    if connection.vendor != "postgresql":
        return None
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_stat_clear_snapshot()")
        cursor.execute("SELECT n_tup_ins + n_tup_upd FROM pg_stat_user_tables WHERE relname = %s", [JobRecord._meta.db_table])
        got = cursor.fetchone()
    return int(got[0]) if got else 0


def _count_sqlite_writes(cursor: Any) -> None:
    """SQLite (``--count-writes``): a one-row table counting the rows inserted into and updated in the mirror's table."""
    from django_jobs.models import JobRecord, JobState

    table = JobRecord._meta.db_table
    # One row per kind of write: "waiting" (a row inserted as waiting), "waiting>completed" (one updated).
    cursor.execute("CREATE TABLE bench_row_writes (what TEXT PRIMARY KEY, n INTEGER NOT NULL)")
    states = [state for state, _label in JobState.choices]
    kinds = states + [f"{old}>{new}" for old in states for new in states]
    cursor.executemany("INSERT INTO bench_row_writes VALUES (%s, 0)", [(kind,) for kind in kinds])
    for when, what in (("INSERT", "NEW.state"), ("UPDATE", "OLD.state || '>' || NEW.state")):
        cursor.execute(f'CREATE TRIGGER bench_count_{when.lower()} AFTER {when} ON "{table}" '
                       f"BEGIN UPDATE bench_row_writes SET n = n + 1 WHERE what = {what}; END")


def _mirror_reads(server: RedisServer) -> int:
    """XREADGROUP calls Redis served so far: the mirror's reads (its events and its own pending ones; no worker reads a group)."""
    with server.client() as c:
        return int(c.info("commandstats").get("cmdstat_xreadgroup", {}).get("calls", 0))


def _commits() -> int | None:
    """PostgreSQL: transactions committed in the benchmark's database so far (the mirror's, and this process' few), else None."""
    from django.db import connection

    if connection.vendor != "postgresql":
        return None
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_stat_clear_snapshot()")
        cursor.execute("SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()")
        got = cursor.fetchone()
    return int(got[0]) if got else 0


def run(args: argparse.Namespace) -> dict[str, Any]:
    workdir = Path(tempfile.mkdtemp(prefix="djj-mirror-burst-"))
    server = RedisServer(workdir)
    workers: Workers | None = None
    queues = [q for q in args.queues.split(",") if q]
    env = dict(os.environ)
    env.update({
        "DJANGO_SETTINGS_MODULE": "bench.settings",
        "DJJ_BENCH_PREFIX": "burst",
        "DJJ_BENCH_KEEP_COMPLETED": "default",
        "DJJ_BENCH_QUEUES": ",".join(queues),
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH", "")])),
    })
    if args.db == "postgres":
        env["DJJ_BENCH_PG"] = args.pg_name
        _pg(args, f'DROP DATABASE IF EXISTS "{args.pg_name}"')
        _pg(args, f'CREATE DATABASE "{args.pg_name}"')
    else:
        env["DJJ_BENCH_DB"] = str(workdir / "mirror.sqlite3")
    try:
        server.start()
        env["DJJ_BENCH_REDIS_URL"] = server.url(False)
        os.environ.update(env)
        import django

        django.setup()
        from django.core.management import call_command
        from django.db import connection

        call_command("migrate", verbosity=0)
        if connection.vendor == "sqlite":
            with connection.cursor() as cursor:
                cursor.execute("PRAGMA journal_mode=WAL")  # this process' counts never block the mirror
                if args.count_writes:
                    _count_sqlite_writes(cursor)
        return _burst(args, env, workdir, queues, server)
    finally:
        if workers is not None:
            workers.stop()
        from django.db import connections

        connections.close_all()
        server.stop()
        if args.db == "postgres":
            _pg(args, f'DROP DATABASE IF EXISTS "{args.pg_name}" WITH (FORCE)')
        shutil.rmtree(workdir, ignore_errors=True)


def _burst(args: argparse.Namespace, env: dict[str, str], workdir: Path, queues: list[str], server: RedisServer) -> dict[str, Any]:
    from bench.jobs import noop
    from django_jobs import mirror
    from django_jobs.engine import get_engine
    from django_jobs.models import JobRecord

    engine = get_engine()
    lag = getattr(mirror, "mirror_lag", None)  # None on a branch without it (a before/after run)
    workers = Workers(env, workdir / "workers.log", args.processes, args.threads)
    workers.start()
    try:
        wait_for(lambda: len(engine.workers()) >= args.processes, 60, "worker heartbeats", 0.1)
        if lag is not None:
            wait_for(lambda: all(v.held for v in lag(queues).values()), 60, "the mirror to hold the queues", 0.1)
        else:
            time.sleep(3)
        warm = JobRecord.objects.count()
        writes0, reads0, commits0 = _row_writes(), _mirror_reads(server), _commits()
        backends = _Backends()
        backend0 = backends.sample()
        cpu_mirror0, cpu_workers0 = _cpu_split(workers)
        cpu_workers_at_drain = cpu_mirror_at_drain = 0.0
        print(f"burst: {args.jobs:,} no-op jobs over {', '.join(queues)}; runworkers {args.processes} x {args.threads}, "
              f"mirror on, database {args.db}", flush=True)
        t0 = time.monotonic()
        samples: list[dict[str, Any]] = []
        done = 0
        per = [args.jobs // len(queues) + (1 if i < args.jobs % len(queues) else 0) for i in range(len(queues))]
        chunk = 1000
        for queue, count in zip(queues, per):
            task = noop.using(queue_name=queue)
            for start in range(0, count, chunk):
                task.enqueue_many([()] * min(chunk, count - start))
                done += min(chunk, count - start)
        enqueued = time.monotonic() - t0
        print(f"  enqueued in {enqueued:.1f} s ({args.jobs / enqueued:,.0f} jobs/s)", flush=True)
        drained_at = mirrored_at = None
        rows_at_drain = 0
        max_behind = max_unrecorded = 0
        max_memory = 0
        deadline = t0 + args.timeout
        while time.monotonic() < deadline:
            time.sleep(1.0)
            now = time.monotonic() - t0
            left = sum(c["waiting"] + c["active"] + c["scheduled"] for c in (engine.counts(q) for q in queues))
            rows = JobRecord.objects.filter(state="completed").count() - warm
            behind = unrecorded = 0
            if lag is not None:
                lags = lag(queues)
                behind = sum(v.behind for v in lags.values())
                unrecorded = sum(v.unrecorded for v in lags.values())
            with server.client() as c:
                memory = int(c.info("memory")["used_memory"])
            max_behind, max_unrecorded, max_memory = max(max_behind, behind), max(max_unrecorded, unrecorded), max(max_memory, memory)
            samples.append({"t": round(now, 1), "left": left, "rows": rows, "behind": behind})
            cpu_mirror, cpu_workers = _cpu_split(workers)
            backend = backends.sample()
            if drained_at is None and left == 0:
                drained_at = now
                rows_at_drain = rows
                cpu_mirror_at_drain, cpu_workers_at_drain = cpu_mirror, cpu_workers
            if len(samples) % 10 == 0 or (drained_at == now):
                print(f"  {now:7.1f} s: {args.jobs - left:,} finished, {rows:,} rows, mirror {behind:,} events behind, "
                      f"{unrecorded:,} finished jobs held for it, Redis {memory / 2**20:,.0f} MB", flush=True)
            if drained_at is not None and rows >= args.jobs and behind == 0:
                mirrored_at = now
                break
            if drained_at is not None and lag is None and samples[-1]["rows"] == samples[max(0, len(samples) - 30)]["rows"] \
                    and len(samples) > 30:
                break  # the old mirror: no more rows coming
        rows = JobRecord.objects.filter(state="completed").count() - warm
        cpu_mirror, cpu_workers = _cpu_split(workers)
        if not cpu_workers_at_drain:
            cpu_mirror_at_drain, cpu_workers_at_drain = cpu_mirror, cpu_workers
        at_drain = rows_at_drain
        backend = backends.sample() - backend0
        lost = sum(v.lost for v in lag(queues).values()) if lag is not None else None
        # The mirror's backend reports its statistics when it exits: stop runworkers first.
        workers.stop()
        writes = _row_writes()
        row_writes = None if writes is None or writes0 is None else writes - writes0
        reads = _mirror_reads(server) - reads0
        commits = _commits()
        commits = None if commits is None or commits0 is None else commits - commits0
        result = {
            "jobs": args.jobs, "db": args.db, "queues": queues, "workers": f"{args.processes} x {args.threads}",
            "enqueue_s": round(enqueued, 1),
            "drain_s": round(drained_at, 1) if drained_at is not None else None,
            "drain_jobs_per_s": round(args.jobs / drained_at) if drained_at else None,
            "mirror_s": round(mirrored_at, 1) if mirrored_at is not None else None,
            "mirror_rows_per_s": round(rows / mirrored_at) if mirrored_at else None,
            "rows_at_drain": at_drain,
            "catch_up_rows_per_s": round((rows - at_drain) / (mirrored_at - drained_at))
            if mirrored_at and drained_at and mirrored_at > drained_at else None,
            "rows": rows, "missing": args.jobs - rows, "lost_counted": lost,
            "row_writes": row_writes, "row_writes_per_job": round(row_writes / args.jobs, 2) if row_writes is not None else None,
            "mirror_xreadgroup_calls": reads, "db_commits": commits,
            "max_behind_events": max_behind, "max_unrecorded_jobs": max_unrecorded,
            "max_redis_mb": round(max_memory / 2**20),
            # CPU per job: the deterministic comparison on a loaded machine. The mirror's over
            # the whole run (rows written); the workers' (and their supervisor's) up to the drain.
            "mirror_cpu_s": round(cpu_mirror - cpu_mirror0, 1),
            "mirror_cpu_us_per_row": round((cpu_mirror - cpu_mirror0) / max(1, rows) * 1e6),
            "mirror_cpu_s_at_drain": round(cpu_mirror_at_drain - cpu_mirror0, 1),
            # PostgreSQL: its backends' CPU for the mirror (SQLite works inside the mirror process).
            "db_backend_cpu_s": round(backend, 1),
            "db_backend_cpu_us_per_row": round(backend / max(1, rows) * 1e6),
            # During the drain: rows written by its end against the jobs drained.
            "rows_at_drain_share": round(at_drain / args.jobs, 2),
            "workers_cpu_s": round(cpu_workers_at_drain - cpu_workers0, 1),
            "workers_cpu_us_per_job": round((cpu_workers_at_drain - cpu_workers0) / max(1, args.jobs) * 1e6),
        }
        print(
            f"result: {rows:,} of {args.jobs:,} jobs have a row ({args.jobs - rows:,} missing); "
            f"drain {result['drain_jobs_per_s'] or '-'} jobs/s ({result['drain_s']} s); mirror {result['mirror_rows_per_s'] or '-'} rows/s "
            f"over the run ({result['mirror_s']} s), {result['catch_up_rows_per_s'] or '-'} rows/s after the drain; "
            f"at most {max_behind:,} events behind, {max_unrecorded:,} finished jobs held; Redis peak {result['max_redis_mb']} MB; "
            f"lost counted {lost}; mirror reads (XREADGROUP) {reads:,}"
            + (f"; {row_writes:,} row writes ({result['row_writes_per_job']} a job)" if row_writes is not None else "")
            + (f", {commits:,} commits" if commits is not None else ""),
            flush=True,
        )
        print(
            f"cpu: mirror {result['mirror_cpu_us_per_row']} us/row ({result['mirror_cpu_s']} s, {result['mirror_cpu_s_at_drain']} s "
            f"of it by the drain) + database backend {result['db_backend_cpu_us_per_row']} us/row; "
            f"workers {result['workers_cpu_us_per_job']} us/job ({result['workers_cpu_s']} s); "
            f"mirror/workers CPU ratio {result['mirror_cpu_us_per_row'] / max(1, result['workers_cpu_us_per_job']):.2f}",
            flush=True,
        )
        if args.json:
            print(json.dumps(result))
        return result
    except PhaseTimeout:
        print(workers.log.read_text()[-3000:], file=sys.stderr)
        raise
    finally:
        workers.stop()


def main(argv: list[str] | None = None) -> int:
    result = run(parse_args(argv))
    return 0 if result["missing"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
