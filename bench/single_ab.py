"""Single enqueue of two checkouts, A/B interleaved (issue 17): ``python bench/single_ab.py ROOT_A ROOT_B``.

One ``noop.enqueue()`` per job from one thread, no worker (what ``bench --peers`` times as
"single enqueue"). Each child (one per checkout, in turn, :func:`bench.ab.alternate`) prints per
call, over ``--calls`` calls repeated ``--reps`` times (FLUSHALL before each): the wall time
(``wall``), its Python CPU (``py``, getrusage: the client's socket work included) and Redis'
CPU (``redis``, ``INFO cpu``); then ``cpu``: its Python CPU with the round trip replaced by a
canned reply (as ``bench.profile enqueue-cpu``), ``--reps`` runs of ``--calls``. Printed: the
medians per checkout and the ratio of A's round median to B's, per round, for ``wall`` and ``cpu``.
Options: ``--calls N`` (3,000), ``--reps`` (3), ``--rounds`` (6).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time


def child(n: int, reps: int) -> None:
    """One checkout's run (imports it from PYTHONPATH); prints one JSON line per measured run."""
    import django
    import redis

    # This checkout's bench/ab.py, whatever PYTHONPATH names (see __main__ below: this directory is last on sys.path).
    from ab import py_cpu_s, redis_cpu_s

    django.setup()
    from bench.jobs import noop
    from django_jobs.engine import get_engine

    r = redis.Redis.from_url(os.environ["DJJ_BENCH_REDIS_URL"])

    for _ in range(300):
        noop.enqueue()  # warm-up: script loaded, connection made
    for _ in range(reps):
        r.flushall()
        c0, p0, w0 = redis_cpu_s(r), py_cpu_s(), time.perf_counter()
        for _ in range(n):
            result = noop.enqueue()
        w1, p1, c1 = time.perf_counter(), py_cpu_s(), redis_cpu_s(r)
        assert result.enqueued_at is not None
        print(json.dumps({"wall": (w1 - w0) / n * 1e6, "py": (p1 - p0) / n * 1e6, "redis": (c1 - c0) / n * 1e6}), flush=True)
    r.flushall()
    conn = get_engine()._lane.own.conn
    now_ms = int(time.time() * 1000)
    conn.send_packed_command = lambda command, check_health=True: None
    conn.send_command = lambda *a, **k: conn.pack_command(*a)
    conn.read_response = lambda *a, **k: [1, now_ms]
    for _ in range(300):
        noop.enqueue()
    for _ in range(reps):
        t0 = time.process_time()
        for _ in range(n):
            noop.enqueue()
        print(json.dumps({"cpu": (time.process_time() - t0) / n * 1e6}), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("roots", nargs=2)
    parser.add_argument("--calls", type=int, default=3_000)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=6)
    args = parser.parse_args()
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    from bench.ab import alternate

    started, load0 = time.strftime("%H:%M", time.gmtime()), os.getloadavg()[0]
    a, b = args.roots
    figures = alternate(__file__, args.roots, args.rounds, [str(args.calls), str(args.reps)], prefix="single", key="wall")
    print(f"noop.enqueue() x {args.calls} x {args.reps} per child, {args.rounds} rounds "
          f"({started}-{time.strftime('%H:%M', time.gmtime())} UTC, load {load0:.1f} -> {os.getloadavg()[0]:.1f}), medians per call:")
    for root in args.roots:
        f = figures.per_root[root]
        wall = statistics.median(f["wall"])
        print(f"  {root}: wall {wall:.1f} us ({1e6 / wall:,.0f} calls/s), Python CPU {statistics.median(f['py']):.1f} us, "
              f"Redis CPU {statistics.median(f['redis']):.1f} us; no round trip: Python CPU {statistics.median(f['cpu']):.1f} us "
              f"(min {min(f['cpu']):.1f})")
    ratios = figures.ratios(a, b)
    print(f"  wall of A / B per round: median {statistics.median(ratios):.3f}, all {' '.join(f'{x:.3f}' for x in ratios)}")
    # Each child printed --reps cpu figures, the children in the order of the rounds: one median per child.
    cpu = {root: [statistics.median(figures.per_root[root]["cpu"][i : i + args.reps])
                  for i in range(0, len(figures.per_root[root]["cpu"]), args.reps)] for root in args.roots}
    cpu_ratios = sorted(x / y for x, y in zip(cpu[a], cpu[b], strict=True))
    print(f"  no-round-trip CPU of A / B per round: median {statistics.median(cpu_ratios):.3f}, "
          f"all {' '.join(f'{x:.3f}' for x in cpu_ratios)}")

if __name__ == "__main__":
    if sys.argv[1:2] == ["--child"]:
        # The checkout measured, not this file's; this file's directory last, for its bench/ab.py only.
        sys.path[0:1] = [os.environ["PYTHONPATH"]]
        sys.path.append(os.path.dirname(os.path.abspath(__file__)))
        child(int(sys.argv[2]), int(sys.argv[3]))
    else:
        main()
