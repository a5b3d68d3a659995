"""The mirror's Redis side (issue 17): the snapshot in bare commands, mirror_done and retention batched.

Real Redis (one server and a Cluster); no database: these call the engine as the mirror does.
"""

from __future__ import annotations

import pytest

from django_jobs.engine.keys import MIRROR_GROUP
from django_jobs.engine.streams import _pairs

pytestmark = pytest.mark.parametrize("topology", ["server", "cluster"], indirect=True)

NO_SUCH_JOB = "f" * 32


def finished_and_waiting(work) -> tuple[list[str], str]:
    from tests.testapp.jobs import add

    done = [add.enqueue(1, n).id for n in range(3)]
    work(["default"])
    return done, add.enqueue(2, 2).id


def test_the_snapshot_reads_what_the_script_reads(engine, work):
    done, waiting = finished_and_waiting(work)
    k = engine.keys("default")
    ids = [waiting, *done, NO_SUCH_JOB]
    for lean in (0, 1, 3, len(ids)):
        tip, hashes = engine.mirror_snapshot("default", ids, lean=lean)
        script_tip, *replies = engine._run("mirror_snapshot", (k.events,), (k.job_prefix, lean, *ids))
        assert tip == script_tip != "0-0"
        assert hashes == [_pairs(reply) if reply else {} for reply in replies]
        # A lean job still waiting comes back as its state only; every other as its whole hash.
        assert (hashes[0] == {"s": "waiting"}) is (lean > 0)
        assert [h["s"] for h in hashes[1:4]] == ["completed"] * 3 and all("f" in h for h in hashes[1:4])
        assert hashes[4] == {}
    assert engine.mirror_snapshot("default", [], lean=0)[1] == []


def test_mirror_done_lists_only_jobs_finished_as_their_rows_hold_them(engine, work, r):
    done, waiting = finished_and_waiting(work)
    k = engine.keys("default")
    engine.mirror_ensure_group("default", MIRROR_GROUP)
    finished = {job_id: r.hget(k.job(job_id), "f") for job_id in done}
    r.zrem(k.completed, done[2])  # its hash says completed, but it left the completed set
    recorded = [
        (done[0], finished[done[0]]),  # as the row holds it: listed, scored like its set
        (done[1], str(int(finished[done[1]]) - 1)),  # the row holds an earlier finish: not listed
        (done[2], finished[done[2]]),  # not a member of its set: not listed
        (waiting, "1"),  # not finished
        (NO_SUCH_JOB, "1"),  # no hash
    ]
    acked, listed, _ = engine.mirror_done("default", MIRROR_GROUP, [], recorded)
    assert (acked, listed) == (0, 1)
    assert r.zrange(k.recorded("completed"), 0, -1, withscores=True) == [(done[0], r.zscore(k.completed, done[0]))]


def test_retention_deletes_recorded_jobs_and_drops_those_that_left_their_set(settings, jobs_settings, work, r):
    from django_jobs.engine import get_engine, reset_engine
    from tests.testapp.jobs import add

    settings.DJANGO_JOBS = {**jobs_settings, "KEEP_COMPLETED": {"AGE": 0, "COUNT": 0}}
    reset_engine()
    engine = get_engine()
    engine.mirror_ensure_group("default", MIRROR_GROUP)
    engine.mirror_hold(["default"], cap=10_000, hold_ms=60_000)
    ids = [add.enqueue(1, n).id for n in range(5)]
    work(["default"])
    k = engine.keys("default")
    assert r.zcard(k.completed) == 5  # kept for no time, but kept until the mirror recorded them
    # A job listed as recorded that is no longer in the completed set (retried since, say): its
    # hash must stay, and it leaves the recorded set.
    ghost = "e" * 32
    r.hset(k.job(ghost), mapping={"s": "waiting"})
    r.zadd(k.recorded("completed"), {ghost: 0})
    finished = {job_id: r.hget(k.job(job_id), "f") for job_id in ids}
    engine.mirror_done("default", MIRROR_GROUP, [], [(job_id, finished[job_id]) for job_id in ids[:4]])
    assert r.zrange(k.completed, 0, -1) == [ids[4]]  # the unrecorded one stays
    assert [r.exists(k.job(job_id)) for job_id in ids] == [0, 0, 0, 0, 1]
    assert r.exists(k.job(ghost)) == 1
    assert r.zcard(k.recorded("completed")) == 0
