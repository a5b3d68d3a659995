"""Settings for the test suite. Worker subprocesses read the Redis target from the environment."""

import os
import uuid
from typing import Any

from tests.databases import databases

SECRET_KEY = "tests-only"
DEBUG = False
USE_TZ = True
TIME_ZONE = "UTC"
INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.contenttypes",
    "django.contrib.auth",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django_jobs",
    "tests.testapp",
    "tests.sampleapp",
]

# The admin (tests/integration/test_admin*.py, tests/browser/).
ROOT_URLCONF = "tests.urls"
STATIC_URL = "static/"
MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
]
TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ]
        },
    }
]

#: This test run's id (DJJ_TEST_RUN_ID, else made here): its PostgreSQL test databases are named
#: after it, test_<DJJ_PG_NAME>_<id>_gwN, so that two runs on one machine (CI and a developer's,
#: two clones) never create, drop or use each other's (pytest-django drops them at the end).
#: Made once per pytest session: the pytest-xdist controller imports these settings before it
#: starts its workers, which inherit it, as do the processes a test starts.
TEST_RUN_ID = os.environ.setdefault("DJJ_TEST_RUN_ID", uuid.uuid4().hex[:8])

DATABASES = databases(
    postgres=os.environ.get("DJJ_TEST_DB") == "postgres",
    pg_name=os.environ.get("DJJ_PG_NAME", "test"),
    pg_test_name=f"test_{os.environ.get('DJJ_PG_NAME', 'test')}_{TEST_RUN_ID}",
    sqlite_name=os.environ.get("DJJ_SQLITE_PATH", ":memory:"),
    # A file shared by runserver, runworkers' mirror and a seeding shell (tests/browser):
    # writers wait for each other instead of failing with "database is locked".
    sqlite_options={"timeout": 30, "transaction_mode": "IMMEDIATE"} if os.environ.get("DJJ_SQLITE_PATH") else {},
)

TASKS = {"default": {"BACKEND": "django_jobs.backends.RedisBackend"}}

DJANGO_JOBS: dict[str, Any] = {
    "REDIS_URL": os.environ.get("DJJ_REDIS_URL", "redis://127.0.0.1:1/0"),
    "PREFIX": os.environ.get("DJJ_PREFIX", "djjtest"),
    "QUEUES": {"default": {}, "high": {}, "low": {}},
    "LEASE_SECONDS": float(os.environ.get("DJJ_LEASE_SECONDS", "2")),
    "RECOVERY_INTERVAL": 0.5,
    "MAX_RECOVERIES": int(os.environ.get("DJJ_MAX_RECOVERIES", "3")),
    "DEFAULT_BACKOFF": "none",
    "MAX_JOBS_PER_CHILD": os.environ.get("DJJ_MAX_JOBS_PER_CHILD"),
    "IMPORT_MODULES": ["tests.testapp.jobs_chaos", "tests.testapp.jobs_docs", "tests.testapp.jobs_lua", "tests.testapp.jobs_flows", "tests.testapp.jobs_timeouts", "tests.testapp.jobs_limits", "tests.testapp.jobs_contract"],
}
# Worker subprocesses of tests of a sharded queue (tests/chaos/test_shards.py).
if os.environ.get("DJJ_SHARDS"):
    DJANGO_JOBS["QUEUES"]["hot"] = {"SHARDS": int(os.environ["DJJ_SHARDS"])}
# Worker subprocesses of tests against a Sentinel group or a Redis Cluster (tests/conftest.py).
if os.environ.get("DJJ_CLUSTER"):
    DJANGO_JOBS["CLUSTER"] = True
if os.environ.get("DJJ_REDIS_OPTIONS"):  # e.g. the CA of the TLS cluster
    import json as _json

    DJANGO_JOBS["REDIS_OPTIONS"] = _json.loads(os.environ["DJJ_REDIS_OPTIONS"])
if os.environ.get("DJJ_SENTINEL"):
    import json as _json

    DJANGO_JOBS.pop("REDIS_URL")
    DJANGO_JOBS["SENTINEL"] = _json.loads(os.environ["DJJ_SENTINEL"])

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"stderr": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s [%(process)d] %(name)s: %(message)s"}},
    "loggers": {"django_jobs": {"handlers": ["stderr"], "level": os.environ.get("DJJ_LOG_LEVEL", "WARNING")}},
}
