"""Redis CPU of the mirror's two scripts per job (issue 17), ``python -m bench.mirror_scripts [[LABEL=]DIR ...]``.

On the bench's private redis-server, ``-n`` no-op jobs are drained (completed, kept) by an
in-process burst worker; then, for each checkout given (``LABEL=DIR``: its ``mirror_snapshot.lua``
and ``mirror_done.lua`` with their includes) and this one, in rotating order per round, each
variant runs over all the jobs in batches of ``--batch`` and Redis' CPU (``INFO cpu``, the
socket and the reply included) is put down per job:

- ``snapshot``: ``mirror_snapshot.lua`` of a batch (every hash read whole);
- ``snapshot lean``: the same with every job a lean candidate (a mirror behind: ``HGET`` of
  the state first; none is waiting here, so each is read whole after it);
- ``multi``: what the snapshot reads, sent as ``MULTI`` / ``XREVRANGE`` / ``HGETALL`` per job / ``EXEC``;
- ``engine, script`` / ``engine, bare``: the snapshot as the mirror makes it through this checkout's
  engine, by the script or by ``Engine.mirror_snapshot`` (bare commands in ``MULTI``), the
  replies decoded into dicts: Redis' CPU and this process' (the mirror's side);
- ``done``: ``mirror_done.lua`` recording the batch's jobs (the first round lists them as
  recorded; later rounds find them listed already: the same reads, a ``ZADD`` that adds nothing).

The median over ``--rounds`` rounds, per variant and checkout.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.cli import parse_args
from bench.run import Bench, redis_cpu_s


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkouts", nargs="*", help="[LABEL=]DIR of other checkouts")
    parser.add_argument("-n", "--jobs", type=int, default=10_000)
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    bench = Bench(parse_args([]))
    bench.setup()
    try:
        from bench import jobs
        from django_jobs.engine import get_engine
        from django_jobs.engine.keys import MIRROR_GROUP
        from django_jobs.engine.scripts import inline_includes
        from django_jobs.engine.streams import _pairs
        from django_jobs.worker.process import WorkerProcess, quiet_django_task_logging

        quiet_django_task_logging()
        engine = get_engine()
        bench.flush()
        engine.mirror_ensure_group("default", MIRROR_GROUP)
        ids = [r.id for start in range(0, args.jobs, 1000) for r in jobs.noop.enqueue_many([()] * min(1000, args.jobs - start))]
        WorkerProcess(queues=["default"], threads=8, burst=True).run()
        r = bench.r
        assert r is not None
        k = engine.keys("default")
        prefix = k.job_prefix
        hashes = [r.hget(prefix + job_id, "f") for job_id in ids[:3]]
        assert all(hashes), "the jobs' hashes are gone: are completed jobs kept?"
        here = Path(__file__).resolve().parent.parent
        roots = [("this", here)] + [
            (spec.rpartition("=")[0] or Path(spec).name, Path(spec.rpartition("=")[2]).resolve()) for spec in args.checkouts
        ]
        shas = {}
        for label, root in roots:
            for name in ("mirror_snapshot", "mirror_done"):
                lua = root / "django_jobs" / "engine" / "lua"
                shas[label, name] = r.script_load(inline_includes((lua / f"{name}.lua").read_text(), lua / "includes"))
        with r.pipeline(transaction=False) as pipe:
            for job_id in ids:
                pipe.hget(prefix + job_id, "f")
            finish = dict(zip(ids, pipe.execute(), strict=True))
        batches = [ids[i : i + args.batch] for i in range(0, len(ids), args.batch)]
        done_keys = [k.events, k.completed, k.failed, k.cancelled]

        def snapshot(label: str, lean: bool) -> None:
            for batch in batches:
                r.evalsha(shas[label, "mirror_snapshot"], 1, k.events, prefix, len(batch) if lean else 0, *batch)

        def multi() -> None:
            for batch in batches:
                with r.pipeline(transaction=True) as pipe:
                    pipe.xrevrange(k.events, count=1)
                    for job_id in batch:
                        pipe.hgetall(prefix + job_id)
                    pipe.execute()

        def done(label: str) -> None:
            for batch in batches:
                pairs = [v for job_id in batch for v in (job_id, finish[job_id])]
                r.evalsha(shas[label, "mirror_done"], 4, *done_keys, MIRROR_GROUP, prefix, 10_000, 1_000_000, 1_000_000, 0, *pairs)

        def engine_snapshot(script: bool) -> None:
            # As the mirror calls it (this checkout's engine): the replies decoded into dicts.
            for batch in batches:
                if script:
                    _tip, *got = engine._run("mirror_snapshot", (k.events,), (prefix, 0, *batch))
                    [_pairs(h) if h else {} for h in got]
                else:
                    engine.mirror_snapshot("default", batch)

        variants = [(f"{label} {what}", label, what) for label, _ in roots for what in ("snapshot", "snapshot lean", "done")]
        variants += [("multi", "", "multi"), ("engine, script", "", "engine script"), ("engine, bare", "", "engine bare")]
        results: dict[str, list[float]] = {name: [] for name, _, _ in variants}
        client: dict[str, list[float]] = {name: [] for name, _, _ in variants}
        for rnd in range(args.rounds):
            order = variants[rnd % len(variants):] + variants[: rnd % len(variants)]
            for name, label, what in order:
                cpu0, own0 = redis_cpu_s(r), time.process_time()
                if what.startswith("engine"):
                    engine_snapshot(what == "engine script")
                elif what == "multi":
                    multi()
                elif what == "done":
                    done(label)
                else:
                    snapshot(label, what == "snapshot lean")
                client[name].append((time.process_time() - own0) / len(ids) * 1e6)
                results[name].append((redis_cpu_s(r) - cpu0) / len(ids) * 1e6)
        print(f"Redis CPU per job (INFO cpu), median (min) of {args.rounds} rounds, {len(ids):,} jobs in batches of {args.batch}:")
        for name, values in results.items():
            print(f"  {name:24s} {statistics.median(values):6.2f} us ({min(values):.2f})"
                  + (f"; this process {statistics.median(client[name]):6.2f} us" if name.startswith("engine") else ""))
    finally:
        bench.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
