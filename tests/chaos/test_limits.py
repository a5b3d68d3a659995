"""Queue limits hold across several real worker processes (runworkers subprocesses).

The limits are set at run time in Redis (:func:`django_jobs.limits.set_queue_limits`), which is
also how the workers, started from tests/settings.py without limits, learn of them.
"""

from __future__ import annotations

import time

import pytest

from django_jobs.limits import set_queue_limits
from tests.chaos.conftest import cpu_seconds
from tests.redis_server import wait_until
from tests.testapp import jobs_chaos

pytestmark = pytest.mark.chaos


def start_times(chaos, ids: list[str]) -> list[int]:
    """Redis ms at which each job was claimed (its first start), sorted."""
    return sorted(int(chaos.job(job_id)["st"]) for job_id in ids)


def wait_all_completed(chaos, ids: list[str], timeout: float) -> None:
    wait_until(
        lambda: chaos.engine.counts("default")["completed"] == len(ids), timeout,
        message=f"{len(ids)} jobs to complete (counts: {chaos.engine.counts('default')})",
    )


def test_a_10_per_second_limit_across_4_processes_is_never_exceeded_and_is_used_fully(chaos):
    set_queue_limits("default", rate="10/s")
    ids = [result.id for result in jobs_chaos.quick.enqueue_many([(f"q{i}",) for i in range(50)])]
    sup = chaos.start("--processes=4", "--threads=4", ready=4)
    wait_all_completed(chaos, ids, timeout=30)
    starts = start_times(chaos, ids)
    # Never exceeded: any 11 consecutive starts span at least one second (Redis clock, ms).
    tightest = min(starts[i + 10] - starts[i] for i in range(len(starts) - 10))
    assert tightest >= 1000, f"11 starts within {tightest} ms"
    # Used fully: 50 starts at 10/s need 4 s after the first batch; waiting is bounded by the
    # fetch hint (no idle seconds between windows).
    assert starts[-1] - starts[0] <= 4000 + 1200, f"50 starts took {starts[-1] - starts[0]} ms"
    # The limit held across processes, not inside one: jobs ran in more than one of them.
    assert len({chaos.job(job_id)["w"] for job_id in ids}) > 1
    assert sup.stop() == 0
    chaos.check_invariants()


def test_a_concurrency_of_2_across_4_processes_holds_and_is_reached(chaos):
    set_queue_limits("default", concurrency=2)
    ids = [result.id for result in jobs_chaos.slow.enqueue_many([(f"s{i}", 0.2) for i in range(12)])]
    sup = chaos.start("--processes=4", "--threads=2", ready=4)
    wait_all_completed(chaos, ids, timeout=30)
    # Each job held a slot from its claim (st) to its settle (f), both Redis ms.
    edges = []
    for job_id in ids:
        job = chaos.job(job_id)
        edges += [(int(job["st"]), 1), (int(job["f"]), -1)]
    running = peak = 0
    for _, step in sorted(edges, key=lambda e: (e[0], e[1])):  # a settle and a claim in the same ms: settle first
        running += step
        peak = max(peak, running)
    assert peak == 2
    # 12 jobs of 0.2 s two at a time: about 1.2 s, not 12 x 0.2 s in one slot.
    first, last = min(e[0] for e in edges), max(e[0] for e in edges)
    assert last - first < 2 * 1200, f"took {last - first} ms"
    assert sup.stop() == 0
    chaos.check_invariants()


