"""Django system checks for DJANGO_JOBS and the TASKS backends.

======================  ======================================================================
``django_jobs.E000``    DJANGO_JOBS is not a dict.
``django_jobs.E001``    Unknown DJANGO_JOBS key (with a did-you-mean).
``django_jobs.E002``    REDIS_URL is malformed.
``django_jobs.E003``    CACHE_ALIAS is ambiguous (REDIS_URL is set too) or names no Redis cache.
``django_jobs.E004``    QUEUES is invalid: its shape, a queue name or a queue option.
``django_jobs.E005``    Another value is invalid (numbers, backoff, retention, PREFIX, REDIS_OPTIONS...).
``django_jobs.E006``    No TASKS alias uses django_jobs.backends.RedisBackend.
``django_jobs.E007``    A TASKS alias of ours lists QUEUES that DJANGO_JOBS does not configure.
``django_jobs.E008``    A MIDDLEWARE entry cannot be imported or is not a job middleware class (django_jobs.problems).
``django_jobs.E009``    Django's MIDDLEWARE lists a job middleware (django_jobs.problems).
``django_jobs.E010``    No Redis is configured and DEBUG is False: the embedded Redis is for development.
``django_jobs.E011``    A job is declared on a queue DJANGO_JOBS['QUEUES'] does not configure (enqueueing it raises).
``django_jobs.E020``    CRON is invalid: its shape, a schedule's expression, time zone, policy or arguments.
``django_jobs.E021``    A CRON schedule names a job that is not registered, or a queue that is not configured.
``django_jobs.E022``    A CRON schedule's ARGS/KWARGS do not fit its job's function.
``django_jobs.E023``    Importing the job modules failed.
``django_jobs.E030``    (deploy) The Redis is not the kind the settings say (Cluster node, Sentinel, single server).
``django_jobs.W004``    DJANGO_JOBS['MIDDLEWARE'] uses a deprecated name (django_jobs.problems).
``django_jobs.E099``    A check itself failed (a bug in django_jobs: please report it).
``django_jobs.W001``    (deploy) Redis does not answer.
``django_jobs.W002``    Embedded mode, but no redis-server binary was found.
``django_jobs.W003``    (deploy) The embedded Redis is used: it is meant for development.
``django_jobs.W010``    (deploy) Redis' maxmemory-policy is not noeviction: a full Redis deletes jobs.
``django_jobs.W011``    (deploy) Redis persists nothing (no AOF, no RDB save point): a restart loses every job.
======================  ======================================================================

Checks never raise and do no network I/O, except W001, W010 and W011 which are deploy
checks (``manage.py check --deploy``). Validity rules live in :mod:`django_jobs.conf` and
:mod:`django_jobs.engine.connection`, so a value the checks accept is one
:func:`~django_jobs.conf.get_settings` and the engine accept.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from typing import Any

from django.core import checks

from django_jobs.conf import (
    DEFAULTS,
    SettingError,
    build_settings,
    did_you_mean,
    label,
    parse_queue_name,
    parse_queue_options,
    parse_queues,
    parse_value,
)
from django_jobs.exceptions import ConfigurationError, RedisUnavailable

#: The TASKS backend path of django_jobs.
BACKEND_PATH = "django_jobs.backends.RedisBackend"
#: Settings that say how to reach Redis (checked together by :func:`check_connection`).
CONNECTION_KEYS = (
    "REDIS_URL", "CACHE_ALIAS", "REDIS_OPTIONS", "SENTINEL", "CLUSTER", "EMBEDDED_DIR", "EMBEDDED_BINARY", "EMBEDDED",
)
#: Check id of a :class:`SettingError`, by the setting it is about.
ERROR_IDS = {"DJANGO_JOBS": "E000", "REDIS_URL": "E002", "CACHE_ALIAS": "E003", "QUEUES": "E004", "SHARDS": "E040", "EMBEDDED": "E010", "CRON": "E020"}
TASKS_HINT = f"Add to your settings: TASKS = {{'default': {{'BACKEND': {BACKEND_PATH!r}}}}}"

type Messages = list[checks.CheckMessage]


def _never_raise(check: Callable[..., Messages]) -> Callable[..., Messages]:
    """Turn an unexpected exception in ``check`` into an error message (checks must not crash)."""

    @functools.wraps(check)
    def wrapper(app_configs: Any = None, **kwargs: Any) -> Messages:
        try:
            return check(app_configs, **kwargs)
        except Exception as exc:  # noqa: BLE001 - a check must report, never crash manage.py
            return [
                checks.Error(
                    f"The django_jobs check {check.__name__} failed: {type(exc).__name__}: {exc}",
                    hint="This is a bug in django_jobs; please report it with your DJANGO_JOBS setting.",
                    id="django_jobs.E099",
                )
            ]

    return wrapper


def _error(exc: SettingError) -> checks.Error:
    return checks.Error(exc.problem, hint=exc.hint or None, id=f"django_jobs.{ERROR_IDS.get(exc.setting, 'E005')}")


def _raw_settings() -> Mapping[str, Any] | None:
    """Return DJANGO_JOBS, or None when it is not a dict (E000 reports it)."""
    from django.conf import settings

    value = getattr(settings, "DJANGO_JOBS", None)
    if value is None:
        return {}
    return value if isinstance(value, Mapping) else None


@checks.register("django_jobs")
@_never_raise
def check_settings(app_configs: Any = None, **kwargs: Any) -> Messages:
    """Check the keys and values of DJANGO_JOBS, except the connection (E000, E001, E004, E005)."""
    raw = _raw_settings()
    if raw is None:
        from django.conf import settings

        value = settings.DJANGO_JOBS
        return [
            checks.Error(
                f"DJANGO_JOBS must be a dict, not {type(value).__name__}.",
                hint="E.g. DJANGO_JOBS = {'REDIS_URL': 'redis://localhost:6379/0', 'QUEUES': {'default': {}}}",
                id="django_jobs.E000",
            )
        ]
    errors: Messages = []
    for key in raw:
        if key not in DEFAULTS:
            errors.append(
                checks.Error(
                    f"Unknown DJANGO_JOBS key {key!r}.",
                    hint=did_you_mean(key, DEFAULTS) or f"Valid keys: {', '.join(sorted(DEFAULTS))}.",
                    id="django_jobs.E001",
                )
            )
    for key in DEFAULTS:
        if key not in raw or key in CONNECTION_KEYS:
            continue
        if key == "QUEUES":
            if not our_aliases():  # else each backend's check() reports them (Django's check_tasks)
                errors += _queue_errors(raw[key])
            continue
        try:
            parse_value(key, raw[key])
        except SettingError as exc:
            errors.append(_error(exc))
    return errors


def _queue_errors(value: Any) -> Messages:
    """Return one error per invalid queue (or one for a QUEUES that is not a dict)."""
    if value is None:
        return []
    if not isinstance(value, Mapping):
        try:
            parse_queues(value)
        except SettingError as exc:
            return [_error(exc)]
        return []
    errors: Messages = []
    for name, options in value.items():
        try:
            parse_queue_options(parse_queue_name(name), options)
        except SettingError as exc:
            errors.append(_error(exc))
    return errors


@checks.register("django_jobs")
@_never_raise
def check_connection(app_configs: Any = None, **kwargs: Any) -> Messages:
    """Check how django_jobs reaches Redis, without connecting (E002, E003, E005, W002)."""
    from django_jobs.engine.connection import check_config

    raw = _raw_settings()
    if raw is None:
        return []
    subset = {key: raw[key] for key in CONNECTION_KEYS if key in raw}
    errors: Messages = []
    for key, value in subset.items():
        try:
            parse_value(key, value)
        except SettingError as exc:
            errors.append(_error(exc))
    if errors:
        return errors
    try:
        settings = build_settings(subset)
        check_config(settings)
    except SettingError as exc:
        return [_error(exc)]
    if settings.embedded:
        return _embedded_warnings(settings.embedded_binary)
    return []


def _embedded_warnings(configured: str | None) -> Messages:
    from django_jobs.engine.embedded import find_redis_server

    if find_redis_server(configured) is not None:
        return []
    if configured:
        return [
            checks.Warning(
                f"{label('EMBEDDED_BINARY')} is {configured!r}, which is not an executable file.",
                hint="Point it at a redis-server (or valkey-server) binary, or remove it to search PATH.",
                id="django_jobs.W002",
            )
        ]
    return [
        checks.Warning(
            "DJANGO_JOBS sets neither REDIS_URL nor CACHE_ALIAS, so django_jobs starts an embedded Redis, "
            "but no redis-server binary was found.",
            hint="Install one (apt-get install redis-server, brew install redis), or "
            "pip install 'django-jobs-redis[embedded]', or set DJANGO_JOBS['REDIS_URL'].",
            id="django_jobs.W002",
        )
    ]


@checks.register("django_jobs")
@_never_raise
def check_tasks_backends(app_configs: Any = None, **kwargs: Any) -> Messages:
    """Check that a TASKS alias uses our backend (E006); :func:`check_queues` reports the queues (E004, E007)."""
    from django.conf import settings

    tasks = getattr(settings, "TASKS", None) or {}
    if not isinstance(tasks, Mapping):
        return []  # Django's own task backend handling reports it
    ours = {
        alias: config
        for alias, config in tasks.items()
        if isinstance(config, Mapping) and _is_our_backend(config.get("BACKEND"))
    }
    if not ours:
        return [
            checks.Error(
                f"No TASKS backend is {BACKEND_PATH!r}, so @job cannot enqueue anything.",
                hint=TASKS_HINT,
                id="django_jobs.E006",
            )
        ]
    return []


@checks.register("django_jobs")
@_never_raise
def check_cron_jobs(app_configs: Any = None, **kwargs: Any) -> Messages:
    """Check that each CRON schedule names a registered job and a configured queue (E021), and @job(cron=...) (E020)."""
    from django_jobs import registry
    from django_jobs.tasks import registered_job, registered_jobs

    declared: Messages = _import_jobs()  # declares the @job(cron=...) schedules
    declared += [_error(exc) for exc in registry.declaration_errors()]
    raw = _raw_settings()
    if raw is None or not raw.get("CRON"):
        return declared
    try:
        schedules = parse_value("CRON", raw["CRON"])
        queues = parse_queues(raw.get("QUEUES"))
    except SettingError:
        return declared  # E004/E020 report it
    errors: Messages = declared
    for schedule in schedules:
        where = f"{label('CRON')}[{schedule['NAME']!r}]"
        task = registered_job(schedule["JOB"])
        if task is None:
            known = registered_jobs()
            errors.append(
                checks.Error(
                    f"{where}['JOB'] is {schedule['JOB']!r}, which is not a registered @job.",
                    hint=did_you_mean(schedule["JOB"], known)
                    or "Decorate the function with @job and make sure its module is imported "
                    "(an app's jobs.py or tasks.py, or DJANGO_JOBS['IMPORT_MODULES']).",
                    id="django_jobs.E021",
                )
            )
            continue
        from django_jobs.arguments import bind_arguments
        from django_jobs.exceptions import InvalidArguments

        try:
            bind_arguments(task, schedule["ARGS"], schedule["KWARGS"])
        except InvalidArguments as exc:
            errors.append(
                checks.Error(
                    f"{where}: ARGS {schedule['ARGS']!r} and KWARGS {schedule['KWARGS']!r} do not fit the job: {exc}",
                    hint="Make ARGS and KWARGS match the job function's parameters: every tick would fail.",
                    id="django_jobs.E022",
                )
            )
        queue = schedule["QUEUE"] or task.queue_name
        if queue not in queues:
            errors.append(
                checks.Error(
                    f"{where} enqueues into queue {queue!r}, which is not in {label('QUEUES')}.",
                    hint=f"Add it to {label('QUEUES')} or set the schedule's QUEUE to one of: {', '.join(queues)}.",
                    id="django_jobs.E021",
                )
            )
    return errors


def _import_jobs() -> Messages:
    """Import the apps' job modules (once per process); an import that fails is E023."""
    from django_jobs import registry

    try:
        registry.autodiscover()
    except ConfigurationError:
        return []  # the settings checks report why
    except Exception as exc:  # noqa: BLE001 - a broken job module must be reported, not crash check
        return [checks.Error(
            f"Importing the job modules failed: {type(exc).__name__}: {exc}",
            hint="Fix the module (the apps' jobs.py/tasks.py and DJANGO_JOBS['IMPORT_MODULES'] are imported).",
            id="django_jobs.E023",
        )]
    return []


