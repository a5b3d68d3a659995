"""Redis work per job, command by command and script by script (issue 17), ``python -m bench.job_cost [[LABEL=]DIR ...]``.

A fire-and-forget job's life as the ``--peers`` drain runs it (``KEEP_COMPLETED={"AGE": 0}``, no
mirror): one single enqueue per job, then fetches of ``--batch`` jobs, each followed by the settle
of those jobs as completed (kept for no time). On the bench's private redis-server, for each
checkout given (``LABEL=DIR``, e.g. ``base=/tmp/base`` for a ``git archive`` of main) and this
one, in turn: ``-n`` jobs enqueued, then drained; ``INFO commandstats`` is read after every script
call, so each command's calls and usec (Redis 7 counts the commands a script runs, with their
time) are put down to the script that ran them. Printed per checkout: a table, per command, of
calls and usec per job under each script (enqueue, fetch, settle), then each script's own
``EVALSHA`` line (its usec includes its commands'), and the totals.

``--together``: a checkout that has ``settle_and_fetch.lua`` drains as a worker at saturation does
since it came (each fetch carries the settle of the batch before it, one script call: the
column ``settle_and_fetch``); a checkout without it, with a ``fetch`` and a ``settle`` call per
batch, as ``Engine.settle_and_fetch`` sent them pipelined before.

``--rounds R`` repeats it (checkouts taking turns); calls are the same every round, usec is the
median. The commands' usec excludes the Lua around them and the round trip: ``INFO cpu`` per
phase (``--cpu``, a second pass without the per-call ``INFO``) gives Redis' whole CPU per job
(the socket, the event loop and the AOF included; ``--no-aof`` runs without the AOF).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.events_ab import script_source

MAXLEN = 10_000
PAYLOAD = '{"v":1,"n":"bench.jobs.incr","a":[],"k":{}}'
SCRIPTS = ("enqueue", "fetch", "settle", "settle_and_fetch")
IGNORED = ("info", "config|resetstat", "flushall", "script|load")
Stats = dict[str, tuple[int, int]]


def command_stats(r: Any) -> Stats:
    return {k[8:]: (v["calls"], v["usec"]) for k, v in r.info("commandstats").items() if k[8:] not in IGNORED}


def delta(before: Stats, after: Stats) -> Stats:
    out = {}
    for name, (calls, usec) in after.items():
        c0, u0 = before.get(name, (0, 0))
        if calls - c0:
            out[name] = (calls - c0, usec - u0)
    return out


def redis_cpu(r: Any) -> float:
    cpu = r.info("cpu")
    return float(cpu["used_cpu_user_main_thread"] + cpu["used_cpu_sys_main_thread"])


class Side:
    """One checkout's scripts on one queue of the shared server."""

    def __init__(self, r: Any, root: Path, tag: str, batch: int, quiet: bool = False, together: bool = False) -> None:
        self.r, self.batch = r, batch
        self.tail: tuple[Any, ...] = (batch, 1) if quiet else (batch,)  # ARGV[10] start_now, ARGV[11] no "active" events
        have = [name for name in SCRIPTS if (root / "django_jobs" / "engine" / "lua" / f"{name}.lua").exists()]
        self.sha = {name: r.script_load(script_source(root, name)) for name in have}
        #: Each fetch carries the settle of the batch before it (settle_and_fetch.lua).
        self.together = together and "settle_and_fetch" in self.sha
        self.base = f"jc:{{{tag}}}:"
        self.prefix = self.base + "job:"
        self.n = 0

    def keys(self, *names: str) -> list[str]:
        return [self.base + k for k in names]

    def enqueue(self) -> None:
        self.n += 1
        keys = self.keys("wait", "scheduled", "meta", "events", "marker")
        # As Engine.enqueue sends one job (20-character id).
        self.r.evalsha(self.sha["enqueue"], len(keys), *keys, self.prefix, MAXLEN, f"{self.n:020d}", PAYLOAD, 0, 0, 0, "", "")

    def fetch(self) -> list[tuple[str, int]]:
        keys = self.keys("wait", "scheduled", "active", "meta", "events", "marker", "rate")
        # As Engine._fetch_call with the worker's free threads (start_now) = the batch.
        out = self.r.evalsha(self.sha["fetch"], len(keys), *keys, self.prefix, MAXLEN, self.batch, 60_000, "host:1:w",
                             1000, 0, 0, 0, *self.tail)
        return [(out[i], out[i + 1]) for i in range(2, len(out), 7)]

    def settle(self, claimed: list[tuple[str, int]]) -> None:
        keys = self.keys("active", "wait", "scheduled", "completed", "failed", "cancelled", "meta", "events", "marker")
        args: list[Any] = [self.prefix, MAXLEN, 0, 0, 7 * 86_400_000, 0]  # KEEP_COMPLETED={"AGE": 0}
        for job_id, token in claimed:
            args += [job_id, token, "c", "null", 0, 0]
        codes = self.r.evalsha(self.sha["settle"], len(keys), *keys, *args)
        assert all(c == 1 for c in codes), codes

    def settle_and_fetch(self, claimed: list[tuple[str, int]]) -> list[tuple[str, int]]:
        """Settle ``claimed`` as completed and fetch the next batch in one call, as Engine.settle_and_fetch sends it."""
        keys = self.keys("active", "wait", "scheduled", "completed", "failed", "cancelled", "meta", "events", "marker", "rate")
        packed = json.dumps([v for job_id, token in claimed for v in (job_id, str(token), "c", "null", 0, 0)], separators=(",", ":"))
        codes, out = self.r.evalsha(self.sha["settle_and_fetch"], len(keys), *keys, self.prefix, MAXLEN, 0, 0, 7 * 86_400_000, 0,
                                    packed, self.batch, 60_000, "host:1:w", 1000, 0, 0, 0, *self.tail)
        assert all(c == 1 for c in codes), codes
        return [(out[i], out[i + 1]) for i in range(2, len(out), 7)]


