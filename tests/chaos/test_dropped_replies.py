"""Replies lost after the script ran (a TCP proxy hangs up): replays change nothing twice."""

from __future__ import annotations

import time

import pytest

from tests.chaos.proxy import DropProxy, script_sha
from tests.testapp import jobs_chaos

pytestmark = pytest.mark.chaos


@pytest.fixture
def proxy(redis_server):
    p = DropProxy(redis_server.port).start()
    yield p
    p.close()


def run_through(chaos, proxy, jobs: int, *, only: list[str] | None, every: float = 0.05, seconds: float = 3.0):
    """Run ``jobs`` jobs on 2 worker processes behind ``proxy`` while it keeps losing script replies."""
    sup = chaos.start("--processes=2", "--threads=4", "--grace=5", ready=2, env={"DJJ_REDIS_URL": proxy.url})
    children = sorted(sup.children())
    shas = [script_sha(name) for name in only] if only is not None else None
    tags = [f"d{i}" for i in range(jobs)]
    results = []
    deadline = time.monotonic() + seconds
    i = 0
    while time.monotonic() < deadline:
        if i < jobs:
            results += jobs_chaos.slow.enqueue_many([(tag, 0.01) for tag in tags[i : i + 25]])
            i += 25
        proxy.drop_script_replies(1, only=shas)
        time.sleep(every)
    results += jobs_chaos.slow.enqueue_many([(tag, 0.01) for tag in tags[i:]])
    proxy.drop_script_replies(0)
    for result in results:
        chaos.wait_state(result.id, "completed", timeout=30)
    assert sorted(sup.children()) == children, "no worker process died"
    assert sup.stop() == 0
    return results


def assert_once_each(chaos, results) -> None:
    """Every job completed with one attempt, ran once, and got one outcome."""
    for result in results:
        job = chaos.job(result.id)
        assert job["a"] == "1", f"a replayed claim or settle counted twice: {job}"
    ends = chaos.counts("end")
    assert len(ends) == len(results), "every job ran"
    assert max(ends.values()) == 1, {tag: n for tag, n in ends.items() if n > 1}
    assert chaos.engine.counts("default")["completed"] == len(results)
    chaos.check_invariants()  # includes: one terminal event per job, none after it


def test_a_settle_whose_reply_is_lost_is_replayed_without_a_second_outcome(chaos, proxy):
    # A worker settles with settle.lua (the completer) or, riding its next fetch, with settle_and_fetch.lua.
    results = run_through(chaos, proxy, 300, only=["settle", "settle_and_fetch"])
    assert proxy.dropped.get(script_sha("settle"), 0) + proxy.dropped.get(script_sha("settle_and_fetch"), 0) >= 10, proxy.dropped
    assert_once_each(chaos, results)


def test_lost_replies_of_any_script_lose_no_job_and_run_none_twice(chaos, proxy):
    # Lost fetch replies leave claimed jobs nobody runs: recovered after their lease, run once.
    results = run_through(chaos, proxy, 300, only=None)
    assert proxy.total_dropped >= 20, proxy.dropped
    # Replies of claims and of settles were among them: at saturation both ride one
    # settle_and_fetch call, so a run may lose no reply of fetch.lua or settle.lua alone.
    dropped = proxy.dropped
    both = dropped.get(script_sha("settle_and_fetch"), 0)
    assert dropped.get(script_sha("fetch"), 0) + both > 0 and dropped.get(script_sha("settle"), 0) + both > 0, dropped
    assert len(dropped) >= 3, dropped  # and of other scripts (enqueue, renew, ...)
    assert_once_each(chaos, results)
    # Every recovery follows a lost reply of a call that claims (fetch, or settle_and_fetch: a job
    # whose claim's reply is lost twice is recovered twice); a lost reply strands at most one
    # claimed batch (8 jobs with claim-ahead).
    recoveries = sum(int(chaos.job(r.id).get("rec", 0)) for r in results)
    claims = proxy.dropped.get(script_sha("fetch"), 0) + proxy.dropped.get(script_sha("settle_and_fetch"), 0)
    assert recoveries <= 8 * claims, (recoveries, proxy.dropped)


def test_the_proxy_really_loses_a_reply_after_the_script_ran(proxy, engine, r, prefix):
    import redis
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    client = redis.Redis(port=proxy.port, decode_responses=True, retry=Retry(NoBackoff(), 0))
    try:
        sha = client.script_load("return redis.call('INCR', KEYS[1])")
        proxy.drop_script_replies(1)
        with pytest.raises(redis.ConnectionError):
            client.evalsha(sha, 1, f"{prefix}:counter")
        assert r.get(f"{prefix}:counter") == "1", "the script ran although its reply was lost"
        assert client.evalsha(sha, 1, f"{prefix}:counter") == 2  # a new connection, not armed any more
        assert proxy.total_dropped == 1
    finally:
        client.close()
