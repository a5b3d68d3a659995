"""tests.settings with DJANGO_JOBS changed by $DJJ_JOBS_PATCH (JSON: keys to set, null to delete).

The URLconf imports a module with @job, as a project's views do: declaring jobs must never raise
for a settings problem (tests/integration/test_settings_problems.py).
"""

import json
import os

from tests.settings import *
from tests.settings import DJANGO_JOBS as _BASE

ROOT_URLCONF = "tests.urls_with_jobs"
DJANGO_JOBS = dict(_BASE)
for _key, _value in json.loads(os.environ.get("DJJ_JOBS_PATCH", "{}")).items():
    if _value is None:
        DJANGO_JOBS.pop(_key, None)
    else:
        DJANGO_JOBS[_key] = _value
if os.environ.get("DJJ_DJANGO_MIDDLEWARE"):
    MIDDLEWARE = [*MIDDLEWARE, *os.environ["DJJ_DJANGO_MIDDLEWARE"].split(",")]
