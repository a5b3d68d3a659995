"""Cron schedules: leader election, exactly one job per tick, DST-correct next runs."""

from __future__ import annotations

import functools
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from croniter import croniter
from django.core import checks
from django.test import override_settings
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from django_jobs.engine.codes import ScriptCode
from django_jobs.scheduler import (
    Schedule,
    Scheduler,
    due_ticks,
    enqueue_tick,
    is_leader,
    leader_flag,
    next_run,
)
from tests.redis_server import wait_until

# Every test also runs against a real Redis Cluster (tests/conftest.py).
pytestmark = pytest.mark.parametrize("topology", ["server", "cluster"], indirect=True)

QUICK = "tests.testapp.jobs_chaos.quick"


@pytest.fixture(autouse=True)
def _no_leader_left():
    """Schedulers made by a test share this process' leader flag: clear it after each test."""
    yield
    leader_flag().clear()


def schedule(name: str = "tick", *, every: float | None = 1, expression: str | None = None, missed: str | int = "latest",
             timezone: str = "UTC") -> Schedule:
    return Schedule(
        name=name, job=QUICK, expression=expression, every=None if expression else every, args=[name], kwargs={},
        queue=None, timezone=timezone, missed=missed,
    )


def server_ms(engine) -> int:
    seconds, micros = engine.client.time()
    return int(seconds) * 1000 + int(micros) // 1000


# -- leader election --------------------------------------------------------------------------


def test_only_one_of_two_schedulers_becomes_leader(engine):
    a = Scheduler([], lease=5, holder="host-a:1:aaaaaa")
    b = Scheduler([], lease=5, holder="host-b:1:bbbbbb")
    a.step()
    b.step()
    assert a.leading and not b.leading
    assert engine.leader() == a.token and a.token.endswith("|host-a:1:aaaaaa")


def test_a_follower_takes_over_within_the_lease_when_the_leader_stops_renewing(engine):
    a = Scheduler([], lease=0.3, holder="host-a:1:aaaaaa")
    b = Scheduler([], lease=0.3, holder="host-b:1:bbbbbb")
    a.step()
    old_epoch = int(a.token.split("|")[0])
    wait_until(lambda: (b.step(), b.leading)[1], timeout=3, message="b takes over")
    assert int(b.token.split("|")[0]) == old_epoch + 1


def test_a_paused_old_leader_cannot_claim_a_tick_with_its_stale_epoch(engine):
    a = Scheduler([], lease=0.3, holder="host-a:1:aaaaaa")
    b = Scheduler([], lease=0.3, holder="host-b:1:bbbbbb")
    a.step()
    stale = a.token
    wait_until(lambda: (b.step(), b.leading)[1], timeout=3, message="b takes over")
    slot = server_ms(engine) // 1000 * 1000
    assert engine.cron_claim(stale, "tick", slot) == ScriptCode.NOT_OWNER
    assert engine.cron_claim(b.token, "tick", slot) == 1
    assert engine.cron_claim(b.token, "tick", slot) == 1  # a replay by the same leader
    assert engine.cron_claim(b.token, "tick", slot - 1000) == 0  # not after the last tick
    renewed, _ = engine.leader_renew(stale, lease_ms=1000)
    assert not renewed and engine.leader() == b.token


def test_a_resigning_leader_frees_the_lease_at_once(engine):
    a = Scheduler([], lease=30, holder="host-a:1:aaaaaa")
    b = Scheduler([], lease=30, holder="host-b:1:bbbbbb")
    a.step()
    a.stop()
    b.step()
    assert b.leading and not a.leading


def test_is_leader_follows_the_lease_of_this_process(engine):
    assert is_leader() is False
    a = Scheduler([], lease=0.5, holder="host-a:1:aaaaaa")
    a.step()
    assert is_leader() is True
    engine.client.delete(engine.cron_keys()[0])  # the lease is lost (expired, stolen)
    a._renew_at = 0  # renew now
    a.step()  # the renewal fails and a new election starts: a may win it again
    assert is_leader() == a.leading
    a.stop()
    assert is_leader() is False


# -- ticks ------------------------------------------------------------------------------------


