"""Django settings of ``python -m bench.admin_pages``: the admin on SQLite or PostgreSQL.

* ``DJJ_ADMIN_BENCH_DB``: ``sqlite`` (default) or ``postgres``;
* ``DJJ_ADMIN_BENCH_SQLITE``: the SQLite file (default ``/tmp/djj_admin_bench.sqlite3``);
* ``DJJ_ADMIN_BENCH_PG_NAME``: the PostgreSQL database (default ``djj_admin_bench``), on
  127.0.0.1:5432 as user ``postgres`` unless ``DJJ_PG_HOST`` / ``DJJ_PG_PORT`` / ``DJJ_PG_USER`` say otherwise;
* ``DJJ_ADMIN_BENCH_REDIS_URL``: the Redis the admin's live reads go to (the bench starts one).
"""

import os

from tests.databases import databases

SECRET_KEY = "bench-only"
DEBUG = False
USE_TZ = True
TIME_ZONE = "UTC"
ALLOWED_HOSTS = ["*"]
INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.contenttypes",
    "django.contrib.auth",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django_jobs",
]
ROOT_URLCONF = "bench.admin_urls"
STATIC_URL = "static/"
MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
]
TEMPLATES = [{
    "BACKEND": "django.template.backends.django.DjangoTemplates",
    "APP_DIRS": True,
    "OPTIONS": {"context_processors": [
        "django.template.context_processors.request",
        "django.contrib.auth.context_processors.auth",
        "django.contrib.messages.context_processors.messages",
    ]},
}]
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]

DATABASES = databases(
    postgres=os.environ.get("DJJ_ADMIN_BENCH_DB", "sqlite") == "postgres",
    pg_name=os.environ.get("DJJ_ADMIN_BENCH_PG_NAME", "djj_admin_bench"),
    sqlite_name=os.environ.get("DJJ_ADMIN_BENCH_SQLITE", "/tmp/djj_admin_bench.sqlite3"),
    sqlite_options={"timeout": 20, "init_command": "PRAGMA synchronous=NORMAL; PRAGMA journal_mode=WAL"},
)

TASKS = {"default": {"BACKEND": "django_jobs.backends.RedisBackend"}}
DJANGO_JOBS = {
    "REDIS_URL": os.environ.get("DJJ_ADMIN_BENCH_REDIS_URL", "redis://127.0.0.1:1/0"),
    "PREFIX": "adminbench",
    "QUEUES": {"default": {}, "high": {}, "low": {}},
}
