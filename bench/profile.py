"""Profile the hot paths: where does the time of an enqueue and of a drained job go?

    .venv/bin/python -m bench.profile enqueue        # cProfile of 20,000 noop.enqueue() calls
    .venv/bin/python -m bench.profile drain          # py-spy on runworkers draining 50,000 no-op jobs
    .venv/bin/python -m bench.profile drain --svg /tmp/drain.svg
    .venv/bin/python -m bench.profile worker         # one in-process WorkerProcess (burst), yappi CPU profile
    .venv/bin/python -m bench.profile cost           # per-job cost of each phase, Redis side from INFO commandstats
    .venv/bin/python -m bench.profile enqueue-cpu    # Python CPU of one enqueue() up to the bytes it sends
    .venv/bin/python -m bench.profile mirror         # the mirror's CPU per row over a pre-filled events stream
    .venv/bin/python -m bench.profile mirror --pg    # the same on PostgreSQL (127.0.0.1:5432)
    .venv/bin/python -m bench.profile mirror --live  # the mirror following burst workers as they drain
    .venv/bin/python -m bench.profile mirror --live --loop  # the same through Mirror.run (LINGER, CPU cap)
    .venv/bin/python -m bench.profile mirror --live --loop --feed 20 -n 400  # jobs enqueued one by one, 20 a second

``drain`` needs py-spy (``.venv/bin/pip install py-spy``). It samples every thread of both
worker processes and prints, per function, the share of samples spent in it (inclusive) and
in its own code (self). py-spy samples wall time: threads blocked in a socket read or on the
pool's queue count too, so use it to see where threads wait.

``worker`` needs yappi (``.venv/bin/pip install yappi``). It runs one
:class:`~django_jobs.worker.process.WorkerProcess` in this process (``burst=True``, 8 threads)
over pre-enqueued no-op jobs, first without a profiler (rate, CPU per job, batch sizes of
fetch and settle), then under yappi's CPU clock across all threads, and prints CPU time per
function as a share of the total.

``mirror`` drains ``-n`` no-op jobs (3 queues) with an in-process burst worker while no mirror
reads, so each queue's events stream holds every job's waiting, active and completed events;
then it runs :meth:`~django_jobs.mirror.consumer.Mirror.drain` (a mirror catching up after a
burst) twice over fresh streams: once timed (this process' CPU per row written), once under
cProfile. With ``--live`` the streams hold only the enqueues and ``runworkers --burst
--no-mirror`` drains them while the mirror follows (a job's events then come in several batches). The database is a SQLite file (WAL, ``synchronous=NORMAL``, as bench/settings.py) or,
with ``--pg``, a PostgreSQL database created and dropped for the run. It also prints the CPU of
the PostgreSQL backend serving this process (from /proc) and Redis' CPU (all of it the mirror's
when catching up; the workers' too with ``--live``).
"""

from __future__ import annotations

import argparse
import cProfile
import io
import os
import pstats
import shutil
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.cli import parse_args
from bench.run import Bench, wait_for


def profile_enqueue(bench: Bench, n: int, top: int) -> None:
    from bench.jobs import noop

    for _ in range(200):
        noop.enqueue()
    bench.flush()
    prof = cProfile.Profile()
    t0 = time.perf_counter()
    prof.enable()
    for _ in range(n):
        noop.enqueue()
    prof.disable()
    elapsed = time.perf_counter() - t0
    print(f"{n:,} enqueue() calls in {elapsed:.2f} s under cProfile ({n / elapsed:,.0f}/s; profiler overhead included)\n")
    for key in ("tottime", "cumulative"):
        out = io.StringIO()
        pstats.Stats(prof, stream=out).strip_dirs().sort_stats(key).print_stats(top)
        print(f"--- sorted by {key} ---")
        print("\n".join(line for line in out.getvalue().splitlines() if line.strip())[:6000])
        print()