@checks.register("django_jobs_declared")  # its own tag: it judges the registered jobs, not the settings alone
@_never_raise
def check_job_queues(app_configs: Any = None, **kwargs: Any) -> Messages:
    """Check that every declared job's queue is configured (E011) and fits its shards (E041): enqueueing it would raise.

    Declaring such a job does not raise (a settings problem never does at import time).
    """
    from django_jobs.compat import task_backends
    from django_jobs.tasks import registered_jobs

    errors = _import_jobs()
    aliases = set(our_aliases())
    for name, task in sorted(registered_jobs().items()):
        if task.backend not in aliases:
            continue
        backend: Any = task_backends[task.backend]
        if not getattr(type(backend), "django_jobs_backend", False):
            continue
        try:
            allowed = backend.allowed_queues()
        except ConfigurationError:
            return errors  # the settings checks report why
        if task.queue_name not in allowed:
            errors.append(checks.Error(
                f"Job {name!r} is declared on queue {task.queue_name!r}, which is not in {label('QUEUES')}"
                + (f" (or TASKS[{task.backend!r}]['QUEUES'])" if backend.declared_queues is not None else "")
                + ": enqueueing it raises InvalidTask.",
                hint=f"Configure the queue, or declare the job on one of: {', '.join(allowed)}.",
                id="django_jobs.E011",
            ))
        elif problem := _shard_problem(task):
            errors.append(checks.Error(
                problem + " Enqueueing it raises InvalidTask.",
                hint="On a sharded queue give the job one placement key: a unique key, a limit key (the same "
                "template as its unique key if it has both) or a shard_key; or put it on a queue without SHARDS "
                "(docs/scaling.md#sharded-queues).",
                id="django_jobs.E041",
            ))
    return errors


