"""The command line of ``python -m bench``: the usual phases (bench/run.py), ``--peers`` (bench/peers.py) or ``--cluster N`` (bench/cluster.py)."""

from __future__ import annotations

import argparse
import signal
from collections.abc import Callable
from typing import Any

from bench import cluster, peers
from bench.run import Bench
from bench.run import __doc__ as RUN_DOC


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=(RUN_DOC or "").split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a 10x smaller run")
    parser.add_argument("--log-info", action="store_true", help="workers log at INFO (one line per job, to a file)")
    parser.add_argument("--django-default-logging", action="store_true",
                        help="leave the django.tasks logger as Django's default LOGGING sets it (INFO)")
    parser.add_argument("--unix", action="store_true", help="connect over the unix socket instead of TCP")
    parser.add_argument("--processes", type=int, default=2, help="worker processes (default 2)")
    parser.add_argument("--threads", type=int, default=8, help="threads per worker process (default 8)")
    parser.add_argument("--no-retention", action="store_true", help="skip the drain with default retention")
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    parser.add_argument("--mirror", action="store_true",
                        help="also measure the database mirror (SQLite file): drain with and without it, lag at ~1,000 jobs/s")
    parser.add_argument("--mirror-only", action="store_true", help="with --mirror: run only the mirror phase")
    parser.add_argument("--mirror-rate", type=int, default=1000, help="jobs/s of the mirror lag phase (default 1,000)")
    parser.add_argument("--queue-shards", type=int, metavar="N",
                        help="only the sharded-queue phase: drain the queue unsharded, then with SHARDS=N "
                        "(docs/scaling.md#sharded-queues): drain rate and Redis CPU per job")
    peers.add_arguments(parser)
    cluster.add_arguments(parser)
    args = parser.parse_args(argv)
    if args.peers and args.quick:
        args.jobs, args.latency_jobs = args.jobs // 10, max(20, args.latency_jobs // 10)
    if args.mirror_only:
        args.mirror = True
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.peers:
        return _with_sigterm(lambda: peers.main(args))
    if args.cluster:
        return _with_sigterm(lambda: cluster.main(args))
    bench = Bench(args)
    return _with_sigterm(bench.run)


def _with_sigterm(run: Callable[[], int]) -> int:
    def on_signal(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_signal)
    try:
        return run()
    except KeyboardInterrupt:
        return 130