def attributed(r: Any, side: Side, n: int) -> dict[str, Stats]:
    """Enqueue n jobs and drain them, each script call's commands put down to its script."""
    per: dict[str, dict[str, list[int]]] = {s: {} for s in SCRIPTS}

    def add(script: str, d: Stats) -> None:
        for name, (calls, usec) in d.items():
            acc = per[script].setdefault(name, [0, 0])
            acc[0] += calls
            acc[1] += usec

    s0 = command_stats(r)
    for _ in range(n):
        side.enqueue()
        s1 = command_stats(r)
        add("enqueue", delta(s0, s1))
        s0 = s1
    done = 0
    claimed: list[tuple[str, int]] = []
    while done < n:
        if side.together and claimed:
            claimed = side.settle_and_fetch(claimed)
            s1 = command_stats(r)
            add("settle_and_fetch", delta(s0, s1))
        else:
            claimed = side.fetch()
            s1 = command_stats(r)
            add("fetch", delta(s0, s1))
        s0 = s1
        if not claimed:
            raise SystemExit(f"the drain stopped after {done} of {n} jobs")
        done += len(claimed)
        if not side.together or done >= n:
            side.settle(claimed)
            s1 = command_stats(r)
            add("settle", delta(s0, s1))
            s0 = s1
    return {s: {k: (v[0], v[1]) for k, v in d.items()} for s, d in per.items()}


def cpu_pass(r: Any, side: Side, n: int) -> tuple[float, float]:
    """Redis CPU per job (us) of the enqueues and of the drain, without per-call INFO."""
    c0 = redis_cpu(r)
    for _ in range(n):
        side.enqueue()
    c1 = redis_cpu(r)
    done = 0
    claimed: list[tuple[str, int]] = []
    while done < n:
        claimed = side.settle_and_fetch(claimed) if side.together and claimed else side.fetch()
        done += len(claimed)
        if not side.together or done >= n:
            side.settle(claimed)
    c2 = redis_cpu(r)
    return (c1 - c0) / n * 1e6, (c2 - c1) / n * 1e6


