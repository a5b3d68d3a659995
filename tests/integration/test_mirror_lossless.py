"""The mirror keeps every job (issue 18): a burst, its lag shown, one mirror per deployment.

Real Redis, real database (SQLite here, PostgreSQL in CI: ``db`` tests run on both).
"""

from __future__ import annotations

import io
import json
import threading

import pytest
from django.contrib.auth.models import Permission
from django.core.management import call_command
from django.test import Client
from django.urls import reverse

from django_jobs import mirror
from django_jobs.engine.queue import NewJob
from django_jobs.engine.streams import entry_job_ids
from django_jobs.models import JobRecord
from tests.integration.test_mirror import run_loop, settled
from tests.redis_server import wait_until

pytestmark = [pytest.mark.db, pytest.mark.django_db(transaction=True)]

#: A burst the old mirror could not keep: 3 events per job, the stream trimmed at 100 events
#: and every completed job deleted at once (KEEP_COMPLETED AGE 0).
BURST = 3000
LOSSY = {"EVENTS_MAXLEN": 100, "KEEP_COMPLETED": {"AGE": 0, "COUNT": 0}}


def burst_settings(settings, jobs_settings):
    settings.DJANGO_JOBS = {**jobs_settings, **LOSSY}
    from django_jobs.engine import get_engine, reset_engine

    reset_engine()
    return get_engine()


def enqueue_burst(engine, total=BURST) -> list[str]:
    ids = [f"{n:032x}" for n in range(total)]
    for start in range(0, total, 500):
        engine.enqueue_many("default", [NewJob(id=i, data=json.dumps({"n": "tests.testapp.jobs.add", "a": [1, 2]}))
                                        for i in ids[start : start + 500]])
    return ids


def test_without_a_mirror_holding_the_queue_a_burst_loses_rows(settings, jobs_settings, work):
    """The control: what the old mirror did (and still does when no mirror runs during the burst)."""
    engine = burst_settings(settings, jobs_settings)
    ids = enqueue_burst(engine)
    work(["default"])
    mirror.mirror_once(["default"])
    rows = JobRecord.objects.filter(state="completed").count()
    assert rows < len(ids)  # trimmed events and deleted hashes: those jobs never got a row


@pytest.mark.parametrize("topology", ["server", "cluster"], indirect=True)
def test_a_burst_keeps_a_row_for_every_job(settings, jobs_settings, work):
    engine = burst_settings(settings, jobs_settings)
    loop = mirror.Mirror(["default"])
    stop = threading.Event()
    thread = threading.Thread(target=run_loop, args=(loop, stop))
    thread.start()
    try:
        wait_until(lambda: mirror.mirror_lag(["default"])["default"].held, 10, message="the mirror holds the queue")
        ids = enqueue_burst(engine)
        work(["default"])
        wait_until(settled(lambda: JobRecord.objects.filter(state="completed").count() == len(ids)), 60,
                   message=f"{len(ids)} completed rows")
        # Recorded, then deleted by retention (AGE 0), and the stream trimmed back to EVENTS_MAXLEN.
        wait_until(lambda: engine.counts("default")["completed"] == 0, 20, message="retention after the mirror")
        wait_until(lambda: mirror.mirror_lag(["default"])["default"].behind == 0, 20, message="every event acknowledged")
    finally:
        stop.set()
        thread.join(20)
    assert set(JobRecord.objects.values_list("job_id", flat=True)) == set(ids)
    assert loop.lost == 0 and loop.resyncs == 0
    lag = mirror.mirror_lag(["default"])["default"]
    assert (lag.behind, lag.unrecorded, lag.lost) == (0, 0, 0)
    assert engine.events_tip("default") != "0-0"


