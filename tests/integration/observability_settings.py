"""Settings of worker subprocesses in the correlation tests: the test settings with the
testproject's LOGGING (CorrelationIdFilter + JsonFormatter, JSON lines on stderr)."""

import sys
from pathlib import Path

from tests.settings import *

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "testproject"))
from testproject.settings import LOGGING as DEMO_LOGGING

DJANGO_JOBS = {**DJANGO_JOBS, "IMPORT_MODULES": [*DJANGO_JOBS["IMPORT_MODULES"], "tests.testapp.jobs_observability"]}
LOGGING = {
    **DEMO_LOGGING,
    "loggers": {
        **DEMO_LOGGING["loggers"],
        "tests": {"handlers": ["console"], "level": "INFO", "propagate": False},
    },
}