def _shard_problem(task: Any) -> str | None:
    """Return why ``task`` cannot run on its sharded queue as declared (E041), or None."""
    from django_jobs.conf import get_settings
    from django_jobs.limits import shard_problem

    try:
        shards = get_settings().queues.get(task.queue_name, {}).get("SHARDS", 1)
    except ConfigurationError:
        return None
    return shard_problem(task, shards)


def _is_our_backend(path: Any) -> bool:
    """Return True for our backend's path or the path of a subclass of it."""
    if path == BACKEND_PATH:
        return True
    if not isinstance(path, str) or not path:
        return False
    from django.utils.module_loading import import_string

    try:
        cls = import_string(path)
    except Exception:  # noqa: BLE001 - Django reports broken backend paths itself
        return False
    # RedisBackend and its subclasses say so (checks sit below the backend: no import of it).
    return isinstance(cls, type) and bool(getattr(cls, "django_jobs_backend", False))


@checks.register("django_jobs", deploy=True)
@_never_raise
def check_redis_reachable(app_configs: Any = None, **kwargs: Any) -> Messages:
    """Ping Redis once, with a short timeout (W001); warn about the embedded server (W003)."""
    from django_jobs.conf import get_settings
    from django_jobs.engine.connection import ping

    try:
        settings = get_settings()
    except ConfigurationError:
        return []  # the other checks report why
    if settings.embedded:
        return [
            checks.Warning(
                "DJANGO_JOBS sets neither REDIS_URL nor CACHE_ALIAS, so jobs live in the embedded Redis "
                "on this machine.",
                hint="The embedded server is meant for development. In production set DJANGO_JOBS['REDIS_URL'] "
                "(or CACHE_ALIAS) to a Redis every web and worker host can reach.",
                id="django_jobs.W003",
            )
        ]
    try:
        ping(settings)
    except ConfigurationError:
        return []  # E002/E003/E005 report it
    except RedisUnavailable as exc:
        import redis

        from django_jobs.engine.connection import failure_hint, speaks_tls

        if settings.sentinel:
            where = "DJANGO_JOBS['SENTINEL']"
        elif isinstance(settings.cluster, list):
            where = "DJANGO_JOBS['CLUSTER']"
        else:
            where = "DJANGO_JOBS['REDIS_URL']" if settings.redis_url else f"CACHES[{settings.cache_alias!r}]"
        if isinstance(exc.__cause__, redis.AuthenticationError):
            hint = f"Redis refused the credentials: check the user and password in {where}."
        else:
            hint = failure_hint(exc, tls=speaks_tls(settings), where=where) or (
                f"Start Redis or fix {where}: enqueueing and workers fail until it answers."
            )
        return [checks.Warning(str(exc), hint=hint, id="django_jobs.W001")]
    return []


