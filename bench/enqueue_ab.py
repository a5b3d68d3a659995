"""A/B in one process (issue 17), ``.venv/bin/python -m bench.enqueue_ab [job]``: enqueue() Python CPU (round trip replaced, as bench.profile enqueue-cpu), with
JobTask.get_backend / JobResult.__post_init__ as on this branch (new) and as Django's (old), alternating."""
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.cli import parse_args
from bench.run import Bench
bench = Bench(parse_args([])); bench.setup()
try:
    from bench import jobs
    from django_jobs.engine import get_engine
    from django_jobs.tasks import JobTask, JobResult
    from django_jobs.compat import Task, TaskResult
    job = getattr(jobs, sys.argv[1] if len(sys.argv) > 1 else "noop")
    args = (12345,) if job is jobs.stamp else ()
    job.enqueue(*args)
    conn = get_engine()._lane.own.conn
    now_ms = int(time.time() * 1000)
    conn.send_packed_command = lambda command, check_health=True: None
    conn.send_command = lambda *a, **k: conn.pack_command(*a)
    conn.read_response = lambda *a, **k: [1, now_ms]
    new = (JobTask.get_backend, JobResult.__post_init__)
    old = (Task.get_backend, TaskResult.__post_init__)
    def use(pair):
        JobTask.get_backend, JobResult.__post_init__ = pair
    res = {"old": [], "new": []}
    n = 3000
    for _ in range(1000): job.enqueue(*args)
    for rnd in range(12):
        for name, pair in (("old", old), ("new", new)) if rnd % 2 else (("new", new), ("old", old)):
            use(pair)
            t0 = time.process_time()
            for _ in range(n): job.enqueue(*args)
            res[name].append((time.process_time() - t0) / n * 1e6)
    for name, v in res.items():
        print(f"{job.module_path} {name}: median {statistics.median(v):.1f} us, min {min(v):.1f}")
finally:
    bench.cleanup()
