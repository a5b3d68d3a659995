"""Settings of the django_jobs demo site: SQLite, the admin, and django_jobs on an embedded Redis.

There is deliberately no ``REDIS_URL``: django_jobs starts its own redis-server on a unix
socket in ``.django_jobs/`` next to this project (AOF on), shared by ``runserver`` and
``runworkers`` and shut down when the last of them exits.

Environment overrides (used by the tests and the launcher): ``DEMO_EMBEDDED_DIR`` (where the
embedded Redis lives), ``DEMO_DATABASE`` (the SQLite file), ``DEMO_LOG_LEVEL``, ``DEMO_LOG_FORMAT``
(``plain`` for human-readable log lines instead of JSON).
"""

import os
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent

SECRET_KEY = os.environ.get("DEMO_SECRET_KEY", "django-jobs-demo-only-not-secret")
DEBUG = True
ALLOWED_HOSTS = ["127.0.0.1", "localhost", "[::1]"]

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django_jobs",
    "demo",
]

MIDDLEWARE = [
    # First: the request id (X-Request-ID, or a new one) is set for everything below, carried
    # into every job the request enqueues, and returned in the response.
    "django_jobs.correlation.CorrelationIdMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "testproject.urls"
WSGI_APPLICATION = "testproject.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": os.environ.get("DEMO_DATABASE") or BASE_DIR / "db.sqlite3",
    }
}

USE_TZ = True
TIME_ZONE = "UTC"
LANGUAGE_CODE = "en-us"
STATIC_URL = "static/"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# -- django_jobs -------------------------------------------------------------------------------

# Our backend for django.tasks: @job and plain @django.tasks.task both run on it.
TASKS = {"default": {"BACKEND": "django_jobs.backends.RedisBackend"}}

DJANGO_JOBS = {
    # No REDIS_URL and no CACHE_ALIAS: the embedded Redis. Production sets "REDIS_URL".
    "QUEUES": {"default": {}, "high": {}, "low": {}},
    "DEFAULT_BACKOFF": "exponential",
    # Keep finished demo jobs for an hour.
    "KEEP_COMPLETED": {"AGE": 3600, "COUNT": 10_000},
    "KEEP_FAILED": {"AGE": 3600, "COUNT": 10_000},
}
if os.environ.get("DEMO_EMBEDDED_DIR"):
    DJANGO_JOBS["EMBEDDED_DIR"] = os.environ["DEMO_EMBEDDED_DIR"]

# One JSON object per line, web and workers alike, each carrying the request's correlation id
# (and, inside a job, job_id, job_name, queue, attempt, worker): grep one id to follow a request
# through every job it caused. DEMO_LOG_FORMAT=plain for human-readable lines instead.
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {
        "correlation": {"()": "django_jobs.correlation.CorrelationIdFilter"},
    },
    "formatters": {
        "json": {"()": "django_jobs.correlation.JsonFormatter"},
        "plain": {"format": "%(asctime)s %(levelname)-7s [%(process)d] %(correlation_id)s %(name)s: %(message)s"},
    },
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "filters": ["correlation"],
            "formatter": "plain" if os.environ.get("DEMO_LOG_FORMAT") == "plain" else "json",
        },
    },
    "loggers": {
        "django_jobs": {"handlers": ["console"], "level": os.environ.get("DEMO_LOG_LEVEL", "INFO"), "propagate": False},
        "demo": {"handlers": ["console"], "level": os.environ.get("DEMO_LOG_LEVEL", "INFO"), "propagate": False},
        # django.tasks logs every start and finish of every task too (and a final failure's
        # traceback); django_jobs.worker already logs each outcome with its timing, so mute it.
        "django.tasks": {"handlers": [], "level": "CRITICAL", "propagate": False},
    },
}
