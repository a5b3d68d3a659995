"""The browser tests' settings plus a cron schedule, for the site with realistic data (tests/browser/seed.py)."""

from tests.browser.settings import *

DJANGO_JOBS = {
    **DJANGO_JOBS,
    "IMPORT_MODULES": [*DJANGO_JOBS["IMPORT_MODULES"], "tests.testapp.jobs_cron"],
    "CRON": [{"NAME": "hourly-report", "JOB": "tests.testapp.jobs_cron.tick", "EVERY": 20, "ARGS": ["hourly-report"], "QUEUE": "high"}],
}
