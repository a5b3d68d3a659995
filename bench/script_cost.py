"""Redis CPU per script call of a single enqueue (issue 17), ``python -m bench.script_cost [[LABEL=]DIR ...]``.

Where one ``EVALSHA`` of ``enqueue.lua`` (one job) spends Redis' time, against what it does: on a
private redis-server (the bench's: AOF on, fsync every second), each *variant* sends ``-n``
calls, one round trip each (the shape of ``job.enqueue()``; ``--pipeline P``: P calls per round
trip, so the socket's cost is shared and the scripts' differences stand out), and the rounds interleave the
variants so the machine's load hits each alike. Per variant, the median (and min) over the
rounds of:

- ``cpu``: Redis main-thread CPU per call (``INFO cpu``): everything, the socket's reads and
  writes and the AOF included;
- ``usec``: ``INFO commandstats`` usec per call of the top-level command (``EVALSHA``, ``FCALL``,
  ``EXEC`` or ``LPUSH``): the command alone, the commands a script runs included;
- ``cmds``: commands per call (the top-level one included).

The variants:

- ``LPUSH``: Huey's enqueue (one ``LPUSH`` of a payload);
- ``EVALSHA return 1``: an empty script given the enqueue's KEYS and ARGV: the fixed cost of a
  script call;
- ``preamble <side>``: the enqueue script's includes alone (``lua/enqueue.lua`` with its body
  replaced by ``return 1``): what every call pays before its first line runs;
- ``enqueue <side>``: the whole script, one new job per call;
- ``MULTI <side>`` (``--multi``): the commands one call of that side's script runs (from its
  ``INFO commandstats``), sent bare in ``MULTI`` / ``EXEC``: the same work without Lua;
- ``FCALL <side>`` (``--functions``): the enqueue script loaded as a Redis Function (``FUNCTION
  LOAD`` once, ``FCALL`` per call: the includes run once, at load) (an experiment: the engine
  does not use Functions).

``<side>`` is each checkout given (``LABEL=DIR``, e.g. ``base=/tmp/base`` for a ``git archive`` of
the integration branch) and ``this`` (this checkout).
"""

from __future__ import annotations

import argparse
import re
import statistics
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from hiredis import pack_command

from bench.events_ab import script_source
from django_jobs.engine.scripts import inline_includes

MAXLEN = 10_000
PAYLOAD = '{"v":1,"n":"bench.jobs.noop"}'
_INCLUDE_LINE = re.compile(r"^--@include \w+\s*$", re.MULTILINE)


def preamble_source(root: Path, name: str) -> str:
    """``lua/<name>.lua`` of ``root`` with its includes and without its body (``return 1`` instead)."""
    entry = (root / "django_jobs" / "engine" / "lua" / f"{name}.lua").read_text()
    lines = "\n".join(m.group(0) for m in _INCLUDE_LINE.finditer(entry))
    return _inline(root, lines) + "\nreturn 1\n"


def _inline(root: Path, text: str) -> str:
    return inline_includes(text, root / "django_jobs" / "engine" / "lua" / "includes")


def function_library(root: Path, name: str, lib: str) -> str:
    """``lua/<name>.lua`` of ``root`` as a Redis Functions library: the includes at load, the body as
    function ``lib``. The per-call caches of the includes (mirror caps, queue keys, the event
    batch) are reset at each call, as a fresh chunk would have them."""
    entry = (root / "django_jobs" / "engine" / "lua" / f"{name}.lua").read_text()
    includes = "\n".join(m.group(0) for m in _INCLUDE_LINE.finditer(entry))
    body = _INCLUDE_LINE.sub("", entry.split("]]", 1)[1])
    head = _inline(root, includes)
    resets = []
    for table in ("MIRROR_CAPS", "QUEUE_KEYS"):
        if re.search(rf"^local {table} = ", head, re.MULTILINE):
            resets.append(f"for k in pairs({table}) do {table}[k] = nil end")
    if re.search(r"^local EMIT = ", head, re.MULTILINE):
        resets.append("EMIT.on = false")
    return (
        f"#!lua name={lib}\n{head}\nlocal function {lib}_fn(KEYS, ARGV)\n"
        + "\n".join(resets) + f"\n{body}\nend\nredis.register_function('{lib}', {lib}_fn)\n"
    )


class Caller:
    """Sends one packed request per call on a raw connection and reads its replies."""

    def __init__(self, r: Any) -> None:
        self.conn = r.connection_pool.get_connection()

    def call(self, *commands: tuple[Any, ...]) -> Any:
        self.conn.send_packed_command([b"".join(pack_command(c) for c in commands)])
        return [self.conn.read_response() for _ in commands]


def enqueue_args(base: str, n: int) -> tuple[Any, ...]:
    keys = [base + k for k in ("wait", "scheduled", "meta", "events", "marker")]
    return (*keys, base + "job:", MAXLEN, f"{n:020d}", PAYLOAD, 0, 0, 0, "", "")


