from django.apps import AppConfig


class DjangoJobsConfig(AppConfig):
    name = "django_jobs"
    verbose_name = "Jobs"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # Imported for what importing does: the system checks register themselves, and
        # job_enqueued is connected to django.tasks' task_enqueued.
        from django_jobs import checks, signals  # noqa: F401
