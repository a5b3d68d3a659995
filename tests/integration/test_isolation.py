"""Isolated jobs run by an in-process worker (``work_until_empty``): fork, answer, crash."""

from __future__ import annotations

import os
import subprocess

from django_jobs.exceptions import JobCrashed
from tests.testapp import jobs_timeouts


def test_an_isolated_job_answers_from_another_process(work):
    result = jobs_timeouts.isolated_echo.enqueue(41)
    info = jobs_timeouts.isolated_info.enqueue("info")
    work()
    result.refresh()
    info.refresh()
    assert result.return_value == 41
    assert info.return_value["ppid"] == os.getpid() != info.return_value["pid"]


def test_an_isolated_job_that_exits_without_answering_fails_with_job_crashed(work):
    result = jobs_timeouts.isolated_crash.enqueue("crash")
    work()
    result.refresh()
    assert result.state == "failed"
    assert [e.exception_class for e in result.errors] == [JobCrashed, JobCrashed]
    assert "exited with status 9" in result.errors[0].traceback


def test_an_isolated_job_is_done_when_its_process_is_even_if_another_process_holds_its_pipe(work, monkeypatch):
    # Another job thread may fork between our pipe() and close(write_fd): its child then holds
    # a copy of the write end for as long as it runs. Made here with a real process that does.
    holders: list[subprocess.Popen[bytes]] = []
    real_pipe = os.pipe

    def pipe() -> tuple[int, int]:
        read_fd, write_fd = real_pipe()
        monkeypatch.setattr(os, "pipe", real_pipe)  # Popen makes pipes of its own
        holders.append(subprocess.Popen(["sleep", "60"], pass_fds=[write_fd]))
        monkeypatch.setattr(os, "pipe", pipe)
        return read_fd, write_fd

    monkeypatch.setattr(os, "pipe", pipe)
    try:
        result = jobs_timeouts.isolated_echo.enqueue(5)
        work()
        monkeypatch.undo()
        assert holders and all(holder.poll() is None for holder in holders), "the copies were still open"
        result.refresh()
        assert result.return_value == 5
    finally:
        for holder in holders:
            holder.kill()
            holder.wait()