@checks.register("django_jobs", deploy=True)
@_never_raise
def check_topology(app_configs: Any = None, **kwargs: Any) -> Messages:
    """Tell a Redis Cluster, a Sentinel and a single server apart; E030 when the settings say otherwise."""
    from django_jobs.conf import get_settings
    from django_jobs.engine.connection import topology_mismatch

    try:
        found = topology_mismatch(get_settings())
    except (ConfigurationError, RedisUnavailable):
        return []  # E002/E003/E005 or W001 report it
    if found is None:
        return []
    problem, hint = found
    return [checks.Error(problem, hint=hint, id="django_jobs.E030")]


@checks.register("django_jobs", deploy=True)
@_never_raise
def check_redis_durability(app_configs: Any = None, **kwargs: Any) -> Messages:
    """Warn when Redis may evict jobs (W010) or keeps nothing on disk (W011); see docs/reliability.md."""
    from django_jobs.conf import get_settings
    from django_jobs.engine.connection import durability

    try:
        settings = get_settings()
        found = durability(settings)
    except (ConfigurationError, RedisUnavailable):
        return []  # E002/E003/E005 or W001 report it
    if found is None:
        return []  # embedded: AOF is on, and W003 says it is for development
    warnings: Messages = []
    if found.maxmemory_policy is not None and found.maxmemory_policy != "noeviction":
        warnings.append(checks.Warning(
            f"Redis' maxmemory-policy is {found.maxmemory_policy!r}: when Redis is full it deletes keys, "
            "which can be jobs, their queue entries or their leases.",
            hint="Set maxmemory-policy noeviction in redis.conf (or CONFIG SET maxmemory-policy noeviction): "
            "a full Redis then refuses writes (RedisOutOfMemory) and loses nothing.",
            id="django_jobs.W010",
        ))
    if found.persists is False:
        warnings.append(checks.Warning(
            "Redis persists nothing (appendonly no, no RDB save point): a Redis restart or crash loses every job.",
            hint="Turn on the append-only file: appendonly yes with appendfsync everysec (a crash loses about the last "
            "second of writes). See docs/reliability.md for each mode's loss window.",
            id="django_jobs.W011",
        ))
    return warnings


