"""Prepared's argument check: positional arguments are counted against the signature, the rest go to Signature.bind."""

from __future__ import annotations

import json
from typing import Any

import pytest

from django_jobs.engine.queue import Claimed
from django_jobs.worker.executor import Prepared, RunningJob, _facts_of
from tests.testapp import jobs


def _a() -> None: ...
def _b(x: int) -> None: ...
def _c(x: int, y: int = 0, /) -> None: ...
def _d(x: int, y: int = 0, z: int = 1) -> None: ...
def _e(x: int, *rest: int) -> None: ...
def _f(x: int, *, y: int) -> None: ...
def _g(x: int, **extra: int) -> None: ...


@pytest.mark.parametrize("func", [_a, _b, _c, _d, _e, _f, _g])
def test_the_positional_count_says_what_signature_bind_says(func):
    facts = _facts_of(func, "default")
    if func in (_e, _f, _g):
        assert facts.positional is None  # *args, keyword-only, **kwargs: Signature.bind decides
        return
    assert facts.positional is not None
    low, high = facts.positional
    for count in range(5):
        try:
            facts.signature.bind(*range(count))
            fits = True
        except TypeError:
            fits = False
        assert (low <= count <= high) == fits, (func.__name__, count)


def _prepared(name: str, args: list[Any], kwargs: dict[str, Any] | None = None) -> Prepared:
    data = json.dumps({"v": 1, "n": name, "a": args, "k": kwargs or {}})
    return Prepared(RunningJob(Claimed("default", "job-1", "token", data, 1, 0, "", "")), "worker-1")


@pytest.mark.parametrize(
    ("func", "args", "kwargs", "fits"),
    [
        (jobs.add, [1, 2], {}, True),
        (jobs.add, [1], {}, False),
        (jobs.add, [1, 2, 3], {}, False),
        (jobs.add, [1], {"b": 2}, True),
        (jobs.add, [1, 2], {"c": 3}, False),
        (jobs.stoppable, ["tag", 0.1], {}, True),  # takes_context: the context is the first parameter
        (jobs.stoppable, ["tag"], {}, False),
        (jobs.stoppable, ["tag", 0.1, 2], {}, False),
    ],
)
def test_arguments_that_no_longer_fit_fail_the_job_and_the_others_run(func, args, kwargs, fits):
    prepared = _prepared(func.module_path, args, kwargs)
    if fits:
        assert prepared.failure is None
    else:
        assert prepared.failure is not None
        assert "no longer fit" in prepared.failure.value


def test_a_bulk_check_of_positional_calls_that_fit_calls_nothing_per_call(monkeypatch):
    """arguments.bind_each: a call of as many positional arguments as the plain parameters fits
    with no call per item; any other still goes through the full check and names its item."""
    from django_jobs import arguments
    from django_jobs.exceptions import InvalidArguments

    def refuse(*args: Any, **kwargs: Any) -> bool:
        raise AssertionError("a call per item")

    monkeypatch.setattr(arguments, "_fits", refuse)
    arguments.bind_each(jobs.add, [((n, 1), {}) for n in range(1000)], where="item {}")
    monkeypatch.undo()
    arguments.bind_each(jobs.add, [((1,), {"b": 2}), ((), {"a": 1, "b": 2})], where="item {}")
    with pytest.raises(InvalidArguments, match=r"item 2\b"):
        arguments.bind_each(jobs.add, [((1, 2), {}), ((3, 4), {}), ((5,), {})], where="item {}")
    with pytest.raises(InvalidArguments, match=r"item 1\b"):
        arguments.bind_each(jobs.add, [((1, 2), {}), ((3, 4), {"a": 5})], where="item {}")
