"""A sample user app: code that enqueues jobs, and the tests its team would write for it.

Its tests use django_jobs' testing helpers the way a project's own suite would: the pytest
fixtures of django_jobs.pytest_plugin (imported in conftest.py, as the ``pytest11`` entry
point would provide them) and the JobsTestMixin for Django TestCases.
"""
