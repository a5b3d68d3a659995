"""The executor's CPU per job of two checkouts (issue 17), ``.venv/bin/python -m bench.executor_ab BEFORE [AFTER]``.

For each checkout in turn (AFTER defaults to this one), a fresh process builds a claimed no-op
job (``bench.jobs.noop``, no Redis), decodes it (``Prepared``) and runs it (``run_sync``) 20,000
times, 7 times over, and prints the min and the median of the process CPU per job; the
checkouts take turns ``--rounds`` times (default 4), so the machine's load falls on both.
The worker's own path around the job (fetch, settle, threads) is not in it: what changes in
``worker/executor.py``, ``engine/record.py`` or ``serialization.py`` shows here undiluted.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

RUN = r"""
import os, sys, time
root = sys.argv[1]
sys.path.insert(0, root)
os.chdir(root)
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bench.settings")
import django
django.setup()
import bench.jobs  # registers noop
from django_jobs.engine.queue import Claimed
from django_jobs.worker.executor import Prepared, RunningJob, run_sync
from django_jobs.worker.process import quiet_django_task_logging
quiet_django_task_logging()  # as runworkers' worker processes do
claimed = Claimed(queue="default", id="abc", token="5", data='{"v":1,"n":"bench.jobs.noop"}', attempt=1,
                  enqueued_ms=1, correlation_id="x" * 20, parent_id="")
per_job = []
for _ in range(7):
    t0 = time.process_time()
    for _ in range(20000):
        job = RunningJob(claimed)
        job.started = 0.0
        run_sync(job, Prepared(job, "w1"))
    per_job.append((time.process_time() - t0) / 20000 * 1e6)
per_job.sort()
print(per_job[0], per_job[3])
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("before")
    parser.add_argument("after", nargs="?", default=str(Path(__file__).resolve().parent.parent))
    parser.add_argument("--rounds", type=int, default=4)
    args = parser.parse_args()
    roots = [args.before, args.after]
    results: dict[str, list[tuple[float, float]]] = {root: [] for root in roots}
    for _ in range(args.rounds):
        for root in roots:
            out = subprocess.run([sys.executable, "-c", RUN, root], capture_output=True, text=True, check=True).stdout.split()
            results[root].append((float(out[0]), float(out[1])))
    for root, values in results.items():
        print(f"{root}: CPU per no-op job (Prepared + run_sync), min of 7 x 20,000 per round: "
              f"{' '.join(f'{m:.1f}' for m, _ in values)} us; medians {' '.join(f'{md:.1f}' for _, md in values)} us")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
