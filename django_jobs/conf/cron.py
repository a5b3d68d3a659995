"""Parsers of DJANGO_JOBS["CRON"]: schedules, cron expressions (docs/cron.md)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from django_jobs.conf.defaults import (
    CRON_KEYS,
    MISSED_POLICIES,
    QUEUE_NAME_RE,
    SettingError,
    did_you_mean,
    label,
)
from django_jobs.conf.defaults import number as _number

CRON_HINT = (
    "E.g. {'NAME': 'nightly-report', 'JOB': 'reports.jobs.nightly', 'SCHEDULE': '0 3 * * *'}; "
    "see docs/cron.md."
)


def parse_cron(value: Any) -> list[dict[str, Any]]:
    """Return the schedules of DJANGO_JOBS['CRON'], each checked and completed with its defaults.

    Whether ``JOB`` names a registered job and ``QUEUE`` a configured queue is checked by the
    system checks (E021) and when a tick fires, since it needs the jobs imported.
    """
    if value is None:
        return []
    if isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple)):
        raise SettingError("CRON", f"{label('CRON')} is {value!r}; it must be a list of schedule dicts.", CRON_HINT)
    schedules: list[dict[str, Any]] = []
    names: set[str] = set()
    for index, entry in enumerate(value):
        schedule = parse_schedule(index, entry)
        if schedule["NAME"] in names:
            raise SettingError(
                "CRON", f"{label('CRON')} has two schedules named {schedule['NAME']!r}.",
                "Give each schedule its own NAME: it identifies its ticks in Redis.",
            )
        names.add(schedule["NAME"])
        schedules.append(schedule)
    return schedules


def parse_schedule(index: int, entry: Any) -> dict[str, Any]:
    """Return one schedule of DJANGO_JOBS['CRON'] checked and completed with its defaults."""
    where = f"{label('CRON')}[{index}]"

    def error(problem: str, hint: str = "") -> SettingError:
        return SettingError("CRON", problem, hint)

    if not isinstance(entry, Mapping):
        raise error(f"{where} is {entry!r}; it must be a dict.", CRON_HINT)
    for key in entry:
        if key not in CRON_KEYS:
            raise error(
                f"{where} has an unknown key {key!r}.",
                did_you_mean(key, CRON_KEYS) or f"Schedule keys: {', '.join(sorted(CRON_KEYS))}.",
            )
    name = entry.get("NAME")
    if not isinstance(name, str) or not QUEUE_NAME_RE.fullmatch(name):
        raise error(
            f"{where}['NAME'] is {name!r}; it must be a non-empty string of letters, digits, '_', '.' and '-'.",
            "E.g. 'nightly-report'. It becomes part of the ids of the jobs the schedule enqueues.",
        )
    where = f"{label('CRON')}[{name!r}]"
    job = entry.get("JOB")
    if not isinstance(job, str) or not job or "." not in job:
        raise error(f"{where}['JOB'] is {job!r}; it must be the dotted path of a @job.", "E.g. 'myapp.jobs.cleanup'.")
    expression, every = entry.get("SCHEDULE"), entry.get("EVERY")
    if (expression is None) == (every is None):
        raise error(
            f"{where} must have exactly one of 'SCHEDULE' (a cron expression) and 'EVERY' (seconds).",
            "E.g. 'SCHEDULE': '*/5 * * * *' (every 5 minutes) or 'EVERY': 30.",
        )
    result: dict[str, Any] = {"NAME": name, "JOB": job, "SCHEDULE": None, "EVERY": None}
    if expression is not None:
        result["SCHEDULE"] = parse_cron_expression(where, expression)
    else:
        seconds = _number(every)
        if seconds is None or seconds <= 0 or seconds * 1000 != int(seconds * 1000) or seconds > 366 * 86400:
            raise error(
                f"{where}['EVERY'] is {every!r}; it must be a number of seconds > 0 (whole milliseconds, at most a year).",
                "E.g. 'EVERY': 30. Ticks are aligned to multiples of EVERY since the Unix epoch.",
            )
        result["EVERY"] = seconds
    args, kwargs = entry.get("ARGS", []), entry.get("KWARGS", {})
    if isinstance(args, tuple):
        args = list(args)
    if not isinstance(args, list):
        raise error(f"{where}['ARGS'] is {args!r}; it must be a list.", "E.g. 'ARGS': [7, 'daily'].")
    if not isinstance(kwargs, Mapping) or not all(isinstance(k, str) for k in kwargs):
        raise error(f"{where}['KWARGS'] is {kwargs!r}; it must be a dict with string keys.", "E.g. 'KWARGS': {'days': 7}.")
    import json

    try:
        json.dumps([args, dict(kwargs)], allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise error(
            f"{where}: ARGS or KWARGS cannot be sent as JSON ({exc}).",
            "Use only str, int, float, bool, None, lists and dicts with string keys.",
        ) from None
    result["ARGS"], result["KWARGS"] = args, dict(kwargs)
    queue = entry.get("QUEUE")
    if queue is not None and (not isinstance(queue, str) or not QUEUE_NAME_RE.fullmatch(queue)):
        raise error(f"{where}['QUEUE'] is {queue!r}; it must be a queue name.", "Leave it out to use the job's queue.")
    result["QUEUE"] = queue
    tz = entry.get("TIMEZONE", "UTC")
    try:
        import zoneinfo

        zoneinfo.ZoneInfo(tz)
    except (TypeError, ValueError, zoneinfo.ZoneInfoNotFoundError):
        raise error(
            f"{where}['TIMEZONE'] is {tz!r}, which is not an IANA time zone.",
            "E.g. 'Europe/Paris' or 'UTC' (the default).",
        ) from None
    result["TIMEZONE"] = tz
    missed = entry.get("MISSED", "latest")
    if not (missed in MISSED_POLICIES or (isinstance(missed, int) and not isinstance(missed, bool) and 1 <= missed <= 10_000)):
        raise error(
            f"{where}['MISSED'] is {missed!r}; it must be 'skip', 'latest' or a whole number 1..10000.",
            "'skip' drops ticks missed while no scheduler ran, 'latest' (the default) runs the latest "
            "one once, N runs up to the N latest.",
        )
    result["MISSED"] = missed
    return result


def parse_cron_expression(where: str, expression: Any) -> str:
    """Return a cron expression (5 fields, or 6 with seconds first) if croniter accepts it."""
    from croniter import croniter

    fields = expression.split() if isinstance(expression, str) else []
    valid = False
    if len(fields) in (5, 6):
        try:
            valid = croniter.is_valid(" ".join(fields), second_at_beginning=True)
        except Exception:  # noqa: BLE001 - croniter raises assorted errors on odd input
            valid = False
    if not valid:
        raise SettingError(
            "CRON",
            f"{where}['SCHEDULE'] is {expression!r}, which is not a valid cron expression.",
            "Use 5 fields 'minute hour day month weekday' (e.g. '30 3 * * 1-5'), or 6 with seconds "
            "first (e.g. '*/10 * * * * *').",
        )
    return " ".join(fields)
