"""Redis time of the enqueue, fetch and settle scripts of two checkouts, interleaved on one server.

``.venv/bin/python -m bench.events_ab BEFORE_DIR [AFTER_DIR] [-n JOBS] [--rounds R]`` (AFTER_DIR
defaults to this checkout): each round runs, for each checkout in turn, JOBS single enqueues
(one job per call), JOBS jobs enqueued in calls of 100, and a drain of them (fetch 8, settle
the 8 as completed, kept for no time as ``bench.profile cost`` runs it), and (a trickle) JOBS
times one single enqueue, one fetch and its settle. Reported per phase: the median (and min)
over the rounds of Redis' main-thread CPU per job (``INFO cpu``: CPU
time, steadier than wall time on a loaded machine), the scripts' Redis time per job (``INFO commandstats`` usec of
``EVALSHA``, which includes the commands the scripts run), commands per job, and the events
stream's entries per job. Both checkouts' scripts share one Redis and alternate, so the load
of the machine hits both alike (used for issue 17's "events per batch", docs/performance.md).
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from django_jobs.engine.scripts import inline_includes

MAXLEN = 10_000
#: A trickle of single jobs into an idle worker: each enqueued alone, then one fetch (it finds
#: that one job) and its settle, enqueue included in the figures.
TRICKLE = "one at a time (enqueue 1, fetch 8, settle)"


def script_source(root: Path, name: str) -> str:
    """``lua/<name>.lua`` of the checkout at ``root`` with its includes inlined (as engine/scripts.py)."""
    lua = root / "django_jobs" / "engine" / "lua"
    return inline_includes((lua / f"{name}.lua").read_text(), lua / "includes")


class Side:
    def __init__(self, r: Any, root: Path, tag: str) -> None:
        self.r, self.tag = r, tag
        self.sha = {name: r.script_load(script_source(root, name)) for name in ("enqueue", "fetch", "settle")}
        self.base = f"ab:{{{tag}}}:"
        self.prefix = self.base + "job:"
        self.n = 0

    def key(self, name: str) -> str:
        return self.base + name

    def enqueue(self, count: int) -> None:
        args: list[Any] = [self.prefix, MAXLEN]
        for _ in range(count):
            self.n += 1
            args += [f"{self.n:032x}", '{"v":1,"n":"bench.jobs.noop","a":[],"k":{}}', 0, 0, 0, "", ""]
        keys = [self.key(k) for k in ("wait", "scheduled", "meta", "events", "marker")]
        self.r.evalsha(self.sha["enqueue"], len(keys), *keys, *args)

    def drain(self, once: bool = False) -> None:
        """Fetch 8 and settle them until a fetch finds nothing (``once``: one fetch and its settle)."""
        fetch_keys = [self.key(k) for k in ("wait", "scheduled", "active", "meta", "events", "marker", "rate")]
        settle_keys = [self.key(k) for k in ("active", "wait", "scheduled", "completed", "failed", "cancelled", "meta", "events", "marker")]
        while True:
            out = self.r.evalsha(self.sha["fetch"], len(fetch_keys), *fetch_keys, self.prefix, MAXLEN, 8, 60_000, "w1", 1000, 0, 0, 0)
            claimed = [(out[i], out[i + 1]) for i in range(2, len(out), 7)]
            if not claimed:
                return
            args: list[Any] = [self.prefix, MAXLEN, 0, 10_000, 7 * 86_400_000, 10_000]
            for job_id, token in claimed:
                args += [job_id, token, "c", "null", 0, 0]
            self.r.evalsha(self.sha["settle"], len(settle_keys), *settle_keys, *args)
            if once:
                return


def redis_cpu(r: Any) -> float:
    cpu = r.info("cpu")
    return float(cpu["used_cpu_user_main_thread"] + cpu["used_cpu_sys_main_thread"])


def measure(r: Any, side: Side, count: int, run: Any) -> tuple[float, float, float, float]:
    events0 = r.xinfo_stream(side.key("events"))["entries-added"] if r.exists(side.key("events")) else 0
    r.config_resetstat()
    cpu0 = redis_cpu(r)
    run()
    cpu = redis_cpu(r) - cpu0
    stats = r.info("commandstats")
    usec = stats.get("cmdstat_evalsha", {}).get("usec", 0)
    cmds = sum(v["calls"] for k, v in stats.items() if k not in ("cmdstat_info", "cmdstat_config|resetstat", "cmdstat_exists"))
    events = r.xinfo_stream(side.key("events"))["entries-added"] - events0
    return usec / count, (cmds - 1) / count, events / count, cpu / count * 1e6  # -1: the XINFO read above


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("before", type=Path)
    parser.add_argument("after", type=Path, nargs="?", default=Path(__file__).resolve().parent.parent)
    parser.add_argument("-n", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=5)
    opts = parser.parse_args()

    from bench.cli import parse_args
    from bench.run import Bench

    bench = Bench(parse_args([]))
    bench.setup()
    try:
        r = bench.r
        assert r is not None
        sides = {"before": opts.before, "after": opts.after}
        results: dict[tuple[str, str], list[tuple[float, float, float, float]]] = {}
        for rnd in range(opts.rounds):
            for label, root in sides.items():
                side = Side(r, root, f"{label}{rnd}")
                n = opts.n

                def single(side: Side = side, n: int = n) -> None:
                    for _ in range(n):
                        side.enqueue(1)

                def bulk(side: Side = side, n: int = n) -> None:
                    for _ in range(n // 100):
                        side.enqueue(100)

                results.setdefault((label, "enqueue, single"), []).append(measure(r, side, n, single))
                side.drain()
                results.setdefault((label, "enqueue, bulk x100"), []).append(measure(r, side, n, bulk))
                results.setdefault((label, "drain (fetch 8, settle 8)"), []).append(measure(r, side, n, side.drain))

                def trickle(side: Side = side, n: int = n) -> None:
                    for _ in range(n):
                        side.enqueue(1)
                        side.drain(once=True)

                results.setdefault((label, TRICKLE), []).append(measure(r, side, n, trickle))
                r.flushall()
        for phase in ("enqueue, single", "enqueue, bulk x100", "drain (fetch 8, settle 8)", TRICKLE):
            for label in sides:
                rows = results[(label, phase)]
                usec = statistics.median(x[0] for x in rows)
                cpu = statistics.median(x[3] for x in rows)
                print(f"{phase:26s} {label:6s}: Redis CPU {cpu:6.1f} us/job (min {min(x[3] for x in rows):.1f}); "
                      f"scripts {usec:6.1f} us/job in Redis (min {min(x[0] for x in rows):.1f}); "
                      f"{rows[0][1]:.2f} commands/job; {rows[0][2]:.3f} events entries/job")
    finally:
        bench.cleanup()


if __name__ == "__main__":
    main()
