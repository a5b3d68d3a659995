"""Job ids (engine/keys.py new_job_id): short, time-ordered, unique across processes."""

from __future__ import annotations

import multiprocessing
import time

from django_jobs.engine.keys import (
    ID_ALPHABET,
    JOB_ID_LENGTH,
    id_time_part,
    job_shard,
    new_job_id,
    new_job_ids,
    shard_job_id,
)


def _ids(n: int) -> list[str]:
    return [new_job_id() for _ in range(n)]


def test_an_id_is_20_base62_characters_and_its_alphabet_sorts_as_ascii():
    job_id = new_job_id()
    assert len(job_id) == JOB_ID_LENGTH == 20
    assert set(job_id) <= set(ID_ALPHABET)
    assert list(ID_ALPHABET) == sorted(ID_ALPHABET) and len(set(ID_ALPHABET)) == 62
    # Nothing that means something elsewhere: a shard suffix ('.'), a hash tag ('{'), a key separator (':').
    assert not set(job_id) & set(".{}:#-/ ")


def test_ids_sort_in_the_order_of_their_milliseconds():
    assert id_time_part(0) == "00000000" and id_time_part(62**8 - 1) == "zzzzzzzz"
    times = [0, 1, 61, 62, 1_700_000_000_000, 1_765_000_000_000, 1_765_000_000_001, 4_102_444_800_000]
    assert sorted(times, key=id_time_part) == times and [id_time_part(t) for t in times] == sorted(id_time_part(t) for t in times)
    first = new_job_id()
    time.sleep(0.002)
    later = _ids(100)
    assert all(first < other for other in later)
    assert id_time_part(time.time_ns() // 1_000_000)[:6] == later[-1][:6]


def test_ids_are_unique_across_processes():
    with multiprocessing.get_context("spawn").Pool(4) as pool:
        batches = pool.map(_ids, [20_000] * 4)
    batches.append(_ids(20_000))
    every = [i for batch in batches for i in batch]
    assert len(set(every)) == len(every) == 100_000
    # Ids of one millisecond differ in their 12 random characters.
    assert len({i[8:] for i in every}) == len(every)


def test_a_sharded_id_still_names_its_shard():
    job_id = shard_job_id(new_job_id(), 3)
    assert job_id[20:] == ".3" and job_shard(job_id, 4) == 3


def _after_fork(_: int) -> tuple[list[str], int, int]:
    import os

    from django_jobs import runtime

    return _ids(200), runtime.pid(), os.getpid()


def test_a_forked_child_draws_other_ids_and_knows_its_own_pid():
    """Random bytes are drawn 128 ids at a time: a child forked mid-buffer must not reuse the parent's."""
    from django_jobs import runtime

    new_job_id()  # the parent's buffer now holds 127 more ids' worth
    with multiprocessing.get_context("fork").Pool(2) as pool:
        children = pool.map(_after_fork, [0, 1])
    parent = _ids(200)
    every = parent + [i for ids, _, _ in children for i in ids]
    assert len(set(every)) == len(every) == 600
    assert all(cached == real for _, cached, real in children) and runtime.pid() not in {real for _, _, real in children}


def test_ids_made_together_have_the_form_of_one_made_alone_and_share_their_millisecond():
    before = id_time_part(time.time_ns() // 1_000_000)
    ids = new_job_ids(1_000)
    after = id_time_part(time.time_ns() // 1_000_000)
    assert len(ids) == len(set(ids)) == 1_000
    assert all(len(job_id) == JOB_ID_LENGTH and set(job_id) <= set(ID_ALPHABET) for job_id in ids)
    # One clock read for them all: one time part, within the call, no earlier than an id made before.
    assert len({job_id[:8] for job_id in ids}) == 1 and before <= ids[0][:8] <= after
    assert new_job_ids(0) == [] and len(new_job_ids(1)) == 1
    # The random parts are drawn anew (no id of a call is one of another's), and spread over the alphabet.
    assert not set(ids) & set(new_job_ids(1_000))
    assert len({c for job_id in ids for c in job_id[8:]}) == 62
