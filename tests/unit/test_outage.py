"""The one Redis-outage logger of the workers, the scheduler and the mirror (django_jobs/outage.py)."""

from __future__ import annotations

import logging

from django_jobs.exceptions import RedisUnavailable
from django_jobs.outage import OutageLog

logger = logging.getLogger("tests.outage")


def lines(caplog) -> list[tuple[str, str, bool]]:
    return [(r.levelname, r.getMessage(), r.exc_info is not None) for r in caplog.records if r.name == "tests.outage"]


def test_an_outage_is_one_line_then_one_when_redis_is_back(caplog):
    log = OutageLog(logger, "Worker w1")
    with caplog.at_level("INFO"):
        for _ in range(5):
            log.failed(RedisUnavailable("Cannot reach Redis at redis://x."), 0.5, "fetching jobs")
        log.ok()
        log.ok()
    [(level, down, tb), (level2, back, tb2)] = lines(caplog)
    assert level == "WARNING" and down.startswith("Worker w1 cannot reach Redis while fetching jobs, retrying in 0.5 s") and not tb
    assert level2 == "WARNING" and back.startswith("Worker w1 reached Redis again after ") and not tb2


def test_repeat_every_repeats_the_outage_line(caplog):
    log = OutageLog(logger, "Worker w1", repeat_every=0.0)
    with caplog.at_level("INFO"):
        for _ in range(3):
            log.failed(RedisUnavailable("down"), 0.1)
    assert len(lines(caplog)) == 3


def test_other_errors_keep_their_traceback_the_1st_10th_and_every_100th(caplog):
    log = OutageLog(logger, "Scheduler")
    with caplog.at_level("INFO"):
        for _ in range(100):
            log.failed(ValueError("bug"), 1.0)
    found = lines(caplog)
    assert [m for _l, m, _tb in found] == [f"Scheduler step failed ({n} in a row); retrying in 1.0 s" for n in (1, 10, 100)]
    assert all(level == "ERROR" and tb for level, _m, tb in found)
    log.ok()
    assert log.errors == 0
