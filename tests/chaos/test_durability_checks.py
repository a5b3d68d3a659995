"""Deploy checks W010 and W011 against a real redis-server configured each way."""

from __future__ import annotations

from contextlib import ExitStack

import pytest
from django.conf import settings
from django.core.checks import run_checks
from django.test import override_settings

from django_jobs.conf import get_settings
from django_jobs.engine.connection import durability
from tests.redis_server import RedisServer


@pytest.fixture(scope="module")
def plain_server():
    """A redis-server of this module's own, reconfigured by each test with CONFIG SET."""
    server = RedisServer(appendonly=False)
    server.start()
    yield server
    server.kill()


@pytest.fixture
def configure(plain_server, jobs_settings):
    """Point DJANGO_JOBS at the module's server and set its persistence and eviction policy."""

    def apply(*, policy: str = "noeviction", aof: bool = False, save: str = "", url: str | None = None) -> None:
        with plain_server.client() as c:
            c.config_set("maxmemory-policy", policy)
            c.config_set("appendonly", "yes" if aof else "no")
            c.config_set("save", save)
        stack.enter_context(override_settings(DJANGO_JOBS={**jobs_settings, "REDIS_URL": url or plain_server.url}))

    with ExitStack() as stack:
        yield apply


def durability_ids() -> list[str]:
    return sorted(m.id for m in run_checks(tags=["django_jobs"], include_deployment_checks=True))


def test_the_test_servers_aof_and_noeviction_pass_the_durability_checks():
    found = durability(get_settings())
    assert found is not None
    assert (found.maxmemory_policy, found.aof, found.persists) == ("noeviction", True, True)
    assert durability_ids() == []


@pytest.mark.parametrize("policy", ["allkeys-lru", "volatile-ttl", "allkeys-random"])
def test_an_evicting_maxmemory_policy_warns_that_jobs_can_be_deleted(configure, policy):
    configure(policy=policy, aof=True)
    [message] = run_checks(tags=["django_jobs"], include_deployment_checks=True)
    assert message.id == "django_jobs.W010"
    assert repr(policy) in message.msg
    assert "noeviction" in message.hint
    # Only a deploy check: a plain `manage.py check` does no network I/O.
    assert run_checks(tags=["django_jobs"]) == []


def test_no_aof_and_no_save_point_warns_that_a_restart_loses_every_job(configure):
    configure(aof=False, save="")
    [message] = run_checks(tags=["django_jobs"], include_deployment_checks=True)
    assert message.id == "django_jobs.W011"
    assert "loses every job" in message.msg
    assert "appendonly yes" in message.hint


def test_rdb_save_points_alone_or_aof_alone_count_as_persistence(configure):
    configure(aof=False, save="60 1")
    assert durability_ids() == []
    configure(aof=True, save="")
    assert durability_ids() == []


def test_both_problems_are_reported_together(configure):
    configure(policy="allkeys-lfu", aof=False, save="")
    assert durability_ids() == ["django_jobs.W010", "django_jobs.W011"]


def test_a_redis_that_refuses_config_gets_no_persistence_guess_but_still_the_eviction_check(configure, plain_server):
    with plain_server.client() as c:
        c.execute_command("ACL", "SETUSER", "noconfig", "on", ">secret", "~*", "&*", "+@all", "-config")
    try:
        configure(policy="allkeys-lru", aof=False, save="", url=f"redis://noconfig:secret@127.0.0.1:{plain_server.port}/0")
        found = durability(get_settings())
        assert found is not None and found.save is None and found.persists is None
        assert durability_ids() == ["django_jobs.W010"]
    finally:
        with plain_server.client() as c:
            c.execute_command("ACL", "DELUSER", "noconfig")


def test_an_unreachable_redis_gets_w001_only(configure):
    configure()
    stopped = RedisServer()  # a free port, nothing listening
    with override_settings(DJANGO_JOBS={**settings.DJANGO_JOBS, "REDIS_URL": stopped.url}):
        assert durability_ids() == ["django_jobs.W001"]