def redis_cpu(r: Any) -> float:
    cpu = r.info("cpu")
    return float(cpu["used_cpu_user_main_thread"] + cpu["used_cpu_sys_main_thread"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkouts", nargs="*", help="[LABEL=]DIR of each other checkout to compare (e.g. base=/tmp/base)")
    parser.add_argument("-n", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--multi", action="store_true", help="add the bare commands in MULTI/EXEC")
    parser.add_argument("--functions", action="store_true", help="add the enqueue as a Redis Function (FCALL)")
    parser.add_argument("--only", default="", help="comma-separated variant names to run (default: all)")
    parser.add_argument("--pipeline", type=int, default=1, help="calls per round trip (1: as job.enqueue(); more: "
                        "less of the socket's cost per call, so the scripts' differences stand out)")
    parser.add_argument("--no-preamble", action="store_true", help="leave out the preamble variants")
    opts = parser.parse_args()

    from bench.cli import parse_args
    from bench.run import Bench

    this = Path(__file__).resolve().parent.parent
    sides: dict[str, Path] = {}
    for spec in opts.checkouts:
        label, _, path = spec.rpartition("=")
        sides[label or Path(path).name] = Path(path)
    sides["this"] = this
    bench = Bench(parse_args([]))
    bench.setup()
    try:
        r = bench.r
        assert r is not None
        caller = Caller(r)
        seq = iter(range(1, 10**9))
        # A variant makes the commands of one call (one round trip, or --pipeline calls in one).
        variants: dict[str, tuple[str, Callable[[int], list[tuple[Any, ...]]]]] = {}

        def add(name: str, top: str, make: Callable[[int], list[tuple[Any, ...]]]) -> None:
            variants[name] = (top, make)

        add("LPUSH", "lpush", lambda rnd: [("LPUSH", f"huey.{{q{rnd}}}", PAYLOAD + str(next(seq)))])
        empty = r.script_load("return 1")
        add("EVALSHA return 1", "evalsha",
            lambda rnd: [("EVALSHA", empty, 5, *enqueue_args(f"e:{{x{rnd}}}:", next(seq)))])
        for side, root in sides.items():
            pre = r.script_load(preamble_source(root, "enqueue"))
            full = r.script_load(script_source(root, "enqueue"))
            if not opts.no_preamble:
                add(f"preamble {side}", "evalsha",
                    lambda rnd, sha=pre, side=side: [("EVALSHA", sha, 5, *enqueue_args(f"p:{{{side}{rnd}}}:", next(seq)))])
            add(f"enqueue {side}", "evalsha",
                lambda rnd, sha=full, side=side: [("EVALSHA", sha, 5, *enqueue_args(f"q:{{{side}{rnd}}}:", next(seq)))])
            if opts.functions:
                lib = f"djjsc_{side}"
                r.function_load(function_library(root, "enqueue", lib), replace=True)
                add(f"FCALL {side}", "fcall",
                    lambda rnd, lib=lib, side=side: [("FCALL", lib, 5, *enqueue_args(f"f:{{{side}{rnd}}}:", next(seq)))])
            if opts.multi:
                # What one call runs: count it on a fresh queue, then replay it bare.
                r.config_resetstat()
                caller.call(("EVALSHA", full, 5, *enqueue_args(f"m0:{{{side}}}:", next(seq))))
                caller.call(("EVALSHA", full, 5, *enqueue_args(f"m0:{{{side}}}:", next(seq))))
                r.config_resetstat()
                caller.call(("EVALSHA", full, 5, *enqueue_args(f"m0:{{{side}}}:", next(seq))))
                ran = {k[8:]: v["calls"] for k, v in r.info("commandstats").items()}
                print(f"one {side} enqueue runs: {ran}")

                def multi(rnd: int, side: str = side) -> list[tuple[Any, ...]]:
                    base = f"m:{{{side}{rnd}}}:"
                    n = next(seq)
                    job = f"{base}job:{n:020d}"
                    return [
                        ("MULTI",), ("TIME",), ("EXISTS", job), ("HINCRBY", base + "meta", "seq", 1),
                        ("ZADD", base + "wait", 100 * 2**44 + n, f"{n:020d}"), ("GET", base + "mirror"),
                        ("XADD", base + "events", "MAXLEN", "~", MAXLEN, "*", "e", "waiting", "j", f"{n:020d}"),
                        ("HSET", job, "d", PAYLOAD, "p", 0, "e", 1, "s", "waiting", "ws", 100 * 2**44 + n),
                        ("LLEN", base + "marker"), ("EXEC",),
                    ]

                add(f"MULTI {side}", "exec", multi)
        names = [v for v in variants if not opts.only or v in opts.only.split(",")]
        results: dict[str, list[tuple[float, float, float]]] = {name: [] for name in names}
        print(f"redis {r.info('server')['redis_version']}, {opts.n} calls per variant and round, "
              f"{opts.pipeline} per round trip, {opts.rounds} rounds")
        for rnd in range(opts.rounds):
            for name in names:
                top, make = variants[name]
                caller.call(*make(rnd))  # the queue's first call (token, stream, meta created) is not counted
                r.config_resetstat()
                cpu0 = redis_cpu(r)
                for _ in range(opts.n // opts.pipeline):
                    caller.call(*[c for _ in range(opts.pipeline) for c in make(rnd)])
                cpu = redis_cpu(r) - cpu0
                stats = r.info("commandstats")
                usec = stats.get(f"cmdstat_{top}", {}).get("usec", 0)
                cmds = sum(v["calls"] for k, v in stats.items() if k not in ("cmdstat_info", "cmdstat_config|resetstat"))
                results[name].append((cpu / opts.n * 1e6, usec / opts.n, (cmds - 1) / opts.n))
            r.flushall()
        for name, rows in results.items():
            cpu = [x[0] for x in rows]
            usec = [x[1] for x in rows]
            print(f"{name:24s} cpu {statistics.median(cpu):6.2f} us/call (min {min(cpu):6.2f})  "
                  f"usec {statistics.median(usec):6.2f} (min {min(usec):6.2f})  cmds {rows[0][2]:.2f}")
    finally:
        bench.cleanup()


if __name__ == "__main__":
    main()
