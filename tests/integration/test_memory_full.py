"""Redis out of memory with ``noeviction``: enqueue raises a typed error and writes nothing."""

from __future__ import annotations

import pytest
from django.test import override_settings

from django_jobs.engine import get_engine, reset_engine
from django_jobs.exceptions import EngineError, RedisOutOfMemory
from tests.redis_server import RedisServer
from tests.testapp import jobs


@pytest.fixture
def full_server(jobs_settings):
    server = RedisServer(appendonly=False)
    server.start()
    client = server.client()
    try:
        with override_settings(DJANGO_JOBS={**jobs_settings, "REDIS_URL": server.url}):
            reset_engine()
            jobs.add.enqueue(0, 0)  # scripts loaded, queue keys exist
            used = int(client.info("memory")["used_memory"])
            client.config_set("maxmemory-policy", "noeviction")
            client.config_set("maxmemory", used + 64 * 1024)
            filler = 0
            with pytest.raises(RedisOutOfMemory):
                while True:  # fill the rest with jobs until Redis refuses
                    jobs.add.enqueue_many([(filler, i) for i in range(200)])
                    filler += 1
            yield client
            reset_engine()
    finally:
        client.close()
        server.kill()


def test_enqueue_into_a_full_redis_raises_a_typed_error_and_writes_nothing(full_server):
    engine = get_engine()
    before = engine.counts("default")
    events_before = full_server.xlen(engine.keys("default").events)
    keys_before = full_server.dbsize()
    with pytest.raises(RedisOutOfMemory, match="out of memory") as info:
        jobs.add.enqueue(1, 2)
    assert isinstance(info.value, EngineError)
    assert engine.counts("default") == before
    assert full_server.xlen(engine.keys("default").events) == events_before
    assert full_server.dbsize() == keys_before


def test_a_full_redis_accepts_jobs_again_once_memory_is_freed(full_server):
    full_server.config_set("maxmemory", 0)
    result = jobs.add.enqueue(1, 2)
    assert get_engine().get_job("default", result.id)["s"] == "waiting"


def test_a_bulk_enqueue_of_several_chunks_into_a_full_redis_raises_the_typed_error(full_server):
    # Its chunks are sent without waiting for each other's reply (issue 17): Redis refuses each one,
    # every reply is read (the connection stays in step) and the first refusal is raised, as before.
    from django_jobs.backends import BULK_CHUNK

    engine = get_engine()
    before = engine.counts("default")
    with pytest.raises(RedisOutOfMemory, match="out of memory"):
        jobs.add.enqueue_many([(n, 1) for n in range(3 * BULK_CHUNK)])
    assert engine.counts("default") == before
    full_server.config_set("maxmemory", 0)
    results = jobs.add.enqueue_many([(n, 2) for n in range(3 * BULK_CHUNK)])
    assert engine.counts("default")["waiting"] == before["waiting"] + 3 * BULK_CHUNK
    assert all(result.enqueued_at is not None for result in results)
