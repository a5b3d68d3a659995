"""Enqueue cost per job of one checkout (issue 17), ``python -m bench.enqueue_cost [ROOT]``.

Run it from two checkouts in turn (e.g. a ``git archive`` of the base commit as ROOT, with
``PYTHONPATH=ROOT``) to compare them on a busy machine:

- Python CPU per job of ``noop.enqueue()`` and of ``noop.enqueue_many([()] * 1000)`` with the round
  trip replaced by a canned reply (as ``bench.profile enqueue-cpu``): median and min of 7 runs;
- Redis CPU per job (``INFO cpu``) of the same, against the real server: median of 5 runs.
"""
import statistics
import sys
import time
from pathlib import Path

root = sys.argv[1] if len(sys.argv) > 1 else str(Path(__file__).resolve().parent.parent)
sys.path.insert(0, root)

from bench.cli import parse_args
from bench.run import Bench

bench = Bench(parse_args([]))
bench.setup()
try:
    from bench.jobs import noop
    from django_jobs.engine import get_engine

    r = bench.r
    assert r is not None

    def redis_cpu() -> float:
        info = r.info("cpu")
        return float(info["used_cpu_user"] + info["used_cpu_sys"])

    noop.enqueue()
    noop.enqueue_many([()] * 1000)
    bench.flush()
    rc: dict[str, list[float]] = {"single": [], "bulk": []}
    for _ in range(5):
        c0 = redis_cpu()
        for _ in range(5):
            noop.enqueue_many([()] * 1000)
        rc["bulk"].append((redis_cpu() - c0) / 5000 * 1e6)
        bench.flush()
        c0 = redis_cpu()
        for _ in range(1000):
            noop.enqueue()
        rc["single"].append((redis_cpu() - c0) / 1000 * 1e6)
        bench.flush()

    conn = get_engine()._lane.own.conn
    now_ms = int(time.time() * 1000)
    conn.send_packed_command = lambda command, check_health=True: None
    conn.send_command = lambda *a, **k: conn.pack_command(*a)
    batch = {"n": 1}
    one, many = [1, now_ms], [1, now_ms] * 1000
    conn.read_response = lambda *a, **k: one if batch["n"] == 1 else many[: 2 * batch["n"]]
    py: dict[str, list[float]] = {"single": [], "bulk": []}
    chunk = 500  # backends.BULK_CHUNK: the replies of one script call
    for _ in range(7):
        batch["n"] = 1
        t0 = time.process_time()
        for _ in range(5000):
            noop.enqueue()
        py["single"].append((time.process_time() - t0) / 5000 * 1e6)
        batch["n"] = chunk
        t0 = time.process_time()
        for _ in range(5):
            noop.enqueue_many([()] * 1000)
        py["bulk"].append((time.process_time() - t0) / 5000 * 1e6)
    print(f"{root}: Python CPU per job (round trip replaced): single {statistics.median(py['single']):.1f} us "
          f"(min {min(py['single']):.1f}), bulk {statistics.median(py['bulk']):.1f} us (min {min(py['bulk']):.1f}); "
          f"Redis CPU per job: single {statistics.median(rc['single']):.1f} us, bulk {statistics.median(rc['bulk']):.1f} us")
finally:
    bench.cleanup()
