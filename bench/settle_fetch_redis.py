"""Redis CPU of a drain's settle and fetch: two scripts pipelined against settle_and_fetch.lua (issue 17).

``python -m bench.settle_fetch_redis BASE [--rounds N]``: on a redis-server of its own (no AOF, no
RDB: the scripts' cost only), 8,000 jobs enqueued per drain, then drained by batches of 8 in
three ways, taking turns each round: ``pair``, BASE's ``settle.lua`` and ``fetch.lua`` sent
pipelined (as ``Engine.settle_and_fetch`` sent them before ``settle_and_fetch.lua``); ``sf``, this
checkout's ``settle_and_fetch.lua`` with the outcomes packed in one JSON string (as the engine
sends it); ``flat``, the same script changed ad hoc to take the outcomes as 6 arguments each
(what packing saves). Prints Redis' CPU per drained job (``INFO cpu``, main thread) per round,
median and min.
"""

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import redis

from bench.events_ab import script_source

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("base", help="a checkout before settle_and_fetch.lua (e.g. git archive of main)")
parser.add_argument("--rounds", type=int, default=10)
opts = parser.parse_args()
this, base = Path(__file__).resolve().parent.parent, Path(opts.base)
with socket.socket() as s:
    s.bind(("127.0.0.1", 0)); port = s.getsockname()[1]
wd = tempfile.mkdtemp()
srv = subprocess.Popen([shutil.which("redis-server") or "redis-server", "--port", str(port), "--dir", wd, "--appendonly", "no", "--save", "", "--loglevel", "warning"],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
time.sleep(0.5)
r = redis.Redis(port=port, decode_responses=True)
sf_src = script_source(this, "settle_and_fetch")
flat_src = sf_src.replace("local settled = settle_batch(ARGV, cjson.decode(ARGV[7]), 1)\nlocal fetch_args = { ARGV[1], ARGV[2] }\nfor i = 8, #ARGV do fetch_args[#fetch_args + 1] = ARGV[i] end",
  "local nout = tonumber(ARGV[7])\nlocal settled = settle_batch(ARGV, ARGV, 16)\nlocal fetch_args = { ARGV[1], ARGV[2] }\nfor i = 8, 15 do fetch_args[#fetch_args + 1] = ARGV[i] end")
assert flat_src != sf_src
sha = {"sf": r.script_load(sf_src), "flat": r.script_load(flat_src),
       "fetch": r.script_load(script_source(base, "fetch")), "settle": r.script_load(script_source(base, "settle"))}
B = 8; N = 8000; PAY = '{"v":1,"n":"bench.jobs.noop","a":[],"k":{}}'
enq = r.script_load(script_source(this, "enqueue"))
def cpu():
    i = r.info("cpu"); return float(i["used_cpu_user_main_thread"]) + float(i["used_cpu_sys_main_thread"])
def setup(tag):
    base_ = f"ab:{{{tag}}}:"
    K = lambda *n: [base_ + x for x in n]
    for c in range(0, N, 500):
        r.evalsha(enq, 5, *K("wait","scheduled","meta","events","marker"), base_ + "job:", 10000,
                  json.dumps({"i": [f"j{i}" for i in range(c, c+500)], "d": [PAY]*500, "p": 0, "r": 0, "y": 0, "c": "", "a": ""}))
    return base_, K
def fetch_args(base_):
    return [base_ + "job:", 10000, B, 60000, "h:1:w", 1000, 0, 0, 0, B]
def run(kind, tag):
    base_, K = setup(tag)
    fk = K("wait","scheduled","active","meta","events","marker","rate")
    sk = K("active","wait","scheduled","completed","failed","cancelled","meta","events","marker")
    sfk = sk + K("rate")
    out = r.evalsha(sha["fetch"], 7, *fk, *fetch_args(base_))
    jobs = [(out[i], out[i+1]) for i in range(2, len(out), 7)]
    c0 = cpu(); calls = 0
    while jobs:
        outs = [v for j, t in jobs for v in (j, str(t), "c", "null", 0, 0)]
        keep = [0, 0, 7*86400000, 0]
        if kind == "pair":
            p = r.pipeline(transaction=False)
            p.evalsha(sha["settle"], 9, *sk, base_ + "job:", 10000, *keep, *outs)
            p.evalsha(sha["fetch"], 7, *fk, *fetch_args(base_))
            codes, out = p.execute()
        elif kind == "sf":
            codes, out = r.evalsha(sha["sf"], 10, *sfk, base_ + "job:", 10000, *keep, json.dumps(outs, separators=(",", ":")), *fetch_args(base_)[2:])
        else:
            codes, out = r.evalsha(sha["flat"], 10, *sfk, base_ + "job:", 10000, *keep, len(jobs), *fetch_args(base_)[2:], *outs)
        assert codes == [1]*len(jobs), codes
        jobs = [(out[i], out[i+1]) for i in range(2, len(out), 7)]
        calls += 1
    c1 = cpu()
    r.flushall()
    return (c1 - c0) / N * 1e6
res = {"pair": [], "sf": [], "flat": []}
try:
    for rnd in range(opts.rounds):
        for kind in (["pair", "sf", "flat"] if rnd % 2 == 0 else ["flat", "sf", "pair"]):
            res[kind].append(run(kind, f"{kind}{rnd}"))
finally:
    srv.terminate(); srv.wait(); shutil.rmtree(wd, ignore_errors=True)
print("Redis CPU per drained job (us), batches of 8; load average", " ".join(f"{x:.1f}" for x in os.getloadavg()))
for k, v in res.items():
    print(f"{k} median {statistics.median(v):.1f} min {min(v):.1f}", [round(x, 1) for x in v])