def test_a_concurrency_limited_queue_is_never_claimed_ahead_of_a_free_thread(chaos):
    # Short jobs make the workers claim ahead of their free threads; the unlimited "high" queue
    # keeps their threads busy, so a job of the limited queue claimed ahead would wait behind
    # one (counted as running by the limit while it does not run).
    set_queue_limits("default", concurrency=2)
    fill = jobs_chaos.timed.using(queue_name="high").enqueue_many([(f"f{i}", 0.02) for i in range(300)])
    ids = [r.id for r in jobs_chaos.timed.enqueue_many([(f"d{i}", 0.02) for i in range(80)])]
    sup = chaos.start("--processes=2", "--threads=2", ready=2)
    wait_all_completed(chaos, ids, timeout=60)
    wait_until(lambda: chaos.engine.counts("high")["completed"] == len(fill), 60, message="the filler jobs")
    assert sup.stop() == 0
    runs: dict[str, tuple[int, float, float]] = {}  # tag: (pid, start, end), wall clock seconds
    starts = {row[2]: (int(row[1]), float(row[3])) for row in chaos.ledger() if row[0] == "start"}
    for row in chaos.ledger():
        if row[0] == "end":
            runs[row[2]] = (*starts[row[2]], float(row[3]))
    # Never claimed ahead: when a worker claimed a job of the limited queue (st, Redis ms, same
    # clock), at most threads - 1 = 1 of its jobs was running (the claim took a free thread).
    waits = []
    for i, job_id in enumerate(ids):
        claimed_at = int(chaos.job(job_id)["st"]) / 1000
        pid, started, _ = runs[f"d{i}"]
        waits.append(started - claimed_at)
        busy = [tag for tag, (p, s, e) in runs.items() if p == pid and s < claimed_at and e > claimed_at + 0.001]
        assert len(busy) <= 1, f"d{i} was claimed while {busy} ran in the same worker (waited {started - claimed_at:.3f} s)"
    # Observed concurrency of the limited queue (its runs, wall clock): reaches 2, never more.
    edges = sorted([(runs[f"d{i}"][1], 1) for i in range(len(ids))] + [(runs[f"d{i}"][2], -1) for i in range(len(ids))],
                   key=lambda e: (e[0], e[1]))
    running = peak = 0
    for _, step in edges:
        running += step
        peak = max(peak, running)
    assert peak == 2, f"peak concurrency {peak} (longest claim-to-start wait {max(waits):.3f} s)"
    chaos.check_invariants()


def test_jobs_held_by_a_rate_limit_use_no_cpu_while_they_wait(chaos):
    set_queue_limits("default", rate="1/h")
    jobs_chaos.quick.enqueue_many([(f"h{i}",) for i in range(20)])
    sup = chaos.start("--processes=2", "--threads=4", ready=2)
    wait_until(lambda: chaos.engine.counts("default")["completed"] == 1, 10, message="the one allowed job")
    pids = [sup.pid, *sup.children()]
    time.sleep(0.5)
    before = {pid: cpu_seconds(pid) for pid in pids}
    time.sleep(3.0)  # the measurement window itself
    usage = {pid: (cpu_seconds(pid) - before[pid]) / 3.0 for pid in pids}
    assert all(share < 0.02 for share in usage.values()), f"CPU share per process while held: {usage}"
    assert chaos.engine.counts("default")["waiting"] == 19
    assert sup.stop() == 0
    chaos.check_invariants()


def test_progress_reported_in_a_worker_process_is_seen_here_and_a_cancel_stops_the_job(chaos):
    from tests.testapp import jobs_limits

    sup = chaos.start("--processes=1", "--threads=2", ready=1)
    result = jobs_limits.progress_until_cancelled.enqueue(3)
    chaos.wait_ledger("start", [result.id])
    result.refresh()
    assert result.state == "active" and result.progress == {"done": 3, "total": 3}
    assert result.cancel() == "requested"
    chaos.wait_state(result.id, "cancelled", timeout=10)
    assert result.cancel() == "finished"  # cancelling a finished job is a no-op that says so
    result.refresh()
    assert result.progress == {"done": 3, "total": 3}  # the last progress stays readable
    assert sup.stop() == 0
    chaos.check_invariants()


def peak_overlap(chaos, ids: list[str]) -> int:
    """The most of ``ids`` that held a slot at once: from claim (st) to settle (f), Redis ms."""
    edges = []
    for job_id in ids:
        job = chaos.job(job_id)
        edges += [(int(job["st"]), 1), (int(job["f"]), -1)]
    running = peak = 0
    for _, step in sorted(edges):  # same ms: the settle (-1) sorts first
        running += step
        peak = max(peak, running)
    return peak


