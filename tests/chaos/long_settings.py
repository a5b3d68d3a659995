"""Settings of the long chaos tier's workers: the test settings plus its job module."""

from tests.settings import *
from tests.settings import DJANGO_JOBS

DJANGO_JOBS = {**DJANGO_JOBS, "IMPORT_MODULES": [*DJANGO_JOBS["IMPORT_MODULES"], "tests.chaos.long_jobs"]}