def profile_worker(bench: Bench, n: int, top: int, threads: int, job: str, use_yappi: bool) -> None:
    import resource
    import statistics

    from bench import jobs
    from django_jobs.engine import get_engine
    from django_jobs.worker.process import WorkerProcess, quiet_django_task_logging

    quiet_django_task_logging()  # as runworkers' worker processes do (run_worker_process)
    engine = get_engine()
    task = getattr(jobs, job)
    sizes: dict[str, list[int]] = {"fetch": [], "settle": []}
    durations: dict[str, list[float]] = {"fetch": [], "settle": []}
    fetch, settle = engine.fetch, engine.settle

    def counting_fetch(queue, count, **kw):  # type: ignore[no-untyped-def]
        t0 = time.perf_counter()
        res = fetch(queue, count, **kw)
        durations["fetch"].append(time.perf_counter() - t0)
        sizes["fetch"].append(len(res.jobs))
        return res

    def counting_settle(queue, outcomes):  # type: ignore[no-untyped-def]
        sizes["settle"].append(len(outcomes))
        t0 = time.perf_counter()
        res = settle(queue, outcomes)
        durations["settle"].append(time.perf_counter() - t0)
        return res

    settle_and_fetch = getattr(engine, "settle_and_fetch", None)  # absent before 2026-12-07 (fourth session)
    riding: list[int] = []  # settles that rode a fetch (one round trip for both)

    def counting_settle_and_fetch(queue, outcomes, count, **kw):  # type: ignore[no-untyped-def]
        t0 = time.perf_counter()
        codes, res = settle_and_fetch(queue, outcomes, count, **kw)
        took = time.perf_counter() - t0
        riding.append(len(outcomes))
        sizes["settle"].append(len(outcomes))
        durations["settle"].append(took)
        sizes["fetch"].append(len(res.jobs))
        durations["fetch"].append(took)
        return codes, res

    engine.fetch, engine.settle = counting_fetch, counting_settle  # type: ignore[method-assign]
    if settle_and_fetch is not None:
        engine.settle_and_fetch = counting_settle_and_fetch  # type: ignore[method-assign]

    def enqueue_all() -> None:
        bench.flush()
        for start in range(0, n, 1000):
            task.enqueue_many([()] * min(1000, n - start))

    def drain() -> float:
        worker = WorkerProcess(queues=["default"], threads=threads, burst=True)
        t0 = time.perf_counter()
        worker.run()
        assert worker.processed == n, worker.processed
        return time.perf_counter() - t0

    enqueue_all()
    for v in (*sizes.values(), *durations.values(), riding):
        v.clear()
    cpu0 = resource.getrusage(resource.RUSAGE_SELF)
    redis_cpu0 = _redis_cpu(bench)
    elapsed = drain()
    cpu1 = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (cpu1.ru_utime - cpu0.ru_utime) + (cpu1.ru_stime - cpu0.ru_stime)
    redis_cpu = _redis_cpu(bench) - redis_cpu0
    print(f"in-process WorkerProcess, {threads} threads, burst: {n:,} {job} jobs in {elapsed:.2f} s ({n / elapsed:,.0f}/s)")
    print(f"  worker CPU {cpu / n * 1e6:.0f} us/job (user {(cpu1.ru_utime - cpu0.ru_utime) / n * 1e6:.0f}, "
          f"sys {(cpu1.ru_stime - cpu0.ru_stime) / n * 1e6:.0f}); Redis CPU {redis_cpu / n * 1e6:.0f} us/job")
    print(f"  voluntary context switches {(cpu1.ru_nvcsw - cpu0.ru_nvcsw) / n:.1f}/job, "
          f"involuntary {(cpu1.ru_nivcsw - cpu0.ru_nivcsw) / n:.1f}/job")
    for name, values in sizes.items():
        nonzero = [v for v in values if v]
        print(f"  {name}: {len(values):,} calls, {len(values) - len(nonzero):,} empty, "
              f"mean batch {sum(values) / max(1, len(nonzero)):.2f} jobs (non-empty calls), max {max(values, default=0)}; "
              f"call time p50 {statistics.median(durations[name]) * 1e3:.2f} ms")
    trips = len(sizes["fetch"]) + len(sizes["settle"]) - len(riding)
    print(f"  settles riding a fetch (one round trip for both): {len(riding):,}, {sum(riding):,} jobs; "
          f"round trips for fetch and settle {trips:,} ({trips / n:.3f}/job)")
    if not use_yappi:
        return

    import yappi

    enqueue_all()
    yappi.set_clock_type("cpu")
    yappi.start(builtins=True)
    elapsed = drain()
    yappi.stop()
    stats = yappi.get_func_stats()
    total = sum(t.ttot for t in yappi.get_thread_stats())
    print(f"\nunder yappi (CPU clock, all threads, builtins): {elapsed:.2f} s, {total:.2f} CPU-s profiled "
          f"= {total / n * 1e6:.0f} us/job\n")
    print("per thread (CPU):")
    for t in sorted(yappi.get_thread_stats(), key=lambda t: -t.ttot):
        print(f"  {100 * t.ttot / total:5.1f} %  {t.name} {t.id}")
    rows = [(f.ttot, f.tsub, f.ncall, _short(f)) for f in stats]
    print(f"\nInclusive CPU, top {top} (% of all profiled CPU, us per job):")
    for ttot, _, ncall, name in sorted(rows, key=lambda r: -r[0])[:top]:
        print(f"  {100 * ttot / total:5.1f} %  {ttot / n * 1e6:6.1f} us  {ncall:>8,}  {name}")
    print(f"\nSelf CPU, top {top}:")
    for _, tsub, ncall, name in sorted(rows, key=lambda r: -r[1])[:top]:
        print(f"  {100 * tsub / total:5.1f} %  {tsub / n * 1e6:6.1f} us  {ncall:>8,}  {name}")
    yappi.clear_stats()


