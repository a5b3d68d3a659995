"""tasks.results_like: the results of a bulk enqueue made by copying one, equal to the constructor's."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime

import pytest

from django_jobs import tasks as tasks_module
from django_jobs.compat import TaskResultStatus
from django_jobs.tasks import JobResult, results_like
from tests.testapp import jobs


def construct(job_id, args, kwargs) -> JobResult:
    return JobResult(
        task=jobs.add, id=job_id, status=TaskResultStatus.READY, enqueued_at=None, started_at=None,
        finished_at=None, last_attempted_at=None, args=args, kwargs=kwargs, backend="default", errors=[],
        worker_ids=[], queue="default", state="scheduled", correlation_id="c1", parent_id="p1",
    )


@pytest.mark.parametrize(
    ("args", "kwargs"),
    [
        ((), {}),
        ((1, 2), {}),
        ([1, "x", None, 2.5, True], {"b": 2}),
        (({"nested": [1, (2, 3)]},), {}),  # not flat: Django's normalisation (the constructor)
        ((1,), {"when": datetime(2026, 1, 1, tzinfo=UTC).isoformat()}),
    ],
)
def test_a_copy_equals_what_the_constructor_makes(args, kwargs):
    make = results_like(construct("", [], {}))
    made, built = make("j1", args, kwargs), construct("j1", args, kwargs)
    assert made == built
    assert {f.name: getattr(made, f.name) for f in dataclasses.fields(JobResult)} == {
        f.name: getattr(built, f.name) for f in dataclasses.fields(JobResult)
    }
    assert type(made.args) is list and type(made.kwargs) is dict


def test_copies_share_no_list_or_dict():
    template = construct("", [], {})
    make = results_like(template)
    one, two = make("a", (1, 2), {}), make("b", (3, 4), {})
    shared = [
        f.name for f in dataclasses.fields(JobResult)
        if isinstance(getattr(one, f.name), (list, dict, set)) and getattr(one, f.name) is getattr(two, f.name)
    ]
    assert shared == []
    assert not any(getattr(one, f.name) is getattr(template, f.name) for f in dataclasses.fields(JobResult)
                   if isinstance(getattr(one, f.name), (list, dict, set)))
    one.errors.append("x")
    assert two.errors == [] and template.errors == []


def test_a_template_with_a_filled_list_is_refused():
    filled = dataclasses.replace(construct("", [], {}), worker_ids=["w1"])
    with pytest.raises(ValueError, match="worker_ids"):
        results_like(filled)


def test_a_copy_sets_its_shared_fields_on_first_read_and_keeps_those_set_since():
    make = results_like(construct("", [], {}))
    made = make("j1", (1, 2), {})
    if tasks_module._NORMALIZES:  # Django's own TaskResult (6.0+); on 5.2 results_like() constructs
        with pytest.raises(AttributeError):
            JobResult.queue.__get__(made, JobResult)  # not set yet: set on first read
    when = datetime(2026, 1, 1, tzinfo=UTC)
    object.__setattr__(made, "enqueued_at", when)  # as the backend dates it, and marks a deduplicated one
    object.__setattr__(made, "deduplicated", True)
    assert made.queue == "default"
    assert (made.enqueued_at, made.deduplicated, made.state, made._return_value) == (when, True, "scheduled", None)
    assert made == dataclasses.replace(construct("j1", [1, 2], {}), enqueued_at=when, deduplicated=True)


def test_jobs_like_makes_jobs_equal_to_the_constructors():
    from django_jobs.engine.queue import NewJob, jobs_like

    template = NewJob(id="", data="", priority=3, run_at_ms=10, delay_ms=20, correlation_id="c", parent_id="p")
    made = jobs_like(template)("j1", '{"n":1}')
    assert made == dataclasses.replace(template, id="j1", data='{"n":1}')
    assert type(made) is NewJob


@pytest.mark.parametrize("lean", [False, True], ids=["full", "lean"])
def test_jobs_as_columns_pack_as_the_same_jobs_one_by_one_and_iterate_as_them(lean):
    import json

    from django_jobs.engine.queue import NewJob, NewJobs
    from django_jobs.engine.transitions import _pack_columns, _pack_jobs

    shared = NewJob(id="", data="", priority=-3, run_at_ms=1_765_000_000_000, delay_ms=250, correlation_id="c\u00e9", parent_id="p1")
    columns = NewJobs(["a1", "a2", "a3"], ['{"v":1,"n":"x"}', '{"v":1,"n":"x","a":["\u00e9"]}', '{"v":1,"n":"x"}'], shared)
    each = list(columns)
    assert len(columns) == 3 and all(type(job) is NewJob for job in each)
    assert each == [dataclasses.replace(shared, id=i, data=d) for i, d in zip(columns.ids, columns.data, strict=True)]
    # The text enqueue.lua decodes: the same as the jobs packed one by one (every shared column one value).
    assert _pack_columns(columns, lean) == _pack_jobs(each, lean)
    assert json.loads(_pack_columns(columns, lean))["i"] == ["a1", "a2", "a3"]


class _Level(int):
    pass


class _Name(str):
    pass


NORMALISED_AS_DJANGO = [
    ((), {}),
    ((1, "x", None, 2.5, True), {"b": False}),
    (({"nested": [1, (2, 3)], "deeper": {"k": [[], {}, ()]}},), {}),
    (([1, [2, [3, (4,)]]],), {"opts": {1: "int key", False: "bool key", None: 0, 2.5: "float key"}}),
    ([{"a": ({"b": [None]},)}], {"kw": [{"c": (1.5, "é")}]}),
]
LEFT_TO_DJANGO = [
    ((_Level(3),), {}),  # a subclass: kept as itself by normalize_json
    (({"k": _Name("v")},), {}),
    ((b"bytes",), {}),  # decoded by normalize_json
    (([1, {2, 3}],), {}),  # a set: refused by normalize_json
    ((), {"k": {(1, 2): "tuple key"}}),
    (((i for i in range(2)),), {}),
]


def _typed(value):
    """``value`` with the exact type of every part spelled out (== alone takes 1 == True == 1.0)."""
    if isinstance(value, dict):
        return ("dict", type(value).__name__, [(_typed(k), _typed(v)) for k, v in value.items()])
    if isinstance(value, (list, tuple)):
        return (type(value).__name__, [_typed(v) for v in value])
    return (type(value).__name__, value)


@pytest.mark.skipif(not tasks_module._NORMALIZES, reason="Django 5.2's backport: results are constructed")
@pytest.mark.parametrize(("args", "kwargs"), NORMALISED_AS_DJANGO)
def test_arguments_of_exact_json_types_are_normalised_as_django_does_without_the_constructor(monkeypatch, args, kwargs):
    from django.utils.json import normalize_json

    normal = tasks_module._normalized(args, kwargs)
    assert normal is not None
    assert _typed(normal[0]) == _typed(normalize_json(args)) and _typed(normal[1]) == _typed(normalize_json(kwargs))
    built = construct("j1", args, kwargs)
    make = results_like(construct("", [], {}))
    monkeypatch.setattr(tasks_module, "replace", lambda *a, **k: pytest.fail("the constructor was called"))
    made = make("j1", args, kwargs)
    assert made == built and _typed(made.args) == _typed(built.args) and _typed(made.kwargs) == _typed(built.kwargs)
    # Copies: nothing of the caller's arguments is shared with the result.
    assert made.args is not args and all(a is not b for a, b in zip(made.args, args) if type(b) in (list, tuple, dict))


@pytest.mark.skipif(not tasks_module._NORMALIZES, reason="Django 5.2's backport: results are constructed")
@pytest.mark.parametrize(("args", "kwargs"), LEFT_TO_DJANGO)
def test_arguments_of_other_types_are_left_to_djangos_normalisation(args, kwargs):
    from django.utils.json import normalize_json

    assert tasks_module._normalized(args, kwargs) is None
    try:
        want = (normalize_json(args), normalize_json(kwargs))
    except (TypeError, ValueError) as exc:
        with pytest.raises(type(exc)):
            construct("j1", args, kwargs)
        with pytest.raises(type(exc)):
            results_like(construct("", [], {}))("j1", args, kwargs)
        return
    made = results_like(construct("", [], {}))("j1", args, kwargs)
    assert _typed((made.args, made.kwargs)) == _typed(want)
