"""Sharded queues (docs/scaling.md#sharded-queues): one queue over several hash tags, shown as one."""

from __future__ import annotations

import pytest
from django.test import override_settings

from django_jobs import job
from django_jobs.compat import TaskResultStatus
from tests.conftest import SHARDS
from tests.testapp import jobs

# One Redis server and a real Redis Cluster (tests/conftest.py): the shards land on several primaries.
pytestmark = [pytest.mark.parametrize("topology", ["server", "cluster"], indirect=True), pytest.mark.usefixtures("sharded")]


@job(unique_key="a:{x}", limit_key="b:{x}", limit_concurrency=1)
def two_keys(x: int) -> int:
    """A unique key and a different limit key: cannot hold on a sharded queue (E041)."""
    return x


def hot(task):
    return task.using(queue_name="hot")


def test_jobs_spread_over_every_shard_and_all_run(engine, work):
    results = [hot(jobs.add).enqueue(i, 1) for i in range(40)]
    per_shard = [engine.counts(shard)["waiting"] for shard in engine.shards("hot")]
    assert per_shard == [10, 10, 10, 10]  # round robin
    assert engine.counts("hot")["waiting"] == 40
    assert work() == 40
    for i, result in enumerate(results):
        fresh = jobs.add.get_result(result.id)
        assert fresh.status == TaskResultStatus.SUCCESSFUL
        assert fresh.return_value == i + 1
        assert fresh.queue == "hot"
    assert engine.counts("hot")["completed"] == 40


