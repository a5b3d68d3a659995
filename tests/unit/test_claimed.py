"""Claimed, FetchResult and Outcome: plain slotted classes that read, compare and print as the frozen dataclasses they were."""

from __future__ import annotations

import dataclasses

import pytest

from django_jobs.engine.queue import Claimed, FetchResult, Outcome

FIELDS = {"queue": "q", "id": "j1", "token": "7", "data": "{}", "attempt": 2, "enqueued_ms": 5, "correlation_id": "c", "parent_id": "p"}


def test_claimed_takes_its_fields_by_position_or_name_and_compares_by_them():
    claimed = Claimed(*FIELDS.values())
    assert claimed == Claimed(**FIELDS) and hash(claimed) == hash(Claimed(**FIELDS))
    assert {name: getattr(claimed, name) for name in FIELDS} == FIELDS
    assert claimed != Claimed(**{**FIELDS, "token": "8"})
    assert claimed != tuple(FIELDS.values())
    assert repr(claimed) == "Claimed(" + ", ".join(f"{k}={v!r}" for k, v in FIELDS.items()) + ")"
    with pytest.raises(AttributeError):
        claimed.other = 1  # type: ignore[attr-defined]  # slotted: no other attribute


def test_in_queue_reports_the_same_claim_under_another_queue_name():
    claimed = Claimed(**FIELDS)
    moved = claimed.in_queue("base")
    assert moved == Claimed(**{**FIELDS, "queue": "base"}) and claimed.queue == "q"
    res = FetchResult(jobs=[claimed], next_due_ms=3, paused=False, limited=True)
    assert res.in_queue("base") == FetchResult([moved], 3, False, True)
    assert res != FetchResult([claimed], 3, False)  # limited defaults to False
    assert repr(res) == f"FetchResult(jobs=[{claimed!r}], next_due_ms=3, paused=False, limited=True)"
    with pytest.raises(TypeError):
        hash(res)  # as the dataclass (a list field)


def test_an_outcome_takes_its_fields_by_position_or_name_with_the_same_defaults_and_compares_by_them():
    outcome = Outcome("j1", "7", "r", "{}", 500)
    assert outcome == Outcome(id="j1", token="7", kind="r", value="{}", delay_ms=500, keep_ms=0)
    assert hash(outcome) == hash(Outcome("j1", "7", "r", "{}", 500, 0))
    assert (outcome.id, outcome.token, outcome.kind, outcome.value, outcome.delay_ms, outcome.keep_ms) == ("j1", "7", "r", "{}", 500, 0)
    assert Outcome("j1", "7", "c") == Outcome("j1", "7", "c", "", 0, 0)
    assert outcome != Outcome("j1", "7", "r", "{}", 501) and outcome != ("j1", "7", "r", "{}", 500, 0)
    assert repr(outcome) == "Outcome(id='j1', token='7', kind='r', value='{}', delay_ms=500, keep_ms=0)"
    assert dataclasses.replace(outcome, token="8") == Outcome("j1", "8", "r", "{}", 500)
    with pytest.raises(AttributeError):
        outcome.other = 1  # type: ignore[attr-defined]  # slotted: no other attribute
