"""Settings problems outside ``manage.py check``: runworkers refuses them, a web process logs them.

``manage.py check`` lists every problem of DJANGO_JOBS with its id (:mod:`django_jobs.checks`).
The same list is what :func:`problems` returns: ``runworkers`` refuses to start with it
(:func:`refuse`), and :meth:`DjangoJobsConfig.ready <django_jobs.apps.DjangoJobsConfig.ready>`
logs each problem once when any other process starts (:func:`log_at_startup`), so a typo'd key
under gunicorn is seen even though nobody ran ``check``.

Also the middleware checks: a job middleware in Django's ``MIDDLEWARE`` (E009), a web middleware
or a deprecated name in ``DJANGO_JOBS['MIDDLEWARE']`` (E008, W004).
"""

from __future__ import annotations

import logging
import sys
import warnings
from typing import Any

from django.core import checks

from django_jobs.checks import Messages, _never_raise, _raw_settings
from django_jobs.conf import SettingError, label, parse_value

logger = logging.getLogger("django_jobs")

#: The web request middleware (Django's MIDDLEWARE) and the job middleware (DJANGO_JOBS['MIDDLEWARE']).
WEB_MIDDLEWARE = "django_jobs.correlation.CorrelationIdMiddleware"
JOB_MIDDLEWARE_HINT = (
    "Job middleware wraps jobs in the workers: list it in DJANGO_JOBS['MIDDLEWARE']. The web request "
    f"middleware that carries the request id into jobs is {WEB_MIDDLEWARE!r}."
)


def _is_job_middleware(path: str) -> bool:
    """Return True when ``path`` names a job middleware class (never raises)."""
    from django.utils.module_loading import import_string

    from django_jobs.middleware import DEPRECATED_NAMES, JobMiddleware

    if path.rsplit(".", 1)[-1] in DEPRECATED_NAMES and path.startswith("django_jobs.middleware."):
        return True
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            cls = import_string(path)
    except Exception:  # noqa: BLE001 - Django reports broken MIDDLEWARE paths itself
        return False
    return isinstance(cls, type) and issubclass(cls, JobMiddleware)


@checks.register("django_jobs")
@_never_raise
def check_django_middleware(app_configs: Any = None, **kwargs: Any) -> Messages:
    """Check that Django's MIDDLEWARE lists no job middleware (E009): it would fail every request."""
    from django.conf import settings

    found = [p for p in getattr(settings, "MIDDLEWARE", None) or [] if isinstance(p, str) and _is_job_middleware(p)]
    return [
        checks.Error(
            f"MIDDLEWARE lists {path!r}, a job middleware: Django would call it for every request, which fails.",
            hint=f"Remove it from MIDDLEWARE. {JOB_MIDDLEWARE_HINT}",
            id="django_jobs.E009",
        )
        for path in found
    ]


@checks.register("django_jobs")
@_never_raise
def check_middleware(app_configs: Any = None, **kwargs: Any) -> Messages:
    """Check every DJANGO_JOBS['MIDDLEWARE'] entry: a job middleware class (E008), not by a deprecated name (W004)."""
    from django.utils.module_loading import import_string

    from django_jobs.middleware import DEPRECATED_NAMES

    raw = _raw_settings()
    if raw is None or "MIDDLEWARE" not in raw:
        return []
    try:
        paths = parse_value("MIDDLEWARE", raw["MIDDLEWARE"])
    except SettingError:
        return []  # E005 reports it
    errors: Messages = []
    for path in paths:
        module, _, name = path.rpartition(".")
        if module == "django_jobs.middleware" and name in DEPRECATED_NAMES:
            errors.append(checks.Warning(
                f"{label('MIDDLEWARE')} names {path!r}, a deprecated name.",
                hint=f"Use 'django_jobs.middleware.{DEPRECATED_NAMES[name]}' (same class, a name that cannot be "
                f"confused with the web's {WEB_MIDDLEWARE!r}).", id="django_jobs.W004",
            ))
            continue
        if path == WEB_MIDDLEWARE:
            errors.append(checks.Error(
                f"{label('MIDDLEWARE')} names {path!r}, the web request middleware: it does not wrap jobs.",
                hint="Put it in Django's MIDDLEWARE instead. Job middleware: 'django_jobs.middleware.JobCorrelationMiddleware', "
                "'django_jobs.middleware.JobLoggingMiddleware' (the default) or your own JobMiddleware subclasses.",
                id="django_jobs.E008",
            ))
            continue
        try:
            cls = import_string(path)
        except ImportError as exc:
            errors.append(checks.Error(
                f"{label('MIDDLEWARE')} names {path!r}, which cannot be imported: {exc}",
                hint="Fix the dotted path, or remove the entry.", id="django_jobs.E008",
            ))
            continue
        if not isinstance(cls, type) or not callable(cls.__call__):
            errors.append(checks.Error(
                f"{label('MIDDLEWARE')} names {path!r}, which is not a class.",
                hint="A job middleware is a class whose __call__(job) is a generator that yields once "
                "(see docs/observability.md).", id="django_jobs.E008",
            ))
    return errors


def problems(*, jobs: bool = True) -> Messages:
    """Return every DJANGO_JOBS problem ``manage.py check`` reports (no deploy checks, no network I/O).

    ``jobs=False`` leaves out the checks that import the apps' job modules (CRON's JOB, E021/E022).
    """
    from django_jobs import checks as ours

    found: Messages = []
    for check in (ours.check_settings, ours.check_connection, ours.check_tasks_backends, ours.check_queues, check_middleware, check_django_middleware):
        found += check()
    if jobs:
        found += ours.check_cron_jobs()
        found += ours.check_job_queues()
    return found


def describe(messages: Messages) -> str:
    """Return ``messages`` as ``manage.py check`` words them, one per line (and its hint)."""
    lines = []
    for message in messages:
        lines.append(f"({message.id}) {message.msg}")
        if message.hint:
            lines.append(f"\tHINT: {message.hint}")
    return "\n".join(lines)


def refuse() -> str | None:
    """Return why ``runworkers`` must not start (every error, as ``check`` lists them), or None."""
    errors = [m for m in problems() if m.is_serious()]
    if not errors:
        return None
    count = f"{len(errors)} problem{'s' if len(errors) != 1 else ''}"
    return f"DJANGO_JOBS has {count}; the workers do not start until {'it is' if len(errors) == 1 else 'they are'} fixed:\n{describe(errors)}"


_logged = False


def log_at_startup() -> None:
    """Log each settings problem once (ERROR, or WARNING for warnings) when a process starts.

    Skipped for ``manage.py check`` and ``runworkers``, which print the same list themselves.
    """
    global _logged
    if _logged or (len(sys.argv) > 1 and sys.argv[1] in ("check", "runworkers")):
        return
    _logged = True
    for message in problems(jobs=False):
        level = logging.ERROR if message.is_serious() else logging.WARNING
        hint = f" {message.hint}" if message.hint else ""
        logger.log(level, "%s: %s%s", message.id, message.msg, hint, extra={"action": "settings_problem", "check_id": message.id})