@pytest.mark.parametrize("topology", ["server", "cluster"], indirect=True)
def test_retention_waits_for_the_mirror_and_the_stream_keeps_what_it_has_not_read(settings, jobs_settings, work, monkeypatch):
    from django_jobs.mirror import consumer

    # A mirror that forgot what it wrote reads the later events of jobs retention has deleted
    # since it recorded them: not a loss.
    monkeypatch.setattr(consumer, "WRITTEN_CACHE", 10)
    engine = burst_settings(settings, jobs_settings)
    loop = mirror.Mirror(["default"])
    assert loop.lead()  # holds the queue, writes nothing yet
    ids = enqueue_burst(engine, 600)
    work(["default"])
    lag = mirror.mirror_lag(["default"])["default"]
    assert engine.counts("default")["completed"] == 600  # nothing recorded: nothing deleted
    events = engine.client.xrange(engine.keys("default").events)
    assert sum(len(entry_job_ids(f)) for _, f in events) == 1800  # 3 events per job, none trimmed
    # behind counts entries (a batch entry names several jobs): all of them unread
    assert lag.behind == len(events) and lag.unrecorded == 600 and lag.age is not None
    loop.drain()
    assert JobRecord.objects.filter(state="completed").count() == len(ids)
    lag = mirror.mirror_lag(["default"])["default"]
    assert (lag.behind, lag.unrecorded, lag.age, lag.lost) == (0, 0, None, 0)
    assert loop.lost == 0
    assert engine.counts("default")["completed"] == 0
    assert engine.mirror_group_info("default", "djj-mirror")["pending"] == 0


def test_past_max_lag_retention_goes_on_and_the_loss_is_counted(settings, jobs_settings, work, caplog):
    settings.DJANGO_JOBS = {**jobs_settings, **LOSSY, "MIRROR": {"MAX_LAG": 200}}
    from django_jobs.engine import get_engine, reset_engine

    reset_engine()
    engine = get_engine()
    loop = mirror.Mirror(["default"])
    assert loop.lead()
    enqueue_burst(engine, 1000)
    work(["default"])
    assert engine.counts("default")["completed"] <= 400  # bounded: no Redis filling up for a mirror too far behind
    loop.drain()
    assert loop.lost > 0 or loop.resyncs > 0
    assert "MIRROR['MAX_LAG']" in caplog.text


@pytest.mark.parametrize("topology", ["server", "cluster"], indirect=True)
def test_the_lag_is_shown_on_the_queues_page_in_stats_and_as_metrics(settings, jobs_settings, work, django_user_model):
    engine = burst_settings(settings, jobs_settings)
    loop = mirror.Mirror(["default"])
    assert loop.lead()
    enqueue_burst(engine, 50)
    user = django_user_model.objects.create_user("op", password="pw", is_staff=True)
    user.user_permissions.set(Permission.objects.filter(content_type__app_label="django_jobs", codename="view_jobrecord"))
    client = Client()
    client.force_login(user)
    page = client.get(reverse("admin:django_jobs_queues")).content.decode()
    entries = engine.client.xlen(engine.keys("default").events)  # one per enqueue_many call: a batch entry
    assert "Mirror behind" in page and f"{entries} entries, oldest" in page

    out = io.StringIO()
    call_command("jobs", "stats", "--json", stdout=out)
    stats = json.loads(out.getvalue())
    assert stats["default"]["mirror_behind_events"] == entries and stats["default"]["mirror_lag_seconds"] >= 0
    out = io.StringIO()
    call_command("jobs", "stats", "default", stdout=out)
    assert "mirror behind" in out.getvalue() and f"{entries} entries (oldest" in out.getvalue()

    pytest.importorskip("prometheus_client")
    from prometheus_client import generate_latest

    from django_jobs.metrics import build_registry

    text = generate_latest(build_registry(queues=["default"])).decode()
    assert f'djj_mirror_behind_events{{queue="default"}} {entries}.0' in text
    assert 'djj_mirror_lag_seconds{queue="default"}' in text

    loop.drain()
    page = client.get(reverse("admin:django_jobs_queues")).content.decode()
    assert "up to date" in page
    text = generate_latest(build_registry(queues=["default"])).decode()
    assert 'djj_mirror_behind_events{queue="default"} 0.0' in text