def table(label: str, rounds: list[dict[str, Stats]], n: int, cpu: list[tuple[float, float]]) -> str:
    names = sorted({c for rnd in rounds for s in SCRIPTS for c in rnd[s]}, key=lambda c: (c == "evalsha", c))

    def cell(script: str, name: str) -> tuple[float, float]:
        calls = rounds[0][script].get(name, (0, 0))[0] / n
        usec = statistics.median(rnd[script].get(name, (0, 0))[1] for rnd in rounds) / n
        return calls, usec

    head = "| command | " + " | ".join(f"{s}: calls | usec" for s in SCRIPTS) + " | total: calls | usec |"
    out = [f"{label}: per job, {n} jobs per round, median usec of {len(rounds)} round(s)", "", head,
           "|---|" + "---:|---:|" * (len(SCRIPTS) + 1)]
    for name in names:
        if name == "evalsha":
            continue
        cells, tc, tu = [], 0.0, 0.0
        for s in SCRIPTS:
            c, u = cell(s, name)
            tc, tu = tc + c, tu + u
            cells.append(f"{c:.3f} | {u:.2f}" if c else "|")
        out.append(f"| `{name.upper()}` | " + " | ".join(cells) + f" | {tc:.3f} | {tu:.2f} |")
    cells, tc, tu = [], 0.0, 0.0
    inner = []
    for s in SCRIPTS:
        c, u = cell(s, "evalsha")
        tc, tu = tc + c, tu + u
        cells.append(f"{c:.3f} | {u:.2f}")
        inner.append(sum(cell(s, x)[0] for x in names if x != "evalsha"))
    out.append("| `EVALSHA` (the script: usec includes its commands) | " + " | ".join(cells) + f" | {tc:.3f} | {tu:.2f} |")
    out.append("| commands run by the script | " + " | ".join(f"{c:.3f} |" for c in inner) + f" | {sum(inner):.3f} | |")
    out.append("| commands per job, `EVALSHA` included | " + " | ".join(f"{c + cell(s, 'evalsha')[0]:.3f} |" for s, c in zip(SCRIPTS, inner))
               + f" | {sum(inner) + tc:.3f} | |")
    if cpu:
        e = statistics.median(x[0] for x in cpu)
        d = statistics.median(x[1] for x in cpu)
        out.append(f"\nRedis CPU per job (INFO cpu, median of {len(cpu)}): enqueue {e:.1f} us, drain {d:.1f} us "
                   f"(min {min(x[0] for x in cpu):.1f} / {min(x[1] for x in cpu):.1f})")
    return "\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkouts", nargs="*", help="[LABEL=]DIR of each other checkout (e.g. base=/tmp/base)")
    parser.add_argument("-n", type=int, default=2000, help="jobs per round")
    parser.add_argument("--batch", type=int, default=8, help="jobs per fetch (and per settle)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--cpu", action="store_true", help="also INFO cpu per phase, in a pass without per-call INFO")
    parser.add_argument("--no-active-events", action="store_true", help="fetch as for a queue with ACTIVE_EVENTS False "
                        "(ARGV[11]; a checkout before it ignores the argument)")
    parser.add_argument("--together", action="store_true", help="a checkout with settle_and_fetch.lua: each fetch "
                        "carries the settle of the batch before it, in one call")
    parser.add_argument("--no-aof", action="store_true", help="turn the server's AOF off (CONFIG SET appendonly no): "
                        "what the AOF costs per job, by difference with a run with it")
    opts = parser.parse_args()

    from bench.cli import parse_args
    from bench.run import Bench

    sides: dict[str, Path] = {}
    for spec in opts.checkouts:
        label, _, path = spec.rpartition("=")
        sides[label or Path(path).name] = Path(path)
    sides["this"] = Path(__file__).resolve().parent.parent
    bench = Bench(parse_args([]))
    bench.setup()
    try:
        r = bench.r
        assert r is not None
        if opts.no_aof:
            r.config_set("appendonly", "no")
        results: dict[str, list[dict[str, Stats]]] = {label: [] for label in sides}
        cpus: dict[str, list[tuple[float, float]]] = {label: [] for label in sides}
        for rnd in range(opts.rounds):
            for label, root in sides.items():
                # The queue's first call (its token, stream and meta created) is not counted.
                side = Side(r, root, f"{label}{rnd}", opts.batch, opts.no_active_events, opts.together)
                side.enqueue()
                side.settle(side.fetch())
                results[label].append(attributed(r, side, opts.n))
                if opts.cpu:
                    cpus[label].append(cpu_pass(r, side, opts.n))
                r.flushall()
        print(f"redis {r.info('server')['redis_version']}, AOF {r.config_get('appendonly')['appendonly']}; single enqueues, then fetch {opts.batch} / settle "
              f"{opts.batch} (completed, kept for no time), no mirror")
        for label in sides:
            print()
            print(table(label, results[label], opts.n, cpus[label]))
    finally:
        bench.cleanup()


if __name__ == "__main__":
    main()