def profile_cost(bench: Bench, n: int, threads: int) -> None:
    """Per-job cost of each phase, measured inside Redis (steadier than rates on a busy machine).

    For each phase: the Redis time of its script calls (``INFO commandstats`` usec of EVALSHA,
    which includes the commands the scripts run), the commands per job, Redis ``used_cpu``
    per job, this process' CPU per job; after the single enqueues the Redis memory per waiting
    job (``used_memory`` delta). The drain runs an in-process worker with ``KEEP_COMPLETED``
    ``{"AGE": 0}`` (fire-and-forget, as ``--peers`` runs it).
    """
    import resource

    from django.conf import settings
    from django.test.utils import override_settings

    from bench import jobs
    from bench.run import command_calls
    from django_jobs.worker.process import WorkerProcess, quiet_django_task_logging

    assert bench.r is not None
    r = bench.r
    quiet_django_task_logging()

    def measure(label: str, count: int, run: Any) -> None:
        r.config_resetstat()
        cpu0 = resource.getrusage(resource.RUSAGE_SELF)
        rc0 = _redis_cpu(bench)
        t0 = time.perf_counter()
        run()
        elapsed = time.perf_counter() - t0
        cpu1 = resource.getrusage(resource.RUSAGE_SELF)
        rcpu = _redis_cpu(bench) - rc0
        cpu = (cpu1.ru_utime - cpu0.ru_utime) + (cpu1.ru_stime - cpu0.ru_stime)
        calls = command_calls(r)
        script = calls.get("evalsha", (0, 0))[1] + calls.get("eval", (0, 0))[1]
        cmds = sum(c for name, (c, _) in calls.items() if name not in ("info", "config|resetstat", "config"))
        detail = ", ".join(f"{name} {c / count:.2f} ({u / c:.1f} us)" for name, (c, u) in sorted(calls.items(), key=lambda kv: -kv[1][0])
                           if name not in ("info", "config|resetstat", "config") and c / count >= 0.01)
        print(f"{label}: {count:,} jobs, {count / elapsed:,.0f}/s; scripts {script / count:.1f} us/job in Redis; "
              f"Redis CPU {rcpu / count * 1e6:.1f} us/job; this process {cpu / count * 1e6:.1f} us/job; "
              f"{cmds / count:.2f} commands/job")
        print(f"  {detail}")

    bench.flush()
    for _ in range(200):
        jobs.noop.enqueue()
    bench.flush()
    mem0 = r.info("memory")["used_memory"]
    measure("enqueue, single", n, lambda: [jobs.noop.enqueue() for _ in range(n)])
    mem = r.info("memory")["used_memory"] - mem0
    print(f"  Redis memory per waiting job: {mem / n:.0f} bytes")
    sample = r.hgetall(next(iter(r.scan_iter(match="*:job:*", count=1000))))
    print(f"  a waiting job's hash: {len(sample)} fields, {sum(len(k) + len(v) for k, v in sample.items())} bytes of fields and values: "
          f"{sorted(sample)}")
    bench.flush()
    measure("enqueue, bulk (enqueue_many x 1,000)", n,
            lambda: [jobs.noop.enqueue_many([()] * min(1000, n - s)) for s in range(0, n, 1000)])
    conf = {**settings.DJANGO_JOBS, "KEEP_COMPLETED": {"AGE": 0}}
    with override_settings(DJANGO_JOBS=conf):
        def drain() -> None:
            worker = WorkerProcess(queues=["default"], threads=threads, burst=True)
            worker.run()
            assert worker.processed == n, worker.processed

        measure("drain (in-process worker, KEEP_COMPLETED AGE 0)", n, drain)


