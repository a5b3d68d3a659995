"""JSON arguments: compact encoding, and an error that names the argument that is not JSON."""

from __future__ import annotations

import datetime
import decimal
import json
import math

import pytest

from django_jobs import serialization


def test_arguments_are_encoded_as_compact_json():
    assert serialization.dumps_call("app.job", (1, "a", None), {"flag": True, "n": 2.5}) == (
        '[1,"a",null]',
        '{"flag":true,"n":2.5}',
    )


def test_non_ascii_text_is_kept_as_is_not_escaped():
    args_json, _ = serialization.dumps_call("app.job", ["héllo ✓"], {})
    assert args_json == '["héllo ✓"]'


def test_a_positional_argument_that_is_not_json_is_named_by_its_index():
    with pytest.raises(TypeError) as info:
        serialization.dumps_call("app.send", [1, object()], {})
    message = str(info.value)
    assert "positional argument 1 of job 'app.send'" in message
    assert "(object)" in message
    assert "Pass ids or plain data" in message


def test_a_keyword_argument_that_is_not_json_is_named():
    with pytest.raises(TypeError, match=r"argument 'when' of job 'app.remind' is not JSON serializable \(datetime\)"):
        serialization.dumps_call("app.remind", [], {"user_id": 1, "when": datetime.datetime.now(datetime.UTC)})


def test_a_value_nested_deep_in_an_argument_names_the_top_level_argument():
    with pytest.raises(TypeError, match=r"argument 'data' .*\(dict\)"):
        serialization.dumps_call("app.job", [], {"ok": [1], "data": {"rows": [{"amount": decimal.Decimal("1.5")}]}})


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_nan_and_infinity_are_refused_because_json_has_no_such_numbers(value):
    with pytest.raises(TypeError, match="argument 'x'"):
        serialization.dumps_call("app.job", [], {"x": value})


def test_a_circular_structure_is_named_instead_of_recursing():
    loop: list[object] = []
    loop.append(loop)
    with pytest.raises(TypeError, match="positional argument 0"):
        serialization.dumps_call("app.job", [loop], {})


def test_the_first_bad_argument_is_the_one_named():
    with pytest.raises(TypeError, match="positional argument 0") as info:
        serialization.dumps_call("app.job", [{1, 2}], {"b": object()})
    assert "argument 'b'" not in str(info.value)


def test_the_error_does_not_chain_the_json_internals():
    with pytest.raises(TypeError) as info:
        serialization.dumps_call("app.job", [b"bytes"], {})
    assert info.value.__cause__ is None and info.value.__suppress_context__


def test_normalize_returns_what_a_json_round_trip_returns():
    assert serialization.normalize({"t": (1, 2), 3: "x", "n": None}) == {"t": [1, 2], "3": "x", "n": None}


def test_enqueueing_a_job_with_a_bad_argument_fails_in_the_caller():
    from tests.testapp import jobs

    with pytest.raises(TypeError, match="argument 'b' of job 'tests.testapp.jobs.add'"):
        jobs.add.enqueue(1, b=object())


@pytest.mark.parametrize("value", [None, 0, -7, 2**70, True, False, 2.5, "héllo ✓", "", [1, None], {"a": [True]}])
def test_dumps_writes_what_the_encoder_writes_its_short_cuts_included(value):
    # None and ints skip the encoder (a job's usual return value); bools are not ints here.
    assert serialization.dumps(value) == json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False)


@pytest.mark.parametrize("value", [math.nan, math.inf, object()])
def test_dumps_refuses_what_is_not_json(value):
    with pytest.raises((TypeError, ValueError)):
        serialization.dumps(value)


SAME_TEXT = [
    [1, "é", None, 2.5, True, {"a": [1, {"b": 'x"\\\n\u2028'}]}],
    "plain", 1.5, -0.0, {}, [], (1, (2,)), {1: "int key", 2.5: "float key", None: 1, False: 2},
]


@pytest.mark.parametrize("value", SAME_TEXT)
def test_dumps_writes_what_the_encoder_writes_without_its_set_up_per_call(monkeypatch, value):
    want = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode(value)

    def refuse(*args, **kwargs):
        raise AssertionError("an encoder made for this call")

    # JSONEncoder.encode makes a C encoder on every call; dumps uses the one made at import.
    monkeypatch.setattr(json.encoder, "c_make_encoder", refuse)
    assert serialization.dumps(value) == want


@pytest.mark.parametrize("bad", [[float("nan")], {"a": float("inf")}, [object()], {(1, 2): 1}, b"x", {"k": {1, 2}}])
def test_dumps_refuses_what_the_encoder_refuses_with_its_error(bad):
    with pytest.raises((TypeError, ValueError)) as ours:
        serialization.dumps(bad)
    with pytest.raises((TypeError, ValueError)) as theirs:
        serialization._encoder.encode(bad)
    assert (type(ours.value), str(ours.value)) == (type(theirs.value), str(theirs.value))


def test_a_cycle_is_still_named_a_circular_reference_at_the_call():
    looped: list[object] = []
    looped.append(looped)
    nested: dict[str, object] = {}
    nested["x"] = [nested]
    for value in (looped, nested):
        with pytest.raises(ValueError, match="Circular reference detected"):
            serialization.dumps(value)
    with pytest.raises(TypeError, match="positional argument 1 of job 'app.x' is not JSON serializable"):
        serialization.dumps_call("app.x", [1, looped], {})
