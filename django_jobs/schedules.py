"""Cron schedules as data: a :class:`Schedule` from a ``DJANGO_JOBS["CRON"]`` entry, its next run times
and the ticks due since the last one (docs/cron.md for the time-zone and missed-tick rules).

Pure computation, no Redis: :mod:`django_jobs.scheduler` fires the ticks.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

#: A tick fired later than this after its slot counts as missed (the MISSED policy decides).
ON_TIME_MS = 2000
#: How far back a missed-tick catch-up looks at most.
MAX_LOOKBACK = timedelta(days=7)
#: The schedule state a tick job id starts with.
JOB_ID_PREFIX = "cron:"


@dataclass(frozen=True, slots=True, kw_only=True)
class Schedule:
    """One entry of ``DJANGO_JOBS["CRON"]`` (see :func:`django_jobs.conf.parse_schedule`)."""

    name: str
    job: str
    expression: str | None
    every: float | None
    args: list[Any]
    kwargs: dict[str, Any]
    queue: str | None
    timezone: str
    missed: str | int

    @classmethod
    def from_settings(cls, entry: dict[str, Any]) -> Schedule:
        return cls(
            name=entry["NAME"], job=entry["JOB"], expression=entry["SCHEDULE"], every=entry["EVERY"],
            args=list(entry["ARGS"]), kwargs=dict(entry["KWARGS"]), queue=entry["QUEUE"],
            timezone=entry["TIMEZONE"], missed=entry["MISSED"],
        )

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    @property
    def spec(self) -> str:
        """The schedule as written: the cron expression or ``every N s``."""
        return self.expression if self.expression is not None else f"every {self.every:g} s"

    def job_id(self, slot_ms: int) -> str:
        """Return the id of the job of tick ``slot_ms``: the same in every process."""
        return f"{JOB_ID_PREFIX}{self.name}:{slot_ms}"

    def next_ms(self, after_ms: int) -> int:
        """Return the first tick strictly after ``after_ms`` (Unix ms)."""
        if self.every is not None:
            period = round(self.every * 1000)
            return (after_ms // period + 1) * period
        after = datetime.fromtimestamp(after_ms / 1000, UTC)
        return _to_ms(next_run(self.expression or "", self.tz, after))

    def ticks(self, after_ms: int, until_ms: int) -> Iterator[int]:
        """Yield the ticks in ``(after_ms, until_ms]`` in order."""
        if self.every is not None:
            period = round(self.every * 1000)
            slot = (after_ms // period + 1) * period
            while slot <= until_ms:
                yield slot
                slot += period
            return
        for instant in iter_runs(self.expression or "", self.tz, datetime.fromtimestamp(after_ms / 1000, UTC)):
            slot = _to_ms(instant)
            if slot > until_ms:
                return
            yield slot


def _to_ms(instant: datetime) -> int:
    return round(instant.timestamp() * 1000)


def _croniter(expression: str, start: datetime) -> Any:
    from croniter import croniter

    return croniter(expression, start, second_at_beginning=True)


def _instant(wall: datetime, tz: ZoneInfo) -> datetime:
    """Return the instant a naive wall-clock time ``wall`` in ``tz`` fires at.

    - an unambiguous wall time: that instant;
    - a wall time that occurs twice (clocks go back): its first occurrence;
    - a wall time that does not exist (clocks go forward): the instant the gap ends.
    """
    first = wall.replace(tzinfo=tz, fold=0)
    if first.astimezone(UTC).astimezone(tz).replace(tzinfo=None) == wall:
        return first.astimezone(UTC)
    # In a gap: fold=1 maps before the transition and fold=0 after it; find the transition.
    lo = int(wall.replace(tzinfo=tz, fold=1).timestamp())
    hi = int(first.timestamp()) + 1
    offset = datetime.fromtimestamp(lo, tz).utcoffset()
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if datetime.fromtimestamp(mid, tz).utcoffset() == offset:
            lo = mid
        else:
            hi = mid
    return datetime.fromtimestamp(hi, UTC)


def iter_runs(expression: str, tz: ZoneInfo, after: datetime) -> Iterator[datetime]:
    """Yield the run instants (aware, UTC) of ``expression`` in ``tz`` strictly after ``after``.

    Matching is on the wall clock of ``tz``; see :func:`_instant` for daylight-saving changes.
    Several wall times of one gap fire once, at its end.
    """
    wall = after.astimezone(tz).replace(tzinfo=None)
    # One second early, as croniter starts strictly after its start; the filter below drops
    # what is not after ``after`` (in the second pass through a repeated hour, the wall times
    # up to the hour's end map to their first pass, which is over).
    it = _croniter(expression, wall - timedelta(seconds=1))
    last: datetime | None = None
    while True:
        instant = _instant(it.get_next(datetime), tz)
        if instant > after and instant != last:
            last = instant
            yield instant


def next_run(expression: str, tz: ZoneInfo | str, after: datetime) -> datetime:
    """Return the first run of cron ``expression`` in ``tz`` strictly after the aware ``after``.

    >>> from datetime import datetime, UTC
    >>> next_run("30 2 * * *", "Europe/Paris", datetime(2026, 3, 29, 0, 0, tzinfo=UTC))  # 02:30 is skipped
    datetime.datetime(2026, 3, 29, 1, 0, tzinfo=datetime.timezone.utc)
    """
    zone = ZoneInfo(tz) if isinstance(tz, str) else tz
    return next(iter_runs(expression, zone, after))


def due_ticks(schedule: Schedule, last_ms: int | None, now_ms: int) -> list[int]:
    """Return the ticks to fire now, oldest first, by the schedule's MISSED policy.

    A tick is on time up to :data:`ON_TIME_MS` after its slot; older ones were missed (no
    leader ran then). ``"skip"`` fires only on-time ticks, ``"latest"`` the latest tick even
    if missed, N the N latest. With no ``last_ms`` (a new schedule) only on-time ticks fire.
    """
    on_time_from = now_ms - ON_TIME_MS
    start = on_time_from if last_ms is None else max(last_ms, now_ms - int(MAX_LOOKBACK.total_seconds() * 1000))
    keep = schedule.missed if isinstance(schedule.missed, int) else 1
    recent: deque[int] = deque(maxlen=keep)
    on_time: list[int] = []
    for slot in schedule.ticks(start, now_ms):
        recent.append(slot)
        if slot > on_time_from:
            on_time.append(slot)
    if schedule.missed == "skip" or last_ms is None:
        return on_time
    picked = sorted(set(recent) | set(on_time))
    return picked
