# A project with django_jobs installed gets these fixtures from its pytest11 entry point;
# this repository's tests import them, since the package is not installed here.
from django_jobs.pytest_plugin import jobs_capture, jobs_immediate, jobs_isolated, jobs_worker  # noqa: F401