def test_a_per_key_concurrency_of_2_holds_across_processes_while_other_keys_proceed(chaos):
    from tests.testapp import jobs_limits

    hot = [r.id for r in jobs_limits.per_customer.enqueue_many([(1, f"hot{i}", 0.3) for i in range(10)])]
    others = [r.id for r in jobs_limits.per_customer.enqueue_many([(100 + i, f"other{i}", 0.3) for i in range(10)])]
    sup = chaos.start("--processes=4", "--threads=4", ready=4)
    wait_all_completed(chaos, hot + others, timeout=30)
    assert peak_overlap(chaos, hot) == 2
    for job_id in hot:
        assert chaos.job(job_id)["a"] == "1"  # parked runs are not attempts
    # The hot key's backlog (10 x 0.3 s, two at a time: about 1.5 s) did not hold the others up:
    # every other key's job started before the hot key's last one.
    last_hot_start = max(int(chaos.job(j)["st"]) for j in hot)
    assert max(int(chaos.job(j)["st"]) for j in others) < last_hot_start
    assert peak_overlap(chaos, others) > 2
    assert sup.stop() == 0
    chaos.check_invariants()
    keys = list(chaos.r.scan_iter(match=chaos.engine.keys("default").limit_prefix + "*"))
    assert keys == []  # the key's structures are gone once its jobs are done


def test_a_unique_key_stays_held_through_a_sigkill_recovery_and_is_released_when_the_job_completes(chaos):
    import os
    import signal

    from tests.testapp import jobs_limits

    sup = chaos.start("--processes=1", "--threads=1", "--grace=5", ready=1)
    first = jobs_limits.unique_slow.enqueue("k", 1.0)
    chaos.wait_ledger("start", ["k"])
    [victim] = chaos.pids_of("start", "k")
    os.kill(victim, signal.SIGKILL)
    # Recovered (LEASE_SECONDS is 2 in the test settings) and run again by the restarted process;
    # all along, an enqueue with the same key returns the same job.
    assert jobs_limits.unique_slow.enqueue("k", 1.0).id == first.id
    job = chaos.wait_state(first.id, "completed", timeout=30)
    assert job["rec"] == "1"
    assert chaos.counts("start")["k"] == 2
    assert list(chaos.r.scan_iter(match=chaos.engine.keys("default").unique_prefix + "*")) == []
    fresh = jobs_limits.unique_slow.enqueue("k", 0.0)
    assert not fresh.deduplicated
    chaos.wait_state(fresh.id, "completed", timeout=15)
    assert sup.stop() == 0
    chaos.check_invariants()


def test_jobs_parked_by_their_key_use_no_cpu_while_the_key_is_busy(chaos):
    from tests.testapp import jobs_limits

    sup = chaos.start("--processes=2", "--threads=4", ready=2)
    busy = jobs_limits.per_customer.enqueue_many([(7, f"busy{i}", 4.0) for i in range(2)])
    chaos.wait_ledger("start", ["busy0", "busy1"])
    parked = jobs_limits.per_customer.enqueue_many([(7, f"p{i}", 0.0) for i in range(30)])
    wait_until(lambda: chaos.engine.counts("default")["scheduled"] == 30, 10, message="30 parked jobs")
    pids = [sup.pid, *sup.children()]
    before = {pid: cpu_seconds(pid) for pid in pids}
    time.sleep(2.0)  # the measurement window itself
    usage = {pid: (cpu_seconds(pid) - before[pid]) / 2.0 for pid in pids}
    assert all(share < 0.02 for share in usage.values()), f"CPU share per process while parked: {usage}"
    wait_all_completed(chaos, [r.id for r in [*busy, *parked]], timeout=30)
    assert all(chaos.job(r.id)["a"] == "1" for r in parked)
    assert sup.stop() == 0
    chaos.check_invariants()
