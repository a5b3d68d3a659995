"""MAX_JOBS_PER_CHILD / MAX_MEMORY_PER_CHILD parsing, the isolated option, and runworkers' limit options."""

from __future__ import annotations

import dataclasses

import pytest
from django.core.management import CommandError, call_command

from django_jobs.conf import SettingError, build_settings
from django_jobs.exceptions import InvalidJob
from django_jobs.worker.heartbeat import rss_mb
from django_jobs.worker.isolation import describe_status
from tests.testapp import jobs_timeouts


@pytest.mark.parametrize("key", ["MAX_JOBS_PER_CHILD", "MAX_MEMORY_PER_CHILD"])
def test_worker_limits_default_to_none_and_take_whole_numbers_or_numeric_strings(key):
    attr = key.lower()
    assert getattr(build_settings({}), attr) is None
    assert getattr(build_settings({key: 500}), attr) == 500
    assert getattr(build_settings({key: "64"}), attr) == 64
    assert getattr(build_settings({key: None}), attr) is None


@pytest.mark.parametrize("key", ["MAX_JOBS_PER_CHILD", "MAX_MEMORY_PER_CHILD"])
@pytest.mark.parametrize("value", [0, -5, 1.5, "many", True, [100]])
def test_a_bad_worker_limit_is_a_setting_error_that_names_the_key_and_gives_an_example(key, value):
    with pytest.raises(SettingError) as info:
        build_settings({key: value})
    assert f"DJANGO_JOBS['{key}'] is {value!r}" in str(info.value)
    assert "or None (no limit)" in str(info.value)
    assert info.value.hint.startswith("E.g. ")


def test_isolated_must_be_a_bool():
    assert jobs_timeouts.isolated_info.isolated is True
    assert jobs_timeouts.steady.isolated is False
    with pytest.raises(InvalidJob, match="isolated='yes' must be True or False"):
        dataclasses.replace(jobs_timeouts.steady, isolated="yes")


@pytest.mark.parametrize("option", ["--max-jobs-per-child", "--max-memory-per-child"])
@pytest.mark.parametrize("value", ["0", "-1", "lots"])
def test_runworkers_refuses_a_bad_limit_before_starting_anything(option, value):
    with pytest.raises(CommandError, match="must be a whole number >= 1"):
        call_command("runworkers", f"{option}={value}")


def test_describe_status_says_how_a_process_ended():
    assert describe_status(9 << 8) == "exited with status 9"
    assert describe_status(11) == "killed by signal SIGSEGV"
    assert describe_status(9) == "killed by signal SIGKILL (often the out-of-memory killer)"


def test_rss_mb_reads_this_process_memory():
    assert 1 < rss_mb() < 100_000
