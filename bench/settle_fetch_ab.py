"""A worker's settle-and-fetch calls of two checkouts, A/B interleaved (issue 17): ``python bench/settle_fetch_ab.py ROOT_A ROOT_B``.

Starts one redis-server of its own (a free port, no AOF, no RDB: only the calls' cost) and runs,
in turn (A B B A ...), one process per checkout with ``PYTHONPATH=ROOT``: each enqueues N jobs
(``enqueue_many``), fetches a first batch of ``--batch``, then drains the queue as a worker at
saturation does, ``Engine.settle_and_fetch`` with the outcomes of the batch before (completed)
and a claim of the next, and settles the last batch alone; REPS times, FLUSHALL before each. It
prints per drained job: the client's wall time, its Python CPU (getrusage: redis-py, the
engine's argument building and packing, reading the replies; no job runs) and Redis' CPU
(``INFO cpu``). Medians over every drain of each checkout, and the ratio of the two checkouts'
median Python CPU in each round (A's over B's). Options: ``--jobs N`` (10,000), ``--batch``
(8), ``--reps`` (3), ``--rounds`` (4).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time


def child(n: int, batch: int, reps: int) -> None:
    """One checkout's run (imports it from PYTHONPATH); prints one JSON line per drain."""
    import django
    import redis

    # This checkout's bench/ab.py, whatever PYTHONPATH names (see __main__ below: this directory is last on sys.path).
    from ab import py_cpu_s, redis_cpu_s

    django.setup()
    from django_jobs.engine import get_engine
    from django_jobs.engine.queue import NewJob, Outcome

    engine = get_engine()
    r = redis.Redis.from_url(os.environ["DJJ_BENCH_REDIS_URL"])
    data = '{"v":1,"n":"bench.jobs.noop","a":[],"k":{}}'

    for rep in range(reps + 1):  # the first is a warm-up
        r.flushall()
        engine.enqueue_many("default", [NewJob(id=f"j{rep}-{i}", data=data) for i in range(n)], chunk=1000)
        c0, p0, w0 = redis_cpu_s(r), py_cpu_s(), time.perf_counter()
        jobs = engine.fetch("default", batch, lease_ms=60_000, worker_id="bench:1:ab", start_now=batch).jobs
        done = 0
        while jobs:
            done += len(jobs)
            codes, res = engine.settle_and_fetch(
                "default", [Outcome(j.id, j.token, "c", "null") for j in jobs], batch, lease_ms=60_000,
                worker_id="bench:1:ab", start_now=batch,
            )
            assert codes == [1] * len(jobs), codes
            jobs = res.jobs
        w1, p1, c1 = time.perf_counter(), py_cpu_s(), redis_cpu_s(r)
        assert done == n, done
        if rep:
            print(json.dumps({"wall": (w1 - w0) / n * 1e6, "py": (p1 - p0) / n * 1e6, "redis": (c1 - c0) / n * 1e6}), flush=True)
    r.flushall()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("roots", nargs=2)
    parser.add_argument("--jobs", type=int, default=10_000)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=4)
    args = parser.parse_args()
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    from bench.ab import alternate

    load0 = os.getloadavg()[0]
    figures = alternate(__file__, args.roots, args.rounds, [str(args.jobs), str(args.batch), str(args.reps)],
                        prefix="sfab", key="py")
    print(f"{args.jobs} jobs drained by settle_and_fetch of {args.batch}, {args.rounds} rounds x {args.reps} drains per checkout, "
          "medians per job:")
    for root, f in figures.per_root.items():
        print(f"  {root}: wall {statistics.median(f['wall']):.1f} us, Python CPU {statistics.median(f['py']):.1f} us "
              f"(min {min(f['py']):.1f}), Redis CPU {statistics.median(f['redis']):.1f} us (min {min(f['redis']):.1f})")
    a, b = args.roots
    ratios = figures.ratios(a, b)
    print(f"  Python CPU of A / of B, per round: median {statistics.median(ratios):.2f}, all {' '.join(f'{x:.2f}' for x in ratios)}; "
          f"load average {load0:.1f} -> {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    if sys.argv[1:2] == ["--child"]:
        # The checkout measured, not this file's; this file's directory last, for its bench/ab.py only.
        sys.path[0:1] = [os.environ["PYTHONPATH"]]
        sys.path.append(os.path.dirname(os.path.abspath(__file__)))
        child(int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]))
    else:
        main()
