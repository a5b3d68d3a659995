from django.apps import AppConfig


class DjangoJobsConfig(AppConfig):
    name = "django_jobs"
    verbose_name = "Jobs"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from django_jobs import (
            checks,  # noqa: F401 - registers the system checks
            problems,  # registers the middleware checks
            signals,  # noqa: F401 - connects job_enqueued to django.tasks' task_enqueued
        )

        problems.log_at_startup()  # a web process logs each settings problem once (runworkers refuses them)
