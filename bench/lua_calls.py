"""Cost of one redis.call from Lua (issue 17), ``.venv/bin/python -m bench.lua_calls``: LLEN of the marker (a token in it), ZCARD of wait, RPUSH+LPOP, none. 50,000 per script, 9 rounds interleaved, median per call."""
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.cli import parse_args
from bench.run import Bench
bench = Bench(parse_args([])); bench.setup()
try:
    r = bench.r
    r.rpush("m", "1"); r.zadd("w", {"a": 1, "b": 2})
    bodies = {
        "empty loop": "local n=0 for i=1,tonumber(ARGV[1]) do n=n+1 end return n",
        "LLEN marker": "for i=1,tonumber(ARGV[1]) do redis.call('LLEN', KEYS[1]) end return 1",
        "ZCARD wait": "for i=1,tonumber(ARGV[1]) do redis.call('ZCARD', KEYS[2]) end return 1",
        "LLEN missing": "for i=1,tonumber(ARGV[1]) do redis.call('LLEN', 'nokey{x}') end return 1",
    }
    shas = {k: r.script_load(v) for k, v in bodies.items()}
    n = 50000
    res = {k: [] for k in bodies}
    for _ in range(9):
        for k, sha in shas.items():
            r.config_resetstat()
            r.evalsha(sha, 2, "m", "w", n)
            res[k].append(r.info("commandstats")["cmdstat_evalsha"]["usec"] / n * 1000)
    for k, v in res.items():
        print(f"{k:14s} {statistics.median(v):6.0f} ns per iteration (min {min(v):.0f})")
finally:
    bench.cleanup()
