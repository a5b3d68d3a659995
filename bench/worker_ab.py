"""A worker's CPU per drained job, two checkouts in turn (issue 17): ``.venv/bin/python -m bench.worker_ab BEFORE [AFTER]``.

Each round runs ``python -m bench.profile worker --no-yappi -n N`` in each checkout (AFTER
defaults to this one; the order alternates each round): one in-process burst
:class:`~django_jobs.worker.process.WorkerProcess` of 8 threads draining N pre-enqueued no-op jobs
on a redis-server of its own, and its CPU per job (``getrusage``: every thread of the worker,
fetch, settle, dispatch, the job threads, user and system; the system part too) and its voluntary context switches
per job (``ru_nvcsw``: mostly thread wake-ups). Prints each round's pair and the ratio AFTER /
BEFORE, then the medians. Unlike ``--peers`` (two worker processes and the
benchmark's own polling), nothing else runs in the measured process.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path


def measure(root: str, n: int) -> tuple[int, int, float, int]:
    """One drain in ``root``: (worker CPU us per job, jobs per second, voluntary context switches per job, system CPU us per job)."""
    out = subprocess.run(
        [sys.executable, "-m", "bench.profile", "worker", "--no-yappi", "-n", str(n)],
        cwd=root, env=dict(os.environ, PYTHONPATH=root), capture_output=True, text=True, check=True,
    ).stdout
    cpu = re.search(r"worker CPU (\d+) us/job", out)
    rate = re.search(r"\(([\d,]+)/s\)", out)
    switches = re.search(r"voluntary context switches ([\d.]+)/job", out)
    system = re.search(r"sys (\d+)\)", out)
    if cpu is None or rate is None or switches is None or system is None:
        raise SystemExit(f"no figures in the output of {root}:\n{out}")
    return int(cpu.group(1)), int(rate.group(1).replace(",", "")), float(switches.group(1)), int(system.group(1))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("before")
    parser.add_argument("after", nargs="?", default=str(Path(__file__).resolve().parent.parent))
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("-n", type=int, default=10_000, help="jobs per drain")
    args = parser.parse_args()
    roots = [args.before, args.after]
    cpu: dict[str, list[int]] = {root: [] for root in roots}
    rate: dict[str, list[int]] = {root: [] for root in roots}
    csw: dict[str, list[float]] = {root: [] for root in roots}
    sys_cpu: dict[str, list[int]] = {root: [] for root in roots}
    ratios = []
    print(f"{time.strftime('%H:%M:%S', time.gmtime())} UTC, load {os.getloadavg()[0]:.1f}")
    for round_ in range(args.rounds):
        got = {}
        for root in roots if round_ % 2 == 0 else roots[::-1]:
            got[root], per_s, switches, system = measure(root, args.n)
            sys_cpu[root].append(system)
            cpu[root].append(got[root])
            rate[root].append(per_s)
            csw[root].append(switches)
        ratios.append(got[args.after] / got[args.before])
        print(f"round {round_ + 1}: worker CPU {got[args.before]} / {got[args.after]} us per job, x{ratios[-1]:.2f}; "
              f"of it system {sys_cpu[args.before][-1]} / {sys_cpu[args.after][-1]} us; "
              f"voluntary context switches {csw[args.before][-1]:.1f} / {csw[args.after][-1]:.1f} per job; "
              f"{rate[args.before][-1]:,} / {rate[args.after][-1]:,} jobs/s", flush=True)
    for root in roots:
        print(f"{root}: CPU per job median {statistics.median(cpu[root]):.0f} us ({' '.join(map(str, cpu[root]))}); "
              f"system CPU median {statistics.median(sys_cpu[root]):.0f} us; rate median {statistics.median(rate[root]):,.0f} jobs/s; "
              f"voluntary context switches median {statistics.median(csw[root]):.1f} per job")
    lower = sum(1 for r in ratios if r < 1)
    print(f"after / before per round: median x{statistics.median(ratios):.2f} (x{min(ratios):.2f}-x{max(ratios):.2f}), "
          f"lower in {lower} of {len(ratios)}")
    print(f"{time.strftime('%H:%M:%S', time.gmtime())} UTC, load {os.getloadavg()[0]:.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
