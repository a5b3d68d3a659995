"""tests/settings.py plus second-level cron schedules and a 1 s leader lease (tests/chaos/test_cron.py)."""

from tests.settings import *

DJANGO_JOBS = {
    **DJANGO_JOBS,
    "IMPORT_MODULES": [*DJANGO_JOBS["IMPORT_MODULES"], "tests.testapp.jobs_cron"],
    "LEADER_LEASE_SECONDS": 1.0,
    "CRON": [
        # Catch up every missed tick: the fired ticks must be contiguous.
        {"NAME": "every-second", "JOB": "tests.testapp.jobs_cron.tick", "EVERY": 1, "ARGS": ["every-second"], "MISSED": 1000},
        # Seconds first: every 2 s; a missed tick runs once (the latest).
        {"NAME": "even-seconds", "JOB": "tests.testapp.jobs_cron.tick", "SCHEDULE": "*/2 * * * * *", "ARGS": ["even-seconds"]},
    ],
}
