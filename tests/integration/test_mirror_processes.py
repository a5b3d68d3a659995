"""The mirror as a process: inside ``runworkers``, as ``jobs mirror``, killed mid-stream (SQLite and PostgreSQL)."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from django.db import connection

from django_jobs.engine.keys import MIRROR_GROUP
from django_jobs.engine.streams import entry_job_ids
from tests.redis_server import env_for, wait_until

pytestmark = [pytest.mark.db, pytest.mark.django_db(transaction=True)]

ROOT = Path(__file__).resolve().parents[2]


class SharedDB:
    """The database the subprocesses write: the test database itself on PostgreSQL, a file on SQLite.

    (pytest-django's SQLite test database lives in memory, where no other process sees it.)
    """

    def __init__(self, tmp_path: Path, redis_server, prefix: str) -> None:
        self.server, self.prefix = redis_server, prefix
        if connection.vendor == "postgresql":
            self.env = {"DJJ_TEST_DB": "postgres", "DJJ_PG_NAME": connection.settings_dict["NAME"]}
            self.path = None
        else:
            self.path = tmp_path / "mirror.sqlite3"
            self.env = {"DJJ_SQLITE_PATH": str(self.path)}
            self.manage("migrate", "-v", "0")

    def environ(self, **extra: str) -> dict[str, str]:
        return env_for(self.server, self.prefix, **self.env, **extra)

    def manage(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        done = subprocess.run([sys.executable, "-m", "django", *args], cwd=ROOT, env=self.environ(),
                              capture_output=True, text=True, timeout=60)
        if check:
            assert done.returncode == 0, done.stdout + done.stderr
        return done

    def states(self) -> dict[str, str]:
        """job id -> state of every row (read the way the subprocesses wrote it)."""
        if self.path is None:
            from django_jobs.models import JobRecord

            return dict(JobRecord.objects.values_list("job_id", "state"))
        db = sqlite3.connect(self.path, timeout=10)
        try:
            return dict(db.execute("SELECT job_id, state FROM django_jobs_jobrecord").fetchall())
        finally:
            db.close()


@pytest.fixture
def shared_db(tmp_path, redis_server, prefix) -> SharedDB:
    return SharedDB(tmp_path, redis_server, prefix)


def pending(engine, queue="default") -> int:
    info = engine.mirror_group_info(queue, MIRROR_GROUP)
    return int(info["pending"]) if info else -1


def test_runworkers_runs_the_mirror_next_to_its_workers(shared_db, workers, engine):
    from tests.testapp.jobs import add, echo

    proc = workers.start("--processes", "1", "--threads", "4", "--grace", "5", env=shared_db.env)
    ids = [add.enqueue(i, i).id for i in range(40)] + [echo.enqueue(i).id for i in range(10)]
    wait_until(
        lambda: (s := shared_db.states()) and len(s) == 50 and set(s.values()) == {"completed"},
        30, message="50 completed rows written by the runworkers mirror",
    )
    assert set(shared_db.states()) == set(ids)
    os.killpg(proc.pid, signal.SIGTERM)
    output, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0, output
    assert "  mirror:    on (default, high, low -> database)" in output
    assert pending(engine) == 0 and pending(engine, "high") == 0


def test_no_mirror_keeps_the_database_untouched(shared_db, workers, engine, work):
    from tests.testapp.jobs import add

    proc = workers.start("--processes", "1", "--threads", "2", "--grace", "5", "--no-mirror", env=shared_db.env)
    job = add.enqueue(1, 1)
    wait_until(lambda: add.get_result(job.id).is_finished, 20, message="the job to finish")
    os.killpg(proc.pid, signal.SIGTERM)
    output, _ = proc.communicate(timeout=30)
    assert "  mirror:    off (--no-mirror)" in output
    assert shared_db.states() == {}
    assert engine.mirror_group_info("default", MIRROR_GROUP) is None  # no consumer group was even created


def test_runworkers_without_the_table_says_to_migrate_and_runs_the_workers(workers, engine):
    from tests.testapp.jobs import add

    # An in-memory SQLite database: no tables.
    proc = workers.start("--processes", "1", "--threads", "2", "--grace", "5", env={"DJJ_TEST_DB": "sqlite"})
    job = add.enqueue(2, 2)
    wait_until(lambda: add.get_result(job.id).is_finished, 20, message="the job to finish")
    os.killpg(proc.pid, signal.SIGTERM)
    output, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0, output
    assert "  mirror:    off (no django_jobs_jobrecord table: run manage.py migrate)" in output


def test_a_mirror_killed_mid_stream_resumes_without_losing_an_event(shared_db, engine, redis_server, prefix):
    from django_jobs.engine.queue import NewJob

    def start() -> subprocess.Popen[str]:
        return subprocess.Popen(
            [sys.executable, "-m", "django", "jobs", "mirror"], cwd=ROOT, env=shared_db.environ(),
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
        )

    total = 3000
    stop = threading.Event()

    def produce() -> None:  # a steady stream of new jobs while the mirror is killed and restarted
        for start_at in range(0, total, 10):
            if stop.is_set():
                return
            engine.enqueue_many("default", [NewJob(id=f"{n:032x}", data='{"v":1,"n":"x.y","a":[],"k":{}}')
                                            for n in range(start_at, start_at + 10)])
            stop.wait(0.02)

    mirror = start()
    producer = threading.Thread(target=produce)
    try:
        producer.start()
        wait_until(lambda: len(shared_db.states()) >= 300, 30, message="the mirror well under way")
        os.killpg(mirror.pid, signal.SIGKILL)  # mid-stream: entries read and not yet acknowledged stay pending
        mirror.communicate(timeout=10)
        assert len(shared_db.states()) < total  # killed mid-stream, not after the end
        # Each enqueue_many call wrote one batch entry naming its 10 jobs (lua/includes/emit.lua):
        # the killed mirror may have died inside one; its restart writes every job of it.
        assert all(len(entry_job_ids(f)) == 10 for _, f in engine.client.xrange(engine.keys("default").events))
        mirror = start()
        producer.join(60)
        wait_until(lambda: len(shared_db.states()) == total, 60, message=f"all {total} rows after the restart")
        wait_until(lambda: pending(engine) == 0, 10, message="every entry acknowledged")
    finally:
        stop.set()
        producer.join(10)
        os.killpg(mirror.pid, signal.SIGTERM)
        output, _ = mirror.communicate(timeout=20)
    assert mirror.returncode == 0, output
    assert set(shared_db.states().values()) == {"waiting"}


def test_jobs_mirror_once_resync_and_prune_commands(shared_db, engine, work):
    from tests.testapp.jobs import add

    ids = [add.enqueue(i, i).id for i in range(3)]
    work()
    done = shared_db.manage("jobs", "mirror", "--once")
    assert "Mirrored 3 job row(s) of default, high, low." in done.stdout
    assert shared_db.states() == dict.fromkeys(ids, "completed")
    done = shared_db.manage("jobs", "resync", "default")
    assert "Resynced 3 job row(s) of default." in done.stdout
    assert "default completed: 3/3" in done.stderr
    done = shared_db.manage("jobs", "prune", "--older-than", "0")
    assert "Deleted 3 finished job row(s) from the mirror." in done.stdout
    assert shared_db.states() == {}
    bad = shared_db.manage("jobs", "prune", "--older-than", "-1", check=False)
    assert bad.returncode != 0 and "--older-than must be a number of seconds >= 0" in bad.stderr
    bad = shared_db.manage("jobs", "resync", "nope", check=False)
    assert bad.returncode != 0 and "Unknown queue 'nope'" in bad.stderr


def test_the_commands_say_to_migrate_when_the_table_is_missing(redis_server, prefix):
    done = subprocess.run([sys.executable, "-m", "django", "jobs", "mirror", "--once"], cwd=ROOT,
                          env=env_for(redis_server, prefix, DJJ_TEST_DB="sqlite"), capture_output=True, text=True, timeout=60)
    assert done.returncode != 0 and "Traceback" not in done.stderr
    assert "Run manage.py migrate first." in done.stderr


def test_the_mirror_rides_out_a_redis_restart(shared_db, engine, redis_server):
    from tests.testapp.jobs import add

    mirror = subprocess.Popen(
        [sys.executable, "-m", "django", "jobs", "mirror", "default"], cwd=ROOT, env=shared_db.environ(),
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
    )
    try:
        before = [r.id for r in add.enqueue_many([(i, i) for i in range(100)])]
        wait_until(lambda: len(shared_db.states()) == 100, 30, message="the first 100 rows")
        redis_server.stop()
        threading.Event().wait(2)  # the mirror retries with backoff meanwhile
        redis_server.start()
        after = [r.id for r in add.enqueue_many([(i, i) for i in range(100)])]
        wait_until(lambda: set(shared_db.states()) == {*before, *after}, 60, message="all 200 rows after the restart")
        wait_until(lambda: pending(engine) == 0, 10, message="every entry acknowledged")
        assert mirror.poll() is None  # the same process all along: it reconnected by itself
    finally:
        os.killpg(mirror.pid, signal.SIGTERM)
        output, _ = mirror.communicate(timeout=20)
    assert mirror.returncode == 0, output
    assert "Traceback" not in output or "Mirror step failed" in output  # an outage is logged, never a crash


def test_two_supervisors_run_one_mirror_and_the_standby_takes_over(shared_db, workers, engine):
    """One mirror per deployment: elected by a Redis lease; SIGKILL the leader, the standby goes on."""
    from tests.testapp.jobs import add

    env = {**shared_db.env, "DJJ_LOG_LEVEL": "INFO"}
    procs = [workers.start("--processes", "1", "--threads", "4", "--grace", "5", env=env) for _ in range(2)]
    leader = wait_until(engine.mirror_leader, 30, message="a mirror leads")
    first = [r.id for r in add.enqueue_many([(i, i) for i in range(200)])]
    wait_until(lambda: len(shared_db.states()) == 200 and set(shared_db.states().values()) == {"completed"}, 60,
               message="200 completed rows")
    pid = int(leader.split("|", 1)[1].rsplit(":", 2)[1])
    os.kill(pid, signal.SIGKILL)  # the leading supervisor's mirror process
    second = [r.id for r in add.enqueue_many([(i, i) for i in range(300)])]  # finish while nobody mirrors
    wait_until(lambda: (now := engine.mirror_leader()) and now != leader, 40, message="another mirror leads")
    wait_until(lambda: set(shared_db.states()) == {*first, *second} and set(shared_db.states().values()) == {"completed"},
               60, message="all 500 rows after the takeover")
    wait_until(lambda: pending(engine) == 0, 10, message="every entry acknowledged")
    outputs = []
    for proc in procs:
        os.killpg(proc.pid, signal.SIGTERM)
        outputs.append(proc.communicate(timeout=30)[0])
    text = "\n".join(outputs)
    assert "database is locked" not in text and "Traceback" not in text, text
    assert "stands by" in text and text.count(" leads (lease ") >= 2, text