def test_the_leader_enqueues_one_job_per_tick_with_a_deterministic_id(engine):
    every = schedule("every-second", every=0.2)
    a = Scheduler([every], lease=5, holder="host-a:1:aaaaaa")
    b = Scheduler([every], lease=5, holder="host-b:1:bbbbbb")
    start = server_ms(engine)
    wait_until(lambda: (a.step(), b.step(), engine.counts("default")["waiting"] >= 6)[2], timeout=5, message="ticks")
    ids = engine.client.zrange(engine.keys("default").wait, 0, -1)
    slots = sorted(int(job_id.rsplit(":", 1)[1]) for job_id in ids)
    assert all(job_id.startswith("cron:every-second:") for job_id in ids)
    assert slots == list(range(slots[0], slots[0] + 200 * len(slots), 200))  # consecutive, none twice
    assert slots[0] > start - 2000
    state = engine.cron_state()
    assert state["every-second"] == state["every-second:enq"] == str(slots[-1])


def test_a_tick_is_enqueued_once_even_when_two_processes_fire_it(engine):
    tick = schedule("dup")
    assert enqueue_tick(tick, tick.job_id(1_000)) is True
    assert enqueue_tick(tick, tick.job_id(1_000)) is False
    assert engine.counts("default")["waiting"] == 1


def test_a_new_leader_enqueues_a_tick_its_predecessor_claimed_but_never_enqueued(engine):
    tick = schedule("orphan", every=3600)
    a = Scheduler([tick], lease=0.3, holder="host-a:1:aaaaaa")
    a.step()
    slot = server_ms(engine) // 3_600_000 * 3_600_000
    assert engine.cron_claim(a.token, "orphan", slot) == 1  # ... and then a dies
    b = Scheduler([tick], lease=0.3, holder="host-b:1:bbbbbb")
    wait_until(lambda: (b.step(), b.leading)[1], timeout=3, message="b takes over")
    assert engine.get_job("default", tick.job_id(slot)) is not None
    assert engine.cron_state()["orphan:enq"] == str(slot)


def test_the_schedules_table_shows_the_last_tick_and_its_job(engine, jobs_settings):
    cron = [{"NAME": "table", "JOB": QUICK, "EVERY": 3600, "ARGS": ["x"]}]
    with override_settings(DJANGO_JOBS={**jobs_settings, "CRON": cron}):
        from django_jobs.scheduler import format_schedules_table, schedules_table

        slot = server_ms(engine) // 3_600_000 * 3_600_000
        a = Scheduler(lease=5, holder="host-a:1:aaaaaa")
        a.step()
        engine.cron_claim(a.token, "table", slot)
        a.step()
        [row] = schedules_table()
        assert row["last_job_id"] == f"cron:table:{slot}" and row["last_job_state"] == "waiting"
        assert row["next_run"] == datetime.fromtimestamp(slot / 1000 + 3600, UTC)
        assert "every 3600 s" in format_schedules_table([row])


# -- missed ticks -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("missed", "expected"),
    [("skip", [59_000, 60_000]), ("latest", [59_000, 60_000]), (3, [58_000, 59_000, 60_000]), (100, list(range(41_000, 60_001, 1000)))],
)
def test_missed_ticks_follow_the_schedules_policy(missed, expected):
    # The last tick fired at 40 s; the scheduler comes back at 60 s: 41..58 s were missed.
    assert due_ticks(schedule(missed=missed), 40_000, 60_000) == expected


def test_latest_runs_one_missed_tick_when_none_is_on_time():
    assert due_ticks(schedule(every=10, missed="latest"), 0, 35_000) == [30_000]
    assert due_ticks(schedule(every=10, missed="skip"), 0, 35_000) == []


def test_a_new_schedule_fires_only_on_time_ticks():
    assert due_ticks(schedule(every=10, missed=100), None, 35_000) == []
    assert due_ticks(schedule(every=10, missed=100), None, 40_500) == [40_000]


# -- settings checks --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("entry", "check_id", "words"),
    [
        ({"NAME": "x", "JOB": QUICK, "SCHEDULE": "61 * * * *"}, "django_jobs.E020", "not a valid cron expression"),
        ({"NAME": "x", "JOB": QUICK, "EVERY": 5, "ARGS": [{1, 2}]}, "django_jobs.E020", "JSON"),
        ({"NAME": "x", "JOB": QUICK, "EVERY": 5, "TIMEZONE": "Mars/Olympus"}, "django_jobs.E020", "time zone"),
        ({"NAME": "x", "JOB": QUICK, "EVERY": 5, "MISSED": "all"}, "django_jobs.E020", "'skip', 'latest'"),
        ({"NAME": "x", "JOB": QUICK}, "django_jobs.E020", "exactly one of"),
        ({"NAME": "x", "JOB": "tests.testapp.jobs_chaos.quik", "EVERY": 5}, "django_jobs.E021", "not a registered"),
        ({"NAME": "x", "JOB": QUICK, "EVERY": 5, "QUEUE": "nowhere"}, "django_jobs.E021", "not in DJANGO_JOBS['QUEUES']"),
    ],
)
def test_a_bad_schedule_is_reported_by_the_system_checks_with_a_hint(jobs_settings, entry, check_id, words):
    with override_settings(DJANGO_JOBS={**jobs_settings, "CRON": [entry]}):
        messages = [m for m in checks.run_checks(tags=["django_jobs"]) if m.id == check_id]
    assert len(messages) == 1 and words in messages[0].msg and messages[0].hint