def our_aliases() -> list[str]:
    """Return the TASKS aliases whose backend is ours (or a subclass), in settings order."""
    from django.conf import settings

    tasks = getattr(settings, "TASKS", None) or {}
    if not isinstance(tasks, Mapping):
        return []
    return [alias for alias, config in tasks.items() if isinstance(config, Mapping) and _is_our_backend(config.get("BACKEND"))]


def backend_messages(alias: str) -> Messages:
    """Return the queue checks of the backend ``alias`` (:func:`check_queues` runs them for each of our aliases).

    The first of our aliases also reports DJANGO_JOBS['QUEUES'] problems (E004), once; each reports
    its own TASKS QUEUES (E007).
    """
    raw = _raw_settings()
    if raw is None:
        return []  # E000
    errors: Messages = []
    aliases = our_aliases()
    if aliases and aliases[0] == alias and "QUEUES" in raw:
        errors += _queue_errors(raw["QUEUES"])
    from django.conf import settings

    config = (getattr(settings, "TASKS", None) or {}).get(alias, {})
    try:
        configured = parse_queues(raw.get("QUEUES"))
    except SettingError:
        return errors
    if "QUEUES" not in config or not config["QUEUES"] and isinstance(config["QUEUES"], (list, tuple, set, frozenset)):
        return errors
    queues = config["QUEUES"]
    if isinstance(queues, (str, bytes)) or not isinstance(queues, (list, tuple, set, frozenset)):
        errors.append(
            checks.Error(
                f"TASKS[{alias!r}]['QUEUES'] is {queues!r}; it must be a list of queue names.",
                hint="E.g. ['default', 'emails'], or leave QUEUES out to allow every queue of DJANGO_JOBS.",
                id="django_jobs.E007",
            )
        )
        return errors
    missing = [q for q in queues if q not in configured]
    if missing:
        errors.append(
            checks.Error(
                f"TASKS[{alias!r}]['QUEUES'] names {', '.join(map(repr, missing))}, "
                f"which {'is' if len(missing) == 1 else 'are'} not in {label('QUEUES')}.",
                hint=f"Add {'it' if len(missing) == 1 else 'them'} to {label('QUEUES')} "
                f"(configured: {', '.join(configured)}), or remove {'it' if len(missing) == 1 else 'them'} from TASKS.",
                id="django_jobs.E007",
            )
        )
    return errors


@checks.register("django_jobs")
@_never_raise
def check_queues(app_configs: Any = None, **kwargs: Any) -> Messages:
    """Check DJANGO_JOBS['QUEUES'] (E004) and each of our TASKS aliases' QUEUES (E007).

    Registered under the ``django_jobs`` tag like the other checks, so ``manage.py check --tag
    django_jobs`` runs them all (``RedisBackend.check()``, which Django's untagged ``check_tasks``
    calls, reports nothing, so a plain ``manage.py check`` shows each message once).
    """
    return [m for alias in our_aliases() for m in backend_messages(alias)]
