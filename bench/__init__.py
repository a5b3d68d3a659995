"""The django_jobs benchmark: ``python -m bench`` (see docs/performance.md)."""
