"""A running job's timeout is looked up on first read (RunningJob.timeout), not while the job is decoded."""

from __future__ import annotations

import json
from typing import Any

from django.conf import settings
from django.test import override_settings

from django_jobs.engine.queue import Claimed
from django_jobs.worker.executor import Prepared, RunningJob
from tests.testapp import jobs


def _job(name: str, args: list[Any], options: dict[str, Any] | None = None, queue: str = "default") -> RunningJob:
    data = json.dumps({"v": 1, "n": name, "a": args, "o": options or {}})
    job = RunningJob(Claimed(queue, "job-1", "token", data, 1, 0, "", ""))
    Prepared(job, "worker-1")
    return job


def _jobs_settings(**values: Any) -> Any:
    return override_settings(DJANGO_JOBS={**getattr(settings, "DJANGO_JOBS", {}), **values})


def test_the_timeout_is_the_first_set_of_the_option_the_job_the_queue_and_the_default():
    with _jobs_settings(QUEUES={"default": {}, "slow": {"DEFAULT_TIMEOUT": 7}}, DEFAULT_TIMEOUT=30):
        assert _job(jobs.too_slow.module_path, [0.1]).timeout == 0.5  # the job's own
        assert _job(jobs.too_slow.module_path, [0.1], {"to": 2}).timeout == 2.0  # the enqueue's option
        assert _job(jobs.add.module_path, [1, 2], queue="slow").timeout == 7.0  # the queue's
        assert _job(jobs.add.module_path, [1, 2]).timeout == 30.0  # the default
    with _jobs_settings(QUEUES={"default": {}}, DEFAULT_TIMEOUT=None):
        assert _job(jobs.add.module_path, [1, 2]).timeout is None


def test_it_is_looked_up_on_first_read_and_kept():
    with _jobs_settings(QUEUES={"default": {}}, DEFAULT_TIMEOUT=30):
        job = _job(jobs.add.module_path, [1, 2])
    with _jobs_settings(QUEUES={"default": {}}, DEFAULT_TIMEOUT=None):
        assert job.timeout is None  # read after the settings changed: looked up now
        with _jobs_settings(QUEUES={"default": {}}, DEFAULT_TIMEOUT=30):
            assert job.timeout is None  # kept from the first read


def test_a_job_that_cannot_run_or_is_not_prepared_has_none():
    claimed = Claimed("default", "job-1", "token", json.dumps({"v": 1, "n": jobs.too_slow.module_path, "a": []}), 1, 0, "", "")
    assert RunningJob(claimed).timeout is None  # nothing prepared yet
    job = RunningJob(claimed)
    prepared = Prepared(job, "worker-1")
    assert prepared.failure is not None  # the arguments do not fit
    job.prepared = prepared
    assert job.timeout is None


def test_an_option_that_is_not_a_number_is_passed_over():
    with _jobs_settings(QUEUES={"default": {}}, DEFAULT_TIMEOUT=30):
        assert _job(jobs.add.module_path, [1, 2], {"to": "soon"}).timeout == 30.0