def test_a_valid_schedule_passes_the_system_checks(jobs_settings):
    cron = [{"NAME": "ok", "JOB": QUICK, "SCHEDULE": "*/5 * * * * *", "ARGS": ["a"], "TIMEZONE": "Europe/Paris", "MISSED": 5}]
    with override_settings(DJANGO_JOBS={**jobs_settings, "CRON": cron}):
        assert [m for m in checks.run_checks(tags=["django_jobs"]) if m.id.startswith("django_jobs.E")] == []


# -- next runs across daylight-saving changes -------------------------------------------------

ZONES = ["Europe/Paris", "America/New_York", "Australia/Lord_Howe", "America/Santiago", "Pacific/Chatham", "UTC"]
MINUTES = ["0", "30", "15,45", "*/20", "59", "*"]
HOURS = ["*", "0", "1", "2", "3", "1-3", "*/2"]


@functools.cache
def fires_at(expression: str) -> frozenset[tuple[int, int]]:
    """The (hour, minute) wall times at which a daily expression (``"m h * * *"``) fires, as croniter reads it.

    A set lookup in the brute force's loop (``croniter.match`` parses the expression on each call: ~1 ms).
    """
    minutes, hours = croniter(expression).expanded[:2]
    return frozenset(
        (hour, minute)
        for hour in (range(24) if hours == ["*"] else hours)
        for minute in (range(60) if minutes == ["*"] else minutes)
    )


def reference_next_run(expression: str, tz: ZoneInfo, after: datetime) -> datetime:
    """Brute force: walk real time minute by minute and fire on the documented rules.

    A minute fires when its wall time matches and is the first pass through that wall time,
    or when it is the first minute after a gap whose skipped wall times include a match.
    """
    fires = fires_at(expression)
    minute = (after + timedelta(minutes=1)).replace(second=0, microsecond=0)
    seen: set[datetime] = set()
    # Wall times already passed before ``after`` (for the repeated hour), within the last day.
    probe = minute - timedelta(days=1)
    while probe < minute:
        seen.add(probe.astimezone(tz).replace(tzinfo=None))
        probe += timedelta(minutes=1)
    previous_wall = (minute - timedelta(minutes=1)).astimezone(tz).replace(tzinfo=None)
    for _ in range(3 * 24 * 60):
        wall = minute.astimezone(tz).replace(tzinfo=None)
        if wall not in seen and (wall.hour, wall.minute) in fires:
            return minute
        skipped = previous_wall + timedelta(minutes=1)
        while skipped < wall:  # clocks jumped forward over these wall times
            if (skipped.hour, skipped.minute) in fires:
                return minute
            skipped += timedelta(minutes=1)
        seen.add(wall)
        previous_wall = max(previous_wall, wall)
        minute += timedelta(minutes=1)
    raise AssertionError("no run within 3 days")


@functools.cache
def transitions(tz: ZoneInfo) -> list[datetime]:
    """Return the UTC instants of tz's offset changes in 2025-2027 (hour precision)."""
    found = []
    t = datetime(2025, 1, 1, tzinfo=UTC)
    while t < datetime(2028, 1, 1, tzinfo=UTC):
        if (t + timedelta(hours=1)).astimezone(tz).utcoffset() != t.astimezone(tz).utcoffset():
            found.append(t)
        t += timedelta(hours=1)
    return found or [datetime(2026, 6, 1, tzinfo=UTC)]


@pytest.mark.single_server("pure computation: next_run against a brute force, no Redis (it ran twice for nothing)")
@hypothesis_settings(max_examples=100, deadline=None, database=None)
@given(
    zone=st.sampled_from(ZONES),
    minute=st.sampled_from(MINUTES),
    hour=st.sampled_from(HOURS),
    which=st.integers(0, 5),
    offset_minutes=st.one_of(st.integers(-180, 180), st.integers(-26 * 60, 26 * 60)),
    seconds=st.integers(0, 59),
)
def test_next_run_matches_a_brute_force_reference_across_dst_changes(zone, minute, hour, which, offset_minutes, seconds):
    tz = ZoneInfo(zone)
    near = transitions(tz)
    after = near[which % len(near)] + timedelta(minutes=offset_minutes, seconds=seconds)
    expression = f"{minute} {hour} * * *"
    assert next_run(expression, tz, after) == reference_next_run(expression, tz, after)


