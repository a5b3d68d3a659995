"""Bulk enqueue rate of two checkouts, A/B interleaved (issue 17): ``python bench/bulk_ab.py ROOT_A ROOT_B``.

Starts one redis-server of its own (a free port, no AOF, no RDB: only the scripts' cost) and
runs, in turn (A B B A ...), one process per checkout with ``PYTHONPATH=ROOT``: each does
``noop.enqueue_many([()] * N)`` REPS times (after one warm-up call), FLUSHALL before each, and
prints per job: the client's wall time, its Python CPU (getrusage) and Redis' CPU
(``INFO cpu``). The figures printed are medians over every call of each checkout (the rate is
1 / median wall), and the ratio of the two checkouts' median walls in each round (A's over B's:
the two ran within the same minute, so a busy machine shifts both). Options: ``--jobs N`` (20,000), ``--reps`` (5), ``--rounds`` (4).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time


def child(n: int, reps: int) -> None:
    """One checkout's run (imports it from PYTHONPATH); prints one JSON line per call."""
    import django
    import redis

    # This checkout's bench/ab.py, whatever PYTHONPATH names (see __main__ below: this directory is last on sys.path).
    from ab import py_cpu_s, redis_cpu_s

    django.setup()
    from bench.jobs import noop

    r = redis.Redis.from_url(os.environ["DJJ_BENCH_REDIS_URL"])

    calls = [()] * n
    noop.enqueue_many(calls)  # warm-up: scripts loaded, connection made
    for _ in range(reps):
        r.flushall()
        c0, p0, w0 = redis_cpu_s(r), py_cpu_s(), time.perf_counter()
        results = noop.enqueue_many(calls)
        w1, p1, c1 = time.perf_counter(), py_cpu_s(), redis_cpu_s(r)
        assert len(results) == n and results[-1].enqueued_at is not None
        print(json.dumps({"wall": (w1 - w0) / n * 1e6, "py": (p1 - p0) / n * 1e6, "redis": (c1 - c0) / n * 1e6}), flush=True)
    r.flushall()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("roots", nargs=2)
    parser.add_argument("--jobs", type=int, default=20_000)
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=4)
    args = parser.parse_args()
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    from bench.ab import alternate

    figures = alternate(__file__, args.roots, args.rounds, [str(args.jobs), str(args.reps)], prefix="bulk", key="wall")
    print(f"noop.enqueue_many([()] * {args.jobs}), {args.rounds} rounds x {args.reps} calls per checkout, medians per job:")
    for root, f in figures.per_root.items():
        wall = statistics.median(f["wall"])
        print(f"  {root}: wall {wall:.1f} us ({1e6 / wall:,.0f} jobs/s; best {1e6 / min(f['wall']):,.0f}), "
              f"Python CPU {statistics.median(f['py']):.1f} us, Redis CPU {statistics.median(f['redis']):.1f} us")
    a, b = args.roots
    ratios = figures.ratios(a, b)
    print(f"  wall of A / wall of B, per round (same minute): median {statistics.median(ratios):.2f}, "
          f"all {' '.join(f'{x:.2f}' for x in ratios)}; load average {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    if sys.argv[1:2] == ["--child"]:
        # The checkout measured, not this file's; this file's directory last, for its bench/ab.py only.
        sys.path[0:1] = [os.environ["PYTHONPATH"]]
        sys.path.append(os.path.dirname(os.path.abspath(__file__)))
        child(int(sys.argv[2]), int(sys.argv[3]))
    else:
        main()
