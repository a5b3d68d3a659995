"""Django settings of the benchmark. The Redis target and knobs come from the environment.

``bench/run.py`` sets these variables for itself and for the ``runworkers`` subprocesses:

* ``DJJ_BENCH_REDIS_URL``: the benchmark's own redis-server;
* ``DJJ_BENCH_PREFIX``: the key prefix of the current phase;
* ``DJJ_BENCH_LOG_LEVEL``: ``WARNING`` (default: logging cost not measured) or ``INFO``, for the
  ``django_jobs`` and ``django.tasks`` loggers;
* ``DJJ_BENCH_DJANGO_TASKS_LOGGING``: ``default`` leaves ``django.tasks`` as Django's default
  LOGGING has it (level INFO, handlers that drop the records unless DEBUG), to measure what an
  unconfigured project pays;
* ``DJJ_BENCH_KEEP_COMPLETED``: completed jobs kept (``default`` = the library default, 10,000;
  ``none`` = ``{"AGE": 0}``, fire-and-forget: nothing kept, as ``--peers`` runs it);
* ``DJJ_BENCH_DB``: the SQLite file of the database mirror (``--mirror``; default in memory);
* ``DJJ_BENCH_SHARDS``: ``SHARDS`` of the ``default`` queue (``--queue-shards``; default 1).
* ``DJJ_BENCH_ACTIVE_EVENTS``: ``0`` gives every queue ``ACTIVE_EVENTS`` False (no "active" events;
  set it in the environment of ``python -m bench``, the workers inherit it).
* ``DJJ_BENCH_CLUSTER``, ``DJJ_BENCH_QUEUES``: ``--cluster N`` (bench/cluster.py): the URL is a
  cluster node, and the queues it spread over the primaries.
* ``DJJ_BENCH_PG``: a PostgreSQL database name instead (``bench/mirror_burst.py --db postgres``;
  ``DJJ_BENCH_PG_HOST`` / ``_PORT`` / ``_USER``, default 127.0.0.1:5432, postgres);
"""

import os

SECRET_KEY = "bench-only"
DEBUG = False
USE_TZ = True
TIME_ZONE = "UTC"
INSTALLED_APPS = ["django_jobs"]
# ``--mirror`` runs set DJJ_BENCH_DB to a SQLite file (migrated, WAL) so the mirror has its table;
# otherwise the database is in memory and runworkers leaves the mirror off (no table).
DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": os.environ.get("DJJ_BENCH_DB", ":memory:"),
        # WAL without an fsync per commit (the usual production setting for SQLite): the
        # mirror's commits then do not compete with Redis' AOF for the disk.
        "OPTIONS": {"timeout": 20, "init_command": "PRAGMA synchronous=NORMAL"},
    }
}

if os.environ.get("DJJ_BENCH_PG"):
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.postgresql",
            "NAME": os.environ["DJJ_BENCH_PG"],
            "USER": os.environ.get("DJJ_BENCH_PG_USER", "postgres"),
            "HOST": os.environ.get("DJJ_BENCH_PG_HOST", "127.0.0.1"),
            "PORT": os.environ.get("DJJ_BENCH_PG_PORT", "5432"),
        }
    }

TASKS = {"default": {"BACKEND": "django_jobs.backends.RedisBackend"}}

DJANGO_JOBS = {
    "REDIS_URL": os.environ.get("DJJ_BENCH_REDIS_URL", "redis://127.0.0.1:1/0"),
    "PREFIX": os.environ.get("DJJ_BENCH_PREFIX", "bench"),
    "IMPORT_MODULES": ["bench.jobs"],
    "QUEUES": {"default": {"SHARDS": int(os.environ.get("DJJ_BENCH_SHARDS", "1"))}},
}
# ``python -m bench --cluster N`` (bench/cluster.py): REDIS_URL names one node; the queues it picked.
if os.environ.get("DJJ_BENCH_CLUSTER"):
    DJANGO_JOBS["CLUSTER"] = True
# DJJ_BENCH_LEAN_JOB_HASH=1: LEAN_JOB_HASH on (docs/configuration.md): 16 bytes less per waiting job.
if os.environ.get("DJJ_BENCH_LEAN_JOB_HASH"):
    DJANGO_JOBS["LEAN_JOB_HASH"] = True
# DJJ_BENCH_MIRROR_LINGER=0.25: MIRROR["LINGER"] (docs/mirror.md), to compare waits after a caught-up read.
if os.environ.get("DJJ_BENCH_MIRROR_LINGER"):
    DJANGO_JOBS["MIRROR"] = {"LINGER": float(os.environ["DJJ_BENCH_MIRROR_LINGER"])}
# DJJ_BENCH_MIRROR_NICE=19: MIRROR["NICE"] (docs/mirror.md), to compare the mirror's priority.
if os.environ.get("DJJ_BENCH_MIRROR_NICE"):
    DJANGO_JOBS.setdefault("MIRROR", {})["NICE"] = int(os.environ["DJJ_BENCH_MIRROR_NICE"])
if os.environ.get("DJJ_BENCH_QUEUES"):
    DJANGO_JOBS["QUEUES"] = {name: {} for name in os.environ["DJJ_BENCH_QUEUES"].split(",")}
# DJJ_BENCH_ACTIVE_EVENTS=0: every queue with ACTIVE_EVENTS False (docs/configuration.md): no "active" events.
if os.environ.get("DJJ_BENCH_ACTIVE_EVENTS") == "0":
    for _options in DJANGO_JOBS["QUEUES"].values():
        _options["ACTIVE_EVENTS"] = False
_keep = os.environ.get("DJJ_BENCH_KEEP_COMPLETED", "default")
if _keep == "none":
    DJANGO_JOBS["KEEP_COMPLETED"] = {"AGE": 0}
elif _keep != "default":
    DJANGO_JOBS["KEEP_COMPLETED"] = {"COUNT": int(_keep)}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"stderr": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s [%(process)d] %(name)s: %(message)s"}},
    "loggers": {"django_jobs": {"handlers": ["stderr"], "level": os.environ.get("DJJ_BENCH_LOG_LEVEL", "WARNING")}},
}
if os.environ.get("DJJ_BENCH_DJANGO_TASKS_LOGGING") != "default":
    LOGGING["loggers"]["django.tasks"] = {
        "handlers": ["stderr"], "level": os.environ.get("DJJ_BENCH_LOG_LEVEL", "WARNING"), "propagate": False,
    }