def test_a_fixed_time_job_runs_once_in_a_repeated_hour_and_once_after_a_skipped_hour():
    paris = ZoneInfo("Europe/Paris")
    fall = _runs("30 2 * * *", paris, datetime(2026, 10, 24, 12, tzinfo=UTC), days=2)
    # 02:30 comes twice on 25 October: the job runs at the first, 02:30 CEST (00:30 UTC).
    assert fall == [datetime(2026, 10, 25, 0, 30, tzinfo=UTC), datetime(2026, 10, 26, 1, 30, tzinfo=UTC)]
    spring = _runs("30 2 * * *", paris, datetime(2026, 3, 28, 12, tzinfo=UTC), days=2)
    # 02:30 does not exist on 29 March: the job runs when the gap ends, 03:00 CEST (01:00 UTC).
    assert spring == [datetime(2026, 3, 29, 1, 0, tzinfo=UTC), datetime(2026, 3, 30, 0, 30, tzinfo=UTC)]


def _runs(expression, tz, start, days):
    out, t = [], start
    while True:
        t = next_run(expression, tz, t)
        if t > start + timedelta(days=days):
            return out
        out.append(t)


def test_a_schedule_whose_job_is_missing_does_not_stop_the_other_schedules(engine):
    broken = Schedule(name="broken", job="tests.testapp.jobs_chaos.gone", expression=None, every=0.2, args=[], kwargs={},
                      queue=None, timezone="UTC", missed="latest")
    a = Scheduler([broken, schedule("fine", every=0.2)], lease=5, holder="host-a:1:aaaaaa")
    wait_until(lambda: (a.step(), engine.counts("default")["waiting"] >= 2)[1], timeout=5, message="ticks of 'fine'")
    ids = engine.client.zrange(engine.keys("default").wait, 0, -1)
    assert ids and all(job_id.startswith("cron:fine:") for job_id in ids)


def test_a_schedule_declared_in_code_is_loaded_after_the_settings(jobs_settings):
    from django_jobs import scheduler

    scheduler.declare(QUICK, {"SCHEDULE": "0 3 * * *", "ARGS": ["nightly"], "TIMEZONE": "Europe/Paris"})
    scheduler.declare(QUICK, {"NAME": "in-settings", "EVERY": 5})  # the settings' one wins
    try:
        cron = [{"NAME": "in-settings", "JOB": QUICK, "EVERY": 60}]
        with override_settings(DJANGO_JOBS={**jobs_settings, "CRON": cron}):
            loaded = {s.name: s for s in scheduler.load_schedules()}
        assert loaded["in-settings"].every == 60
        assert loaded["quick"].expression == "0 3 * * *" and loaded["quick"].args == ["nightly"]
    finally:
        scheduler._declared.clear()


def cron_target(tag: str) -> str:
    return tag


def test_job_decorator_cron_option_declares_a_schedule(jobs_settings):
    from django_jobs import job, scheduler

    try:
        declared = job(cron={"EVERY": 30, "ARGS": ["c"]})(cron_target)
        loaded = {s.name: s for s in scheduler.load_schedules()}
        assert loaded["cron-target"].every == 30
        assert loaded["cron-target"].job == declared.module_path
    finally:
        scheduler._declared.clear()


def test_each_cron_tick_starts_its_own_correlation_id(engine):
    from django_jobs.correlation import correlation_id

    tick = schedule("cid")
    with correlation_id("outer-request"):
        enqueue_tick(tick, tick.job_id(1_000))
        enqueue_tick(tick, tick.job_id(2_000))
    first = engine.get_job("default", tick.job_id(1_000))["cid"]
    second = engine.get_job("default", tick.job_id(2_000))["cid"]
    assert first and second and first != second and "outer-request" not in (first, second)


def test_jobs_schedules_command_prints_the_table(jobs_settings):
    from io import StringIO

    from django.core.management import call_command

    cron = [{"NAME": "cmd-table", "JOB": QUICK, "EVERY": 3600, "ARGS": ["x"]}]
    with override_settings(DJANGO_JOBS={**jobs_settings, "CRON": cron}):
        out = StringIO()
        call_command("jobs", "schedules", stdout=out)
        assert "cmd-table" in out.getvalue() and "every 3600 s" in out.getvalue()
        out = StringIO()
        call_command("jobs", "schedules", "--json", stdout=out)
        assert '"cmd-table"' in out.getvalue()
