"""What flow control costs when it is not used: Redis CPU and commands per claimed and settled job.

Run from the repository root (or from a checkout of another commit, to compare)::

    .venv/bin/python bench/flow_cost.py

It starts its own redis-server (tests/redis_server.py), enqueues 20,000 no-op jobs, then claims
them 16 at a time and settles each batch, like a busy worker, and prints Redis CPU per job
(``INFO cpu``) and the commands run inside the scripts per job (``INFO commandstats``). Both
depend little on the machine's load, unlike rates. Results: docs/performance.md#flow-control.
"""
import os, sys, time
sys.path.insert(0, os.getcwd())
from tests.redis_server import RedisServer
server = RedisServer(); server.start()
os.environ.update(DJANGO_SETTINGS_MODULE="tests.settings", DJJ_REDIS_URL=server.url, DJJ_PREFIX="mb")
import django; django.setup()
from tests.testapp.jobs import add
from django_jobs.engine import get_engine
from django_jobs.engine.queue import Outcome
import django_jobs
r = server.client()
def redis_cpu():
    info = r.info("cpu"); return info["used_cpu_user"] + info["used_cpu_sys"]
engine = get_engine()
N = 20000
add.enqueue_many([(1, 2)] * N)
def drain(n):
    done = 0
    while done < n:
        jobs = engine.fetch("default", 16, lease_ms=30000, worker_id="w").jobs
        engine.settle("default", [Outcome(j.id, j.token, "c", "3") for j in jobs])
        done += len(jobs)
drain(992)
r.config_resetstat()
c0, r0 = time.process_time(), redis_cpu()
drain(N - 992)
c1, r1 = time.process_time(), redis_cpu()
stats = r.info("commandstats")
cmds = sum(v["calls"] for k, v in stats.items() if k not in ("cmdstat_evalsha", "cmdstat_info", "cmdstat_config"))
n = N - 992
print(f"{django_jobs.__file__.split('/')[2]:11} Redis CPU/job {1e6*(r1-r0)/n:5.1f} us  commands in scripts/job {cmds/n:5.2f}")
server.stop()