def test_a_bulk_enqueue_of_several_chunks_spreads_over_the_shards_and_returns_each_job_in_order(engine):
    from django_jobs.backends import BULK_CHUNK

    count = 2 * BULK_CHUNK + 4  # more than one chunk: the streamed path, per shard
    results = hot(jobs.add).enqueue_many([(i, 1) for i in range(count)])
    assert [engine.counts(shard)["waiting"] for shard in engine.shards("hot")] == [count // 4] * 4
    assert [result.args for result in results] == [[i, 1] for i in range(count)]
    for result in results[:: BULK_CHUNK // 4]:
        fresh = jobs.add.get_result(result.id)
        assert (fresh.args, fresh.enqueued_at) == (result.args, result.enqueued_at)


def shard_index(job_id: str) -> int:
    return int(job_id.rpartition(".")[2])


def test_a_shard_key_keeps_related_jobs_on_one_shard_in_order(engine, work, ledger_path):
    from tests.conftest import read_ledger

    tags = [f"c7-{i}" for i in range(8)]
    results = [hot(jobs.record).using(shard_key="customer:7").enqueue(tag) for tag in tags]
    results += [hot(jobs.record).enqueue(f"other-{i}") for i in range(8)]
    assert len({shard_index(r.id) for r in results[:8]}) == 1
    assert len({shard_index(r.id) for r in results[8:]}) == SHARDS
    work(threads=1)
    ran = [row[2] for row in read_ledger(ledger_path)]
    assert [tag for tag in ran if tag.startswith("c7-")] == tags  # FIFO holds within the shard


def test_the_unique_key_decides_the_shard_so_uniqueness_holds(engine, work):
    from tests.testapp import jobs_limits

    first = hot(jobs_limits.sync_account).enqueue(5)
    again = hot(jobs_limits.sync_account).enqueue(5)
    assert again.deduplicated and again.id == first.id
    others = {shard_index(hot(jobs_limits.sync_account).enqueue(n).id) for n in range(100, 120)}
    assert len(others) > 1  # other keys go to other shards
    assert engine.counts("hot")["waiting"] == 21
    work()
    assert engine.counts("hot")["completed"] == 21


def test_a_limit_key_decides_the_shard(engine):
    from tests.testapp import jobs_limits

    ids = [hot(jobs_limits.per_customer).enqueue(3, f"t{i}", 0).id for i in range(6)]
    assert len({shard_index(i) for i in ids}) == 1


def test_the_worker_gives_every_shard_the_first_turn_in_turn(engine):
    from django_jobs.worker.process import WorkerProcess

    worker = WorkerProcess(queues=["default", "hot"], threads=1, burst=True)
    rounds = [worker._rotated_queues() for _ in range(2 * SHARDS)]
    assert all(sorted(r) == sorted(["default", *engine.shards("hot")]) for r in rounds)
    # The queues take the first turn in turn, and so do the shards within the queue.
    assert [r[0] == "default" for r in rounds].count(True) == SHARDS
    first_shards = [next(q for q in r if q.startswith("hot#")) for r in rounds]
    assert set(first_shards[:SHARDS]) == set(engine.shards("hot"))


def test_pause_resume_purge_and_stats_treat_the_shards_as_one_queue(engine, work):
    import io
    import json

    from django.core.management import call_command

    from django_jobs import operations

    def cli(*args):
        out = io.StringIO()
        call_command("jobs", *args, stdout=out, stderr=io.StringIO())
        return out.getvalue()

    for i in range(8):
        hot(jobs.add).enqueue(i, i)
    cli("pause", "hot")
    assert all(engine.is_paused(s) for s in engine.shards("hot"))
    stats = json.loads(cli("stats", "hot", "--json"))
    assert stats["hot"]["paused"] is True and stats["hot"]["waiting"] == 8
    assert work(["hot"]) == 0
    operations.resume("hot")
    assert not any(engine.is_paused(s) for s in engine.shards("hot"))
    assert work(["hot"]) == 8
    listed = json.loads(cli("list", "hot", "--state", "completed", "--json"))
    assert len(listed["jobs"]) == 8 and listed["total"] == 8
    cli("purge", "hot", "--state", "completed", "--yes")
    assert engine.counts("hot")["completed"] == 0
    assert all(engine.counts(s)["completed"] == 0 for s in engine.shards("hot"))


def test_operations_by_id_find_the_job_on_its_shard(engine, work):
    import io

    from django.core.management import call_command

    waiting = [hot(jobs.add).using(delay=60).enqueue(i, 0) for i in range(SHARDS)]
    assert {shard_index(r.id) for r in waiting} == set(range(SHARDS))
    for result in waiting:
        assert result.cancel() == "cancelled"
        assert jobs.add.get_result(result.id).state == "cancelled"
    out = io.StringIO()
    call_command("jobs", "retry", waiting[1].id, "--yes", stdout=out, stderr=io.StringIO())
    call_command("jobs", "show", waiting[2].id, stdout=out, stderr=io.StringIO())
    assert waiting[2].id in out.getvalue()
    assert jobs.add.get_result(waiting[1].id).state == "waiting"
    failed = hot(jobs.always_fails).enqueue()
    work(["hot"])
    assert jobs.always_fails.get_result(failed.id).state == "failed"
    from django_jobs import operations

    assert operations.retry([failed.id], queue="hot").done_count == 1
    work(["hot"])
    assert failed.wait(timeout=5).state == "failed"
    assert jobs.always_fails.get_result(failed.id).earlier_errors  # it ran again after the retry


@pytest.mark.single_server("settings checks do not depend on the server")
@pytest.mark.parametrize(
    ("options", "check_id"),
    [
        ({"SHARDS": 0}, "django_jobs.E004"),
        ({"SHARDS": "4"}, "django_jobs.E004"),
        ({"SHARDS": True}, "django_jobs.E004"),
        ({"SHARDS": 4, "RATE_LIMIT": "10/s"}, "django_jobs.E040"),
        ({"SHARDS": 4, "CONCURRENCY": 2}, "django_jobs.E040"),
    ],
)
def test_bad_shards_settings_are_check_errors_not_tracebacks(jobs_settings, options, check_id):
    from django_jobs.checks import _queue_errors
    from django_jobs.conf import SettingError, build_settings

    errors = _queue_errors({"default": {}, "hot2": options})
    assert [e.id for e in errors] == [check_id]
    assert "hot2" in errors[0].msg and errors[0].hint
    with pytest.raises(SettingError):
        build_settings({**jobs_settings, "QUEUES": {"hot2": options}})


@pytest.mark.single_server("the refusals happen before Redis is asked")
def test_what_cannot_hold_across_shards_is_refused(engine):
    from django_jobs.compat import InvalidTask
    from django_jobs.exceptions import ConfigurationError
    from django_jobs.limits import set_queue_limits, shard_problem
    from tests.testapp import jobs_limits

    with pytest.raises(InvalidTask, match="unique key decides the shard"):
        hot(jobs_limits.sync_account).using(shard_key="x").enqueue(1)
    assert shard_problem(hot(jobs_limits.sync_account), SHARDS) is None
    with pytest.raises(ConfigurationError, match="SHARDS=4"):
        set_queue_limits("hot", concurrency=3)


@pytest.mark.db
@pytest.mark.django_db(transaction=True)
def test_the_admin_mirror_and_metrics_show_the_shards_as_one_queue(engine, work, admin_client):
    from django.urls import reverse

    from django_jobs import mirror
    from django_jobs.metrics import QueueCollector
    from django_jobs.models import JobRecord

    done = [hot(jobs.add).enqueue(i, 1) for i in range(8)]
    work(["hot"])
    waiting = [hot(jobs.add).enqueue(i, 2) for i in range(5)]
    page = admin_client.get(reverse("admin:django_jobs_queues")).content.decode()
    assert "hot" in page and "hot#" not in page
    assert f"{SHARDS} shards" in page  # in place of the limits form
    assert mirror.mirror_once() == 13
    rows = JobRecord.objects.filter(queue="hot")
    assert {r.job_id: r.state for r in rows} == {**{r.id: "completed" for r in done}, **{r.id: "waiting" for r in waiting}}
    assert not JobRecord.objects.filter(queue__contains="#").exists()
    assert mirror.resync(["hot"]) == 13
    assert JobRecord.objects.filter(queue="hot").count() == 13
    depth = {tuple(s.labels.values()): s.value for s in next(iter(QueueCollector(["hot"]).collect())).samples}
    assert depth[("hot", "completed")] == 8 and depth[("hot", "waiting")] == 5


def test_a_flow_on_a_sharded_queue_keeps_its_jobs_on_one_shard_and_runs(engine, work):
    from django_jobs.flows import Flow

    for _ in range(SHARDS):  # each flow on a shard of its own choosing; on a cluster, one slot each
        flow = Flow(hot(jobs.add).s(1, 2), children=[hot(jobs.add).s(3, 4), hot(jobs.add).s(5, 6)]).enqueue()
        ids = [flow.id, *(child.id for child in flow.children)]
        assert len({shard_index(i) for i in ids}) == 1
    work(["hot"])
    assert flow.wait(timeout=5).return_value == 3
    assert jobs.add.get_result(flow.children[1].id).return_value == 11
    assert engine.counts("hot")["completed"] == 3 * SHARDS


def test_a_flow_over_a_sharded_queue_and_other_queues_runs_and_is_retried(engine, work, topology, ledger_path):
    """On a cluster its steps between the shard and the other queues go through the outbox (the
    relay of a sharded queue relays each shard), on one server in place."""
    from django_jobs.engine.protocol import RetryCode
    from django_jobs.flows import Flow
    from tests.chaos.invariants import assert_invariants
    from tests.testapp import jobs_flows as jf

    queues = ["default", "low", *engine.shards("hot")]
    failing = jobs.flaky.using(queue_name="hot", attempts=1).s("shard-x", 1)
    inner = Flow(hot(jf.gather).s("inner"), children=[jf.value.using(queue_name="low").s(1), hot(jf.value).s(2)])
    handle = Flow(jf.gather.s("p"), children=[failing, jf.value.using(queue_name="low", delay=600).s(3), inner]).enqueue()
    kid, low_kid, inner_id = (c.id for c in handle.children)
    assert engine.get_job("hot", kid).get("xs") == ("1" if topology == "cluster" else None)

    work(["hot", "low", "default"])

    handle.result.refresh()
    assert handle.result.state == "failed" and handle.result.failure_reason == "child_failed"
    assert engine.get_job("low", low_kid)["s"] == "cancelled"  # cancelled by the parent's end
    assert sum(engine.outbox_size(q) for q in ("hot", "low", "default")) == 0
    assert_invariants(engine.client, engine.prefix, queues)

    assert engine.retry_many("hot", [kid]) == [RetryCode.RETRIED]  # re-opens the parent, relayed at once
    assert engine.get_job("default", handle.id)["s"] == "waiting_children"
    assert engine.get_job("low", low_kid)["s"] == "waiting"
    work(["hot", "low", "default"])

    handle.result.refresh()
    assert handle.result.state == "completed"
    value = handle.result.return_value
    assert value[kid] == ["completed", "ok after 2"] and value[low_kid] == ["completed", 3]
    assert value[inner_id][0] == "completed"
    assert sum(engine.outbox_size(q) for q in ("hot", "low", "default")) == 0
    assert_invariants(engine.client, engine.prefix, queues)


@pytest.mark.single_server("the check reads no server")
def test_the_check_names_a_declared_job_whose_keys_cannot_hold_on_its_sharded_queue(jobs_settings):
    from django_jobs.checks import check_job_queues
    from django_jobs.compat import InvalidTask

    assert not [e for e in check_job_queues() if "two_keys" in e.msg]  # default is not sharded
    queues = {**jobs_settings["QUEUES"], "default": {"SHARDS": 2}}
    with override_settings(DJANGO_JOBS={**jobs_settings, "QUEUES": queues}):
        errors = [e for e in check_job_queues() if "two_keys" in e.msg]
        assert [e.id for e in errors] == ["django_jobs.E041"]
        assert "unique key and a per-key limit" in errors[0].msg and errors[0].hint
        with pytest.raises(InvalidTask, match="unique key and a per-key limit"):
            two_keys.enqueue(1)


# -- QueueEvents on a sharded queue: every shard's stream, one listener ---------------------

#: Seconds an idle listener is measured (its CPU time is counted in ticks of 1-10 ms).
IDLE = 2.0


def drain(listener) -> list:
    """Read ``listener`` until a second passes without an event."""
    seen = []
    while batch := listener.read(timeout=1):
        seen += batch
    return seen


def own_position(event) -> str:
    """The event's id in its own shard's stream (``"<entry id>"`` or ``"<entry id>:<i>"``)."""
    from django_jobs.events import split_position

    shard, positions = split_position(event.id)
    return positions[shard]


def shard_stream(engine, shard: int) -> list[tuple[str, str, str]]:
    """The events of one shard's stream as Redis holds them: (event id, type, job id)."""
    from django_jobs.engine.streams import expand_entry

    entries = engine.client.xrange(engine.keys(f"hot#{shard}").events)
    return [(event_id, f["e"], f["j"]) for entry_id, entry in entries for event_id, f in expand_entry(entry_id, entry)]


def test_one_listener_gets_the_events_of_every_shard_each_shard_in_its_order(engine, work):
    from django_jobs.events import QueueEvents

    listener = QueueEvents("hot")  # "$": pinned on every shard before the first look
    results = hot(jobs.add).enqueue_many([(i, 1) for i in range(12)]) + [hot(jobs.add).enqueue(i, 2) for i in range(4)]
    assert {shard_index(r.id) for r in results} == set(range(SHARDS))
    work(["hot"])
    seen = drain(listener)
    assert {e.job_id for e in seen if e.type == "completed"} == {r.id for r in results}
    for result in results:
        assert [e.type for e in seen if e.job_id == result.id] == ["waiting", "active", "completed"]
    assert all(e.queue == "hot" and e.shard == shard_index(e.job_id) for e in seen)
    for shard in range(SHARDS):  # per shard: exactly its stream, in its order
        assert [(own_position(e), e.type, e.job_id) for e in seen if e.shard == shard] == shard_stream(engine, shard)
    assert listener.read(timeout=0.05) == []


def test_a_listener_resumed_from_a_mid_stream_id_loses_and_repeats_nothing(engine, work):
    from django_jobs.events import QueueEvents, split_position

    listener = QueueEvents("hot", last_id="0")
    hot(jobs.add).enqueue_many([(i, 1) for i in range(16)])
    for i in range(8):
        hot(jobs.add).enqueue(i, 3)
    work(["hot"])
    seen = drain(listener)
    assert len(seen) == 3 * 24

    def ident(event):
        return event.shard, own_position(event), event.type, event.job_id

    inside = next(i for i, e in enumerate(seen) if ":" in own_position(e) and not own_position(e).endswith(":0"))
    for cut in (len(seen) // 2, inside, 0, len(seen) - 1):
        resumed = drain(QueueEvents("hot", last_id=seen[cut].id))
        assert sorted(map(ident, resumed)) == sorted(map(ident, seen[cut + 1 :])), f"resumed after event {cut}"
    # One shard's listener takes its own position from the queue's id, and keeps plain ids.
    cut = len(seen) // 2
    shard = seen[cut].shard
    alone = drain(QueueEvents(f"hot#{shard}", last_id=seen[cut].id))
    assert [(e.id, e.queue) for e in alone] == [(own_position(e), f"hot#{shard}") for e in seen[cut + 1 :] if e.shard == shard]
    assert all(e.shard is None for e in alone)
    # last_id holds every shard's position: a listener started from it gets only what comes next.
    split_position(listener.last_id)
    again = QueueEvents("hot", last_id=listener.last_id)
    assert again.read(timeout=0.05) == []
    late = hot(jobs.add).enqueue(0, 0)
    assert [(e.type, e.job_id) for e in drain(again)] == [("waiting", late.id)]
    with pytest.raises(ValueError, match="sharded queue 'hot'"):
        QueueEvents("hot", last_id=own_position(seen[0]))  # one stream's id says nothing of the others
    with pytest.raises(ValueError, match="no position in the stream of 'default'"):
        QueueEvents("default", last_id=seen[0].id)


def test_a_listener_of_a_sharded_queue_keeps_only_the_types_asked_for(engine, work):
    from django_jobs.events import FINAL_EVENTS, QueueEvents

    listener = QueueEvents("hot", types=FINAL_EVENTS)
    fine = [hot(jobs.add).enqueue(i, 1) for i in range(SHARDS)]
    failing = [hot(jobs.always_fails).enqueue() for _ in range(SHARDS)]
    assert {shard_index(r.id) for r in failing} == set(range(SHARDS))
    work(["hot"])
    seen = drain(listener)
    assert sorted((e.type, e.job_id) for e in seen) == sorted(
        [("completed", r.id) for r in fine] + [("failed", r.id) for r in failing]
    )


def test_a_busy_shard_does_not_hold_back_the_events_of_the_others(engine, monkeypatch):
    from django_jobs import events

    monkeypatch.setattr(events, "BATCH", 20)  # entries per shard and read
    listener = events.QueueEvents("hot")
    busy = [hot(jobs.add).using(shard_key="busy").enqueue(i, 0) for i in range(100)]  # one entry each
    busy_shard = shard_index(busy[0].id)
    quiet = [hot(jobs.add).enqueue(i, 1) for i in range(SHARDS)]  # round robin: one on each shard
    first = listener.read(timeout=5)
    assert sum(e.shard == busy_shard for e in first) <= 20
    others = {r.id for r in quiet if shard_index(r.id) != busy_shard}
    assert others <= {e.job_id for e in first}  # in the first read, behind 100 entries of the busy shard
    rest = drain(listener)
    assert sorted(e.job_id for e in first + rest) == sorted(r.id for r in busy + quiet)  # each once


def test_an_idle_listener_of_every_shard_blocks_without_using_cpu(engine):
    import resource

    from django_jobs.events import QueueEvents

    listener = QueueEvents("hot")

    def cpu() -> float:
        usage = resource.getrusage(resource.RUSAGE_THREAD)  # this thread only: the listener's reads
        return usage.ru_utime + usage.ru_stime

    before = cpu()
    assert listener.read(timeout=IDLE) == []
    used = cpu() - before
    # A busy loop would use about IDLE s; one blocking XREAD (one server) or a sweep and a short
    # block every 0.1 s (a cluster) uses a few ms.
    assert used < 0.1 * IDLE, f"{used:.3f} s of CPU in {IDLE} s idle"


def blocked_reads(r) -> int:
    """Connections blocked in an XREAD on the test's Redis (every primary of a cluster)."""
    from redis.cluster import RedisCluster

    if isinstance(r, RedisCluster):
        replies = r.client_list(target_nodes=RedisCluster.PRIMARIES)
        clients = [c for node in (replies.values() if isinstance(replies, dict) else [replies]) for c in node]
    else:
        clients = r.client_list()
    return sum(1 for c in clients if "b" in c["flags"] and c["cmd"] == "xread")


def test_a_listener_woken_by_one_shard_leaves_no_read_blocked_on_the_others(engine, r):
    import threading

    from django_jobs.events import QueueEvents

    listener = QueueEvents("hot")
    # Enqueued once the listener is likely blocked (earlier, its first read finds the job anyway).
    later = threading.Timer(0.3, lambda: hot(jobs.add).enqueue(1, 1))
    later.start()
    try:
        got = listener.read(timeout=8)
    finally:
        later.join()
    assert [e.type for e in got] == ["waiting"]
    assert blocked_reads(r) == 0  # on a cluster: the other shards' XREADs were unblocked
    assert engine.counts("hot")["waiting"] == 1  # the pooled connections answer in step
    assert listener.read(timeout=0.05) == []
