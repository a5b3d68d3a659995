"""Retry delays: fixed, exponential with jitter, dict specs, callables, and invalid specs."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from django_jobs.backoff import (
    EXPONENTIAL_BASE,
    EXPONENTIAL_CAP,
    EXPONENTIAL_FACTOR,
    retry_delay,
    validate_backoff,
)
from django_jobs.exceptions import InvalidJob


@pytest.mark.parametrize("spec", [None, "none"])
def test_no_backoff_retries_at_once(spec):
    validate_backoff(spec)
    assert [retry_delay(spec, attempt) for attempt in (1, 2, 10)] == [0.0, 0.0, 0.0]


@pytest.mark.parametrize("seconds", [0, 5, 2.5])
def test_a_number_is_a_fixed_delay_for_every_attempt(seconds):
    validate_backoff(seconds)
    assert {retry_delay(seconds, attempt) for attempt in range(1, 8)} == {float(seconds)}


def test_fixed_without_a_delay_waits_the_base_delay():
    assert retry_delay("fixed", 4) == EXPONENTIAL_BASE


def test_a_fixed_dict_waits_its_delay_whatever_the_attempt():
    spec = {"type": "fixed", "delay": 7}
    validate_backoff(spec)
    assert [retry_delay(spec, a) for a in (1, 5, 50)] == [7.0, 7.0, 7.0]


def test_exponential_without_jitter_multiplies_by_the_factor_up_to_the_max():
    spec = {"type": "exponential", "delay": 2, "factor": 3, "max": 100, "jitter": False}
    validate_backoff(spec)
    assert [retry_delay(spec, a) for a in range(1, 7)] == [2.0, 6.0, 18.0, 54.0, 100.0, 100.0]


def exponential_ceiling(attempt: int) -> float:
    return min(EXPONENTIAL_CAP, EXPONENTIAL_BASE * EXPONENTIAL_FACTOR ** (attempt - 1))


@pytest.mark.parametrize("attempt", [1, 2, 3, 6, 12, 30])
def test_exponential_with_jitter_stays_between_half_the_ceiling_and_the_ceiling(attempt):
    ceiling = exponential_ceiling(attempt)
    delays = [retry_delay("exponential", attempt) for _ in range(300)]
    assert all(ceiling / 2 <= d <= ceiling for d in delays), (min(delays), max(delays), ceiling)


def test_jitter_spreads_the_retries_of_jobs_that_failed_together():
    delays = [retry_delay("exponential", 5) for _ in range(200)]
    assert len(set(delays)) > 150
    ceiling = exponential_ceiling(5)
    # Both halves of the jitter range are used (a broken jitter would cluster at one end).
    assert min(delays) < ceiling * 0.6 and max(delays) > ceiling * 0.9


def test_exponential_delays_never_exceed_the_cap():
    assert max(retry_delay("exponential", 25) for _ in range(100)) <= EXPONENTIAL_CAP


@hypothesis_settings(max_examples=200, database=None)
@given(
    attempt=st.integers(1, 60),
    delay=st.floats(0, 100),
    factor=st.floats(1, 10),
    cap=st.floats(0, 10_000),
)
def test_a_dict_spec_with_jitter_stays_within_its_bounds(attempt, delay, factor, cap):
    spec = {"type": "exponential", "delay": delay, "factor": factor, "max": cap}
    validate_backoff(spec)
    ceiling = min(cap, delay * factor ** (attempt - 1))
    assert ceiling / 2 <= retry_delay(spec, attempt) <= ceiling


def test_a_callable_receives_the_attempt_number():
    seen: list[int] = []

    def backoff(attempt: int) -> float:
        seen.append(attempt)
        return attempt * 10

    validate_backoff(backoff)
    assert retry_delay(backoff, 3) == 30.0
    assert seen == [3]


def test_a_negative_delay_from_a_callable_becomes_zero():
    assert retry_delay(lambda attempt: -5, 1) == 0.0


@pytest.mark.parametrize(
    "spec",
    [
        -1,
        -0.5,
        True,
        "linear",
        "",
        {"type": "linear"},
        {"delay": -1},
        {"factor": "2"},
        {"max": None},
        {"delai": 1},
        [1, 2],
        (5,),
        object(),
    ],
)
def test_an_invalid_spec_raises_invalid_job(spec):
    with pytest.raises(InvalidJob) as info:
        validate_backoff(spec)
    assert isinstance(info.value, ValueError)
    assert "backoff" in str(info.value)


def test_unknown_dict_keys_are_listed_with_the_allowed_ones():
    with pytest.raises(InvalidJob, match=r"\['delai'\].*allowed: type, delay, factor, max, jitter"):
        validate_backoff({"type": "fixed", "delai": 3})


@pytest.mark.parametrize("spec", [None, 0, 3, 1.5, "exponential", "fixed", "none", {}, {"type": "fixed", "delay": 0}, len])
def test_valid_specs_pass_validation(spec):
    validate_backoff(spec)


def test_a_very_late_attempt_still_gets_the_capped_delay():
    assert retry_delay({"type": "exponential", "jitter": False}, 2000) == EXPONENTIAL_CAP


def test_a_nan_delay_is_refused():
    with pytest.raises(InvalidJob):
        validate_backoff(math.nan)
