"""Cron schedules in the admin: pause, resume and trigger through the engine, for every supervisor."""

from __future__ import annotations

import time

import pytest
from django.contrib.auth.models import Permission
from django.test import Client, override_settings
from django.urls import reverse

from django_jobs import scheduler
from django_jobs.scheduler import Scheduler, leader_flag
from tests.redis_server import wait_until

QUICK = "tests.testapp.jobs_chaos.quick"
SCHEDULES_URL = "admin:django_jobs_schedules"


@pytest.fixture(autouse=True)
def cron(jobs_settings):
    """One schedule firing every second that catches up every missed tick (MISSED 1000)."""
    value = {**jobs_settings, "CRON": [{"NAME": "tick", "JOB": QUICK, "EVERY": 1, "ARGS": ["tick"], "MISSED": 1000}]}
    with override_settings(DJANGO_JOBS=value):
        yield
    leader_flag().clear()


def tick_slots(engine) -> list[int]:
    """The slots of the tick jobs enqueued so far (job ids ``cron:tick:<slot>``)."""
    slots = []
    for state in ("waiting", "completed"):
        _, page = engine.list_jobs("default", state, limit=1000)
        slots += [int(job_id.rsplit(":", 1)[1]) for job_id, _ in page if job_id.startswith("cron:tick:") and ":manual:" not in job_id]
    return sorted(slots)


def run_for(schedulers: list[Scheduler], seconds: float) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        for s in schedulers:
            s.step()
        time.sleep(0.05)


def test_a_paused_schedule_fires_no_tick_on_any_supervisor_and_resumes_without_catching_up(engine):
    a = Scheduler(holder="host-a:1:aaaaaa", lease=0.5)
    b = Scheduler(holder="host-b:1:bbbbbb", lease=0.5)
    wait_until(lambda: (a.step(), b.step(), tick_slots(engine))[2], timeout=5, message="a first tick")

    assert scheduler.pause_schedule("tick") is True
    assert scheduler.pause_schedule("tick") is False  # paused already
    paused_at = int(engine.cron_state()["tick:paused"])
    before = tick_slots(engine)
    a.stop()  # the leader goes away: b takes over, and must not fire either
    run_for([b], 2.5)
    assert b.leading
    assert tick_slots(engine) == before

    assert scheduler.resume_schedule("tick") is True
    resumed_at = int(engine.cron_state()["tick:resumed"])
    wait_until(lambda: (b.step(), len(tick_slots(engine)) > len(before))[1], timeout=5, message="a tick after the resume")
    after = [slot for slot in tick_slots(engine) if slot not in before]
    # MISSED=1000 would catch up every tick of the pause; paused ticks are dropped instead.
    assert all(slot > resumed_at for slot in after), (paused_at, resumed_at, after)
    assert scheduler.resume_schedule("tick") is False
    b.stop()


def test_cron_claim_refuses_a_tick_of_a_paused_schedule(engine):
    leader = Scheduler([], holder="host-a:1:aaaaaa", lease=5)
    leader.step()
    engine.cron_pause("tick", True)
    now = engine.server_time_ms()
    assert engine.cron_claim(leader.token, "tick", now) == 2
    engine.cron_pause("tick", False)
    assert engine.cron_claim(leader.token, "tick", now) == 1
    leader.stop()


def test_trigger_enqueues_one_job_now_even_while_paused_and_leaves_the_ticks_alone(engine, work):
    scheduler.pause_schedule("tick")
    job_id = scheduler.trigger_schedule("tick")
    assert job_id.startswith("cron:tick:manual:")
    assert engine.get_job("default", job_id)["s"] == "waiting"
    assert "tick" not in engine.cron_state()  # no tick slot was claimed
    assert work() == 1
    [row] = scheduler.schedules_table()
    assert row["paused"] and row["triggered_job_id"] == job_id and row["last_run"] is None


def test_controlling_an_unknown_schedule_says_where_schedules_come_from(engine):
    for call in (scheduler.pause_schedule, scheduler.resume_schedule, scheduler.trigger_schedule):
        with pytest.raises(LookupError, match=r"No cron schedule named 'nope'.*DJANGO_JOBS\['CRON'\]"):
            call("nope")


# -- the admin page ------------------------------------------------------------------------------


def client_with(django_user_model, *perms: str) -> Client:
    user = django_user_model.objects.create_user("ops", password="pw", is_staff=True)
    user.user_permissions.set(Permission.objects.filter(content_type__app_label="django_jobs", codename__in=perms))
    client = Client()
    client.force_login(user)
    return client


@pytest.mark.db
@pytest.mark.django_db
def test_the_schedules_page_lists_next_and_last_run_and_the_last_jobs_state(django_user_model, engine):
    leader = Scheduler(holder="host-a:1:aaaaaa", lease=5)
    wait_until(lambda: (leader.step(), tick_slots(engine))[1], timeout=5, message="a first tick")
    leader.stop()
    client = client_with(django_user_model, "view_jobrecord")
    response = client.get(reverse(SCHEDULES_URL))
    [row] = response.context["rows"]
    assert row["name"] == "tick" and row["next_run"] and row["last_run"] and row["last_job_state"] == "waiting"
    page = response.content.decode()
    assert row["last_job_id"] in page and "every 1 s" in page
    assert "Run now" not in page  # no manage_schedules permission
    assert client.post(reverse(SCHEDULES_URL), {"schedule": "tick", "op": "pause"}).status_code == 403
    assert "tick:paused" not in engine.cron_state()


@pytest.mark.db
@pytest.mark.django_db
def test_a_permitted_user_pauses_resumes_and_triggers_a_schedule_from_the_admin(django_user_model, engine):
    client = client_with(django_user_model, "view_jobrecord", "manage_schedules")

    def post(op: str, name: str = "tick") -> list[str]:
        response = client.post(reverse(SCHEDULES_URL), {"schedule": name, "op": op}, follow=True)
        return [str(m) for m in response.context["messages"]]

    assert post("pause") == ["Schedule 'tick' is paused: its ticks are skipped until it is resumed."]
    assert "tick:paused" in engine.cron_state()
    assert "Resume</button>" in client.get(reverse(SCHEDULES_URL)).content.decode()
    [message] = post("trigger")
    job_id = message.split("job ")[1].split(" ")[0]
    assert engine.get_job("default", job_id)["s"] == "waiting"
    assert post("resume") == ["Schedule 'tick' runs again from its next tick."]
    assert "tick:paused" not in engine.cron_state()
    assert post("pause", "nope")[0].startswith("No cron schedule named 'nope'.")
    assert post("explode") == ["Unknown schedule operation 'explode'."]
