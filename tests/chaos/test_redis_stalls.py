"""Redis itself misbehaves under load: script cache flushed again and again, server frozen."""

from __future__ import annotations

import os
import signal
import threading
import time

import pytest

from tests.testapp import jobs_chaos

pytestmark = pytest.mark.chaos


def test_jobs_complete_once_each_while_the_script_cache_is_flushed_every_20_ms(chaos, r):
    sup = chaos.start("--processes=2", "--threads=4", ready=2)
    stop = threading.Event()
    flushes = 0

    def flush_loop() -> None:
        nonlocal flushes
        with chaos.workers.server.client() as c:
            while not stop.is_set():
                c.script_flush()
                flushes += 1
                time.sleep(0.02)

    flusher = threading.Thread(target=flush_loop, daemon=True)
    flusher.start()
    try:
        results = []
        for i in range(0, 400, 50):
            results += jobs_chaos.slow.enqueue_many([(f"f{j}", 0.005) for j in range(i, i + 50)])
            time.sleep(0.1)
        for result in results:
            chaos.wait_state(result.id, "completed", timeout=30)
    finally:
        stop.set()
        flusher.join(timeout=5)
    assert flushes > 20, "the cache was really flushed under load"
    assert sup.stop() == 0
    assert "Traceback" not in sup.output, sup.output
    assert "NOSCRIPT" not in sup.output, sup.output
    ends = chaos.counts("end")
    assert len(ends) == 400 and set(ends.values()) == {1}, "no fault that allows a duplicate happened"
    assert all(chaos.job(result.id)["a"] == "1" for result in results)
    chaos.check_invariants()


def test_a_redis_frozen_past_the_lease_resumes_and_every_job_completes(chaos, redis_server):
    sup = chaos.start("--processes=2", "--threads=2", "--grace=5", ready=2)
    results = jobs_chaos.slow.enqueue_many([(f"p{i}", 0.3) for i in range(40)])
    chaos.wait_ledger("start", ["p0"])
    assert redis_server.proc is not None
    # SIGSTOP: Redis answers nothing for 3 s (the lease is 2 s): its clock jumps past every lease.
    os.kill(redis_server.proc.pid, signal.SIGSTOP)
    try:
        time.sleep(3.0)
    finally:
        os.kill(redis_server.proc.pid, signal.SIGCONT)
    for result in results:
        chaos.wait_state(result.id, "completed", timeout=40)
    assert sup.alive() and len(sup.children()) == 2, "no worker process died"
    assert sup.stop() == 0
    starts = chaos.counts("start")
    assert len(starts) == 40
    for i, result in enumerate(results):
        job = chaos.job(result.id)
        assert job["a"] == "1"
        runs = 1 + int(job.get("rec", 0))
        assert starts[f"p{i}"] <= runs, f"p{i} ran {starts[f'p{i}']} times with {runs - 1} recovery(ies)"
    # Only jobs that were running when Redis froze may run again (each was recovered, checked above).
    again = {tag for tag, n in starts.items() if n > 1}
    assert len(again) <= 4, f"more reruns than the 2 x 2 slots could hold: {sorted(again)}"
    chaos.check_invariants()


def test_client_pause_past_the_lease_holds_every_write_then_work_resumes(chaos, r):
    sup = chaos.start("--processes=2", "--threads=2", "--grace=5", ready=2)
    results = jobs_chaos.slow.enqueue_many([(f"c{i}", 0.2) for i in range(30)])
    chaos.wait_ledger("start", ["c0"])
    # Writes (every script) wait 3 s while Redis' clock runs on: leases expire meanwhile.
    r.execute_command("CLIENT", "PAUSE", "3000", "WRITE")
    before = chaos.engine.counts("default")["completed"]  # reads still answer
    time.sleep(1.0)
    assert chaos.engine.counts("default")["completed"] == before, "the pause held the settles"
    for result in results:
        chaos.wait_state(result.id, "completed", timeout=40)
    assert sup.stop() == 0
    starts = chaos.counts("start")
    assert len(starts) == 30
    for i, result in enumerate(results):
        job = chaos.job(result.id)
        assert job["a"] == "1"
        assert starts[f"c{i}"] <= 1 + int(job.get("rec", 0))
    chaos.check_invariants()