def profile_enqueue_cpu(bench: Bench, n: int) -> None:
    """Python CPU of one ``noop.enqueue()``, from the call to the bytes it sends, without the round trip.

    The thread's script connection is warmed up on the real server, then its send and read are
    replaced by a no-op and a canned reply, so neither network nor Redis time (nor the machine's
    other load waiting on them) is in the figure: 7 repetitions of ``n`` calls, process time.
    """
    import statistics

    from bench.jobs import noop
    from django_jobs.engine import get_engine

    noop.enqueue()
    conn = get_engine()._lane.own.conn
    now_ms = int(time.time() * 1000)
    conn.send_packed_command = lambda command, check_health=True: None
    conn.send_command = lambda *args, **kwargs: conn.pack_command(*args)  # redis-py packs in send_command
    conn.read_response = lambda *args, **kwargs: [1, now_ms]
    for _ in range(1000):
        noop.enqueue()
    runs = []
    for _ in range(7):
        t0 = time.process_time()
        for _ in range(n):
            noop.enqueue()
        runs.append((time.process_time() - t0) / n * 1e6)
    print(f"enqueue() Python CPU, no round trip: median {statistics.median(runs):.1f} us/call, "
          f"min {min(runs):.1f} (7 x {n:,} calls)")


def profile_mirror(bench: Bench, n: int, top: int, live: bool = False, loop: bool = False, feed: int = 0) -> None:
    from bench import jobs
    from django.core.management import call_command
    from django.db import connection
    from django_jobs.conf import get_settings
    from django_jobs.engine import get_engine
    from django_jobs.engine.keys import MIRROR_GROUP
    from django_jobs.mirror.consumer import Mirror
    from django_jobs.models import FinishedTally, JobRecord
    from django_jobs.worker.process import WorkerProcess, quiet_django_task_logging

    quiet_django_task_logging()
    call_command("migrate", verbosity=0)
    if connection.vendor == "sqlite":
        with connection.cursor() as cursor:
            cursor.execute("PRAGMA journal_mode=WAL")
    queues = [q for q in ("default", "high", "low") if q in get_settings().queues] or ["default"]
    engine = get_engine()

    def fill() -> None:
        bench.flush()
        JobRecord.objects.all().delete()
        FinishedTally.objects.all().delete()
        for queue in queues:
            engine.mirror_ensure_group(queue, MIRROR_GROUP)
            if feed:
                continue  # --feed: enqueued one by one while the workers and the mirror run
            task = jobs.noop.using(queue_name=queue)
            per = n // len(queues)
            for start in range(0, per, 1000):
                task.enqueue_many([()] * min(1000, per - start))
        if not live:
            WorkerProcess(queues=queues, threads=8, burst=True).run()

    def mirror_all(mirror: Mirror) -> int:
        if not live:
            return mirror.drain()
        # --live: burst workers (another process, no mirror) drain while this mirror follows,
        # as fast as it can (no nice, no CPU cap): a job's events arrive over several batches.
        env = bench.env("1000000")
        workers = subprocess.Popen([sys.executable, "-m", "django", "runworkers", *(() if feed else ("--burst",)), "--no-mirror",
                                    "--processes", "2", "--threads", "8"], cwd=ROOT, env=env,
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        if feed:
            # --feed: n jobs, one enqueue every 1/feed s over the queues in turn, into workers that
            # keep running; they are stopped once every job has finished.
            import threading

            def feeder() -> None:
                tasks = [jobs.noop.using(queue_name=queue) for queue in queues]
                start = time.monotonic()
                for i in range(n):
                    time.sleep(max(0.0, start + i / feed - time.monotonic()))
                    tasks[i % len(tasks)].enqueue()
                wait_for(lambda: sum(engine.counts(q)["completed"] for q in queues) >= n, 120, "the jobs to finish", 0.05)
                workers.terminate()

            threading.Thread(target=feeder, daemon=True).start()
        rows = 0
        if loop:
            # --loop: the mirror's own loop (MIRROR["LINGER"] after caught-up reads, the CPU cap
            # while it follows), as runworkers runs it, until the workers are done.
            step = mirror.step

            def counted() -> int:
                nonlocal rows
                written = step()
                rows += written
                return written

            mirror.step = counted  # type: ignore[method-assign]
            mirror.run(lambda: workers.poll() is not None)  # it takes the mirror lease: the workers run no mirror
            del mirror.step
            return rows + mirror.drain()
        while workers.poll() is None:
            rows += mirror.step()
        return rows + mirror.drain()

    fill()
    mirror = Mirror(queues)
    from bench.run import command_calls

    assert bench.r is not None
    cmds0 = command_calls(bench.r)
    backend0, redis0 = _db_backend_cpu(), _redis_cpu(bench)
    t0, cpu0 = time.perf_counter(), time.process_time()
    rows = mirror_all(mirror)
    cpu, elapsed = time.process_time() - cpu0, time.perf_counter() - t0
    backend, redis_cpu = _db_backend_cpu() - backend0, _redis_cpu(bench) - redis0
    count = JobRecord.objects.count()
    tallied = sum(FinishedTally.objects.filter(span=1).values_list("n", flat=True))
    print(f"mirror ({connection.vendor}) {'following a drain of' if live else 'catching up'}{' (its run loop)' if loop else ''} {count:,} jobs ({len(queues)} queues, "
          f"3 events a job): {rows:,} rows written ({rows / max(1, count):.2f} a job) in {elapsed:.2f} s "
          f"({count / elapsed:,.0f} jobs/s); CPU {cpu / max(1, count) * 1e6:.0f} us/job "
          f"(this process); tallies count {tallied:,}; {mirror.skipped:,} events skipped ({getattr(mirror, 'stored_skips', 0):,} jobs known from the database)")
    # The database server's CPU for the mirror's connection (PostgreSQL; SQLite runs in this
    # process) and Redis' CPU (all of it the mirror's when catching up; with --live it includes
    # the workers').
    print(f"  database backend CPU {backend / max(1, count) * 1e6:.0f} us/job; Redis CPU {redis_cpu / max(1, count) * 1e6:.0f} us/job"
          f"{' (workers included)' if live else ''}; mirror + backend {(cpu + backend) / max(1, count) * 1e6:.0f} us/job")
    # Redis' work command by command (INFO commandstats: the commands scripts run are counted too, and
    # EVALSHA's usec includes theirs).
    cmds = {name: (c - cmds0.get(name, (0, 0))[0], u - cmds0.get(name, (0, 0))[1]) for name, (c, u) in command_calls(bench.r).items()}
    print("  Redis commands per job (calls, usec): " + ", ".join(
        f"{name} {c / max(1, count):.3f} {u / max(1, count):.2f}" for name, (c, u) in sorted(cmds.items(), key=lambda kv: -kv[1][1])
        if c and name not in ("info", "config|resetstat")))
    if not top:
        return  # --top 0: the timed run only
    fill()
    prof = cProfile.Profile()
    mirror = Mirror(queues)
    prof.enable()
    mirror_all(mirror)
    prof.disable()
    for key in ("tottime", "cumulative"):
        out = io.StringIO()
        pstats.Stats(prof, stream=out).strip_dirs().sort_stats(key).print_stats(top)
        print(f"--- sorted by {key} ---")
        print("\n".join(line for line in out.getvalue().splitlines() if line.strip())[:8000])
        print()


def _short(f) -> str:  # type: ignore[no-untyped-def]
    path = f.module or ""
    for marker in ("site-packages/", "/work/main/", "lib/python3.13/"):
        if marker in path:
            path = path.split(marker, 1)[1]
            break
    return f"{f.name} ({path}:{f.lineno})"


def _db_backend_cpu() -> float:
    """CPU seconds of this process' PostgreSQL backend so far, from /proc (0 on SQLite or elsewhere)."""
    from django.db import connection

    if connection.vendor != "postgresql":
        return 0.0
    connection.ensure_connection()
    pid = connection.connection.info.backend_pid
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _redis_cpu(bench: Bench) -> float:
    assert bench.r is not None
    info = bench.r.info("cpu")
    return float(info["used_cpu_sys"]) + float(info["used_cpu_user"])


def _frame_name(frame: str) -> str:
    # py-spy raw frames look like "function (path/to/file.py:123)".
    name, _, where = frame.partition(" (")
    path = where.rstrip(")").rsplit(":", 1)[0]
    for marker in ("site-packages/", "/work/main/", "lib/python3"):
        if marker in path:
            path = path.split(marker, 1)[1]
            break
    return f"{name} ({path})"


def profile_drain(bench: Bench, n: int, top: int, svg: str | None, rate: int) -> None:
    from bench.jobs import noop
    from django_jobs.engine import get_engine

    pyspy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not Path(pyspy).exists():
        raise SystemExit("py-spy is needed: .venv/bin/pip install py-spy")
    bench.flush()
    bench.start_workers("1000000")
    assert bench.workers is not None and bench.workers.proc is not None
    engine = get_engine()
    engine.pause("default")
    for start in range(0, n, 1000):
        noop.enqueue_many([()] * min(1000, n - start))
    raw = bench.workdir / "drain.txt"
    cmd = [pyspy, "record", "--pid", str(bench.workers.proc.pid), "--subprocesses", "--rate", str(rate),
           "--format", "raw", "--output", str(raw)]
    spy = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    time.sleep(1.5)  # py-spy attaches
    t0 = time.perf_counter()
    engine.resume("default")
    wait_for(lambda: bench.pending() == 0, 300, f"{n:,} jobs", 0.01)
    elapsed = time.perf_counter() - t0
    spy.send_signal(2)  # SIGINT: py-spy writes its output and exits
    spy.wait(timeout=60)
    print(f"drained {n:,} no-op jobs in {elapsed:.2f} s ({n / elapsed:,.0f}/s) under py-spy ({rate} Hz)\n")
    inclusive: Counter[str] = Counter()
    own: Counter[str] = Counter()
    threads: Counter[str] = Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack:
            continue
        count = int(count_text)
        frames = stack.split(";")
        # First frame is "process NNN:..." then "thread (0x..)", then the Python frames.
        py = [f for f in frames if " (" in f and ".py:" in f]
        names = [_frame_name(f) for f in py]
        total += count
        threads[_thread_kind(names)] += count
        for name in set(names):
            inclusive[name] += count
        if names:
            own[names[-1]] += count
    if svg:
        _flamegraph(raw, Path(svg))
    print(f"{total:,} busy samples. Busy samples by thread kind:")
    for kind, count in threads.most_common():
        print(f"  {100 * count / total:5.1f} %  {kind}")
    print(f"\nInclusive (function and what it calls), top {top}:")
    for name, count in inclusive.most_common(top):
        print(f"  {100 * count / total:5.1f} %  {name}")
    print(f"\nSelf (own code only), top {top}:")
    for name, count in own.most_common(top):
        print(f"  {100 * count / total:5.1f} %  {name}")


def _thread_kind(names: list[str]) -> str:
    joined = " ".join(names)
    for marker, kind in (("_fetch_loop", "fetcher"), ("_complete_loop", "completer"), ("_heartbeat_loop", "heartbeat"),
                         ("_job_thread", "job threads"), ("_run_sync", "fetcher threads (kept job)"), ("run_forever", "asyncio"),
                         ("_worker (", "job threads (pool idle)")):
        if marker in joined:
            return kind
    return "other (main thread, startup)"


def _flamegraph(raw: Path, svg: Path) -> None:
    # py-spy writes raw "collapsed" stacks; a flamegraph needs the flamegraph tool. Keep the raw
    # file next to the requested svg so it can be fed to https://www.speedscope.app or flamegraph.pl.
    target = svg.with_suffix(".collapsed.txt")
    shutil.copy(raw, target)
    print(f"collapsed stacks written to {target} (open in speedscope.app)\n")


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.profile", description=__doc__.split("\n\n")[0])
    parser.add_argument("what", choices=["enqueue", "drain", "worker", "cost", "enqueue-cpu", "mirror"])
    parser.add_argument("-n", type=int, default=0, help="jobs (default 20,000 enqueue and worker / 50,000 drain)")
    parser.add_argument("--threads", type=int, default=8, help="threads of the in-process worker")
    parser.add_argument("--job", default="noop", choices=["noop", "sleep10"], help="job of the in-process worker")
    parser.add_argument("--no-yappi", action="store_true", help="worker: skip the yappi run")
    parser.add_argument("--switch-interval", type=float, default=0, help="worker: sys.setswitchinterval(seconds) first")
    parser.add_argument("--top", type=int, default=30)
    parser.add_argument("--rate", type=int, default=250, help="py-spy samples per second")
    parser.add_argument("--svg", help="keep the collapsed stacks of the drain next to this path")
    parser.add_argument("--log-info", action="store_true")
    parser.add_argument("--unix", action="store_true")
    parser.add_argument("--live", action="store_true", help="mirror: follow burst workers draining instead of catching up")
    parser.add_argument("--loop", action="store_true", help="mirror --live: through Mirror.run (LINGER, CPU cap), not step() back to back")
    parser.add_argument("--feed", type=int, default=0, help="mirror --live: enqueue the jobs one by one at this many a second")
    parser.add_argument("--pg", action="store_true", help="mirror: on PostgreSQL (127.0.0.1:5432) instead of SQLite")
    args = parser.parse_args()
    if args.switch_interval:
        sys.setswitchinterval(args.switch_interval)
    bench = Bench(parse_args(["--log-info"] * args.log_info + ["--unix"] * args.unix + ["--mirror"] * (args.what == "mirror")))
    pg = f"djj_profile_mirror_{os.getpid()}" if args.what == "mirror" and args.pg else ""
    if args.what == "mirror":
        os.environ["DJJ_BENCH_QUEUES"] = "default,high,low"  # the burst's queues (bench/mirror_burst.py)
    if pg:
        _pg_admin(f'CREATE DATABASE "{pg}"')
        os.environ["DJJ_BENCH_PG"] = pg
    try:
        bench.setup()
        if args.what == "enqueue":
            profile_enqueue(bench, args.n or 20_000, args.top)
        elif args.what == "enqueue-cpu":
            profile_enqueue_cpu(bench, args.n or 20_000)
        elif args.what == "cost":
            profile_cost(bench, args.n or 20_000, args.threads)
        elif args.what == "mirror":
            profile_mirror(bench, args.n or 30_000, args.top, args.live, args.loop, args.feed)
        elif args.what == "worker":
            profile_worker(bench, args.n or 20_000, args.top, args.threads, args.job, not args.no_yappi)
        else:
            profile_drain(bench, args.n or 50_000, args.top, args.svg, args.rate)
    finally:
        bench.cleanup()
        if pg:
            from django.db import connections

            connections.close_all()
            _pg_admin(f'DROP DATABASE IF EXISTS "{pg}" WITH (FORCE)')
    return 0


def _pg_admin(sql: str) -> None:
    import psycopg

    with psycopg.connect(host=os.environ.get("DJJ_BENCH_PG_HOST", "127.0.0.1"), port=os.environ.get("DJJ_BENCH_PG_PORT", "5432"),
                         user=os.environ.get("DJJ_BENCH_PG_USER", "postgres"), dbname="postgres", autocommit=True) as conn:
        conn.execute(sql)


if __name__ == "__main__":
    raise SystemExit(main())