def test_one_mirror_leads_the_others_stand_by_and_take_over(jobs_settings, engine):
    first, second = mirror.Mirror(["default"]), mirror.Mirror(["default"])
    assert first.lead() and not second.lead()
    assert engine.mirror_leader() == first.token
    engine.mirror_renew(first.token, lease_ms=0)  # the leader stops (run() resigns on its way out)
    first._renew_at = 0.0  # its next renewal is due
    assert second.lead() and not first.lead()
    assert engine.mirror_leader() == second.token


def _tallied(state: str = "completed") -> int:
    from django_jobs.models import FinishedTally

    return sum(FinishedTally.objects.filter(span=1, state=state).values_list("n", flat=True))


def test_a_mirror_killed_mid_transaction_resumes_without_losing_or_double_counting(settings, jobs_settings, work, monkeypatch):
    """The rows, the tallies and the cursor commit together, before anything is acknowledged."""
    from django_jobs.mirror import consumer

    engine = burst_settings(settings, jobs_settings)
    first = mirror.Mirror(["default"])
    assert first.lead()
    ids = enqueue_burst(engine, 300)
    work(["default"])
    written = []
    real = consumer._advance_cursor

    def killed(queue, entry_id, *, using):  # the last statement of the batch's transaction
        real(queue, entry_id, using=using)
        written.append(JobRecord.objects.count())
        raise RuntimeError("killed")

    monkeypatch.setattr(consumer, "_advance_cursor", killed)
    with pytest.raises(RuntimeError, match="killed"):
        first.drain()
    assert written and written[0] > 0  # rows were written in the transaction ...
    assert JobRecord.objects.count() == 0 and _tallied() == 0  # ... and rolled back with the tallies
    assert engine.counts("default")["completed"] == 300  # nothing recorded, nothing deleted
    monkeypatch.setattr(consumer, "_advance_cursor", real)
    second = mirror.Mirror(["default"])  # the restarted mirror: the same consumer, nothing remembered
    second.drain()
    assert set(JobRecord.objects.filter(state="completed").values_list("job_id", flat=True)) == set(ids)
    assert _tallied() == len(ids)
    lag = mirror.mirror_lag(["default"])["default"]
    assert (lag.behind, lag.unrecorded, lag.lost) == (0, 0, 0)


def test_a_mirror_killed_after_its_commit_is_not_counted_twice_and_still_releases_the_jobs(
    settings, jobs_settings, work, monkeypatch,
):
    """Rows committed, the acknowledgement never sent: the next mirror reads the events again.

    The jobs were written waiting, then (the batch of their later events) finished, and the
    mirror died before ``mirror_done``. The next one remembers nothing: it finds in the
    database that the rows are as new as the events and does not read the jobs again nor count
    them twice, and it reports them recorded, so retention deletes them (else Redis would hold
    them until ``MAX_LAG``).
    """
    engine = burst_settings(settings, jobs_settings)
    first = mirror.Mirror(["default"])
    assert first.lead()
    ids = enqueue_burst(engine, 300)
    first.drain()  # the mirror ahead of the workers: every row written waiting
    assert JobRecord.objects.filter(state="waiting").count() == len(ids)
    work(["default"])
    done = engine.mirror_done

    def killed(*args, **kwargs):
        raise RuntimeError("killed")

    monkeypatch.setattr(engine, "mirror_done", killed)
    with pytest.raises(RuntimeError, match="killed"):
        first.drain()
    committed = JobRecord.objects.filter(state="completed").count()
    assert committed > 0 and _tallied() == committed
    assert mirror.mirror_lag(["default"])["default"].unrecorded == len(ids)
    monkeypatch.setattr(engine, "mirror_done", done)
    second = mirror.Mirror(["default"])
    second.drain()
    assert second.stored_skips >= committed  # their events found older than their rows: not re-read
    assert set(JobRecord.objects.filter(state="completed").values_list("job_id", flat=True)) == set(ids)
    assert _tallied() == len(ids)
    lag = mirror.mirror_lag(["default"])["default"]
    assert (lag.behind, lag.unrecorded, lag.lost) == (0, 0, 0)
    assert engine.counts("default")["completed"] == 0  # recorded, so retention (AGE 0) deleted them
