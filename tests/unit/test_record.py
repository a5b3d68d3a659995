"""engine/record.py: one decoding of a job hash, one policy for bad data (never raises, flags it).

The hashes are real: written to and read back from the test Redis server.
"""

from __future__ import annotations

import json

import pytest

from django_jobs.engine.protocol import JobState
from django_jobs.engine.queue import NewJob
from django_jobs.engine.record import JobView, decode_payload, encode_payload


def test_a_payload_round_trips_through_encode_and_decode():
    data = encode_payload("app.jobs.add", "[1,2]", '{"x":"é"}', '{"at":3}')
    assert json.loads(data) == {"v": 1, "n": "app.jobs.add", "a": [1, 2], "k": {"x": "é"}, "o": {"at": 3}}
    payload = decode_payload(data)
    assert (payload.name, payload.args, payload.kwargs, payload.options, payload.problem) == (
        "app.jobs.add", [1, 2], {"x": "é"}, {"at": 3}, "",
    )
    assert decode_payload(payload.with_options(cr="all")).options == {"at": 3, "cr": "all"}
    # No arguments are left out (a smaller hash); every release reads a missing 'a' / 'k' as empty.
    assert encode_payload("n", "[]", "{}") == '{"v":1,"n":"n"}'
    assert (decode_payload('{"v":1,"n":"n"}').args, decode_payload('{"v":1,"n":"n"}').kwargs) == ([], {})
    assert decode_payload('{"v":1,"n":"n","a":[],"k":{}}') == decode_payload(encode_payload("n", "[]", "{}"))


def test_a_job_written_by_the_engine_decodes_clean(engine):
    data = encode_payload("app.jobs.add", "[2,3]", "{}")
    assert engine.enqueue("default", [NewJob(id="ok", data=data, priority=7, correlation_id="cid-1")]) == [1]
    view = JobView.from_hash("default", "ok", engine.get_job("default", "ok"))
    assert not view.corrupt and view.problems == ()
    assert (view.queue, view.id, view.state, view.name, view.args, view.priority) == ("default", "ok", JobState.WAITING, "app.jobs.add", [2, 3], 7)
    assert view.correlation_id == "cid-1" and view.attempts == 0 and view.enqueued_ms and view.raw_payload == ""
    assert view.raw["p"] == "7"


def test_a_new_job_s_hash_leaves_out_the_fields_at_their_default(engine):
    """No 'a' (0 attempts), no empty 'cid' / 'par': a no-op job's hash is 5 fields; readers see the defaults."""
    data = encode_payload("app.jobs.add", "[]", "{}")
    assert engine.enqueue("default", [NewJob(id="bare", data=data)]) == [1]
    raw = engine.get_job("default", "bare")
    assert sorted(raw) == ["d", "e", "p", "s", "ws"] and raw["d"] == '{"v":1,"n":"app.jobs.add"}'
    view = JobView.from_hash("default", "bare", raw)
    assert (view.attempts, view.correlation_id, view.parent_id, view.args, view.kwargs, view.problems) == (0, "", "", [], {}, ())
    # A hash without 'p' (priority 0 left out, as the next release writes it) reads as priority 0.
    without_p = {f: v for f, v in raw.items() if f not in ("p", "ws")}
    assert (JobView.from_hash("default", "bare", without_p).priority, JobView.from_hash("default", "none", {}).priority) == (0, None)
    # Given, they are written; bulk (enqueue_many) writes the very same hash as one enqueue.
    full = [NewJob(id=f"full{i}", data=data, correlation_id="c1", parent_id="p1") for i in range(3)]
    assert engine.enqueue_many("default", full, chunk=2) == [1, 1, 1]
    raws = [engine.get_job("default", f"full{i}") for i in range(3)]
    assert all(sorted(r) == ["cid", "d", "e", "p", "par", "s", "ws"] and (r["cid"], r["par"]) == ("c1", "p1") for r in raws)
    # A job claimed counts its attempt from the missing 'a'.
    claimed = engine.fetch("default", 1, worker_id="w1", lease_ms=60_000).jobs
    assert [(c.id, c.attempt, c.correlation_id, c.parent_id) for c in claimed] == [("bare", 1, "", "")]


@pytest.mark.parametrize(
    ("fields", "problem", "check"),
    [
        ({"d": "{not json"}, "payload is not JSON", lambda v: (v.name, v.args, v.raw_payload) == ("?", [], "{not json")),
        ({"d": '{"v":1,"n":5}'}, "payload has no job name", lambda v: v.name == "?" and v.raw_payload == '{"v":1,"n":5}'),
        ({"d": '{"v":1,"n":"x","a":{}}'}, "payload fields have the wrong types", lambda v: v.args == [] and v.kwargs == {}),
        ({"d": "[1]"}, "payload is not a JSON object", lambda v: v.name == "?"),
        ({"p": "high"}, "field 'p' is not an integer: 'high'", lambda v: v.priority is None),
        ({"a": "1.5"}, "field 'a' is not an integer", lambda v: v.attempts == 0),
        ({"e": "yesterday"}, "field 'e' is not an integer", lambda v: v.enqueued_ms is None),
        ({"err": "[{"}, "field 'err' is not JSON", lambda v: v.errors == []),
        ({"err": '{"a":1}'}, "field 'err' is not a JSON list", lambda v: v.errors == []),
        ({"err": '["boom", {"exception_class_path": "E"}]'}, "field 'err' holds entries that are not objects",
         lambda v: v.errors == [{"exception_class_path": "E"}] and v.last_error == {"exception_class_path": "E"}),
        ({"eh": "[{"}, "field 'eh' is not JSON", lambda v: v.earlier_errors == []),
        ({"eh": '"E"'}, "field 'eh' is not a JSON list", lambda v: v.earlier_errors == []),
        ({"eh": '[1, {"exception_class_path": "E"}]'}, "field 'eh' holds entries that are not objects",
         lambda v: v.earlier_errors == [{"exception_class_path": "E"}] and v.errors == []),
        ({"wk": "w1"}, "field 'wk' is not JSON", lambda v: v.workers == []),
        ({"r": "{oops"}, "field 'r' is not JSON", lambda v: v.result is None and v.result_json == "{oops"),
        ({"pg": "nan%"}, "field 'pg' is not JSON", lambda v: v.progress is None),
        ({"kids": '[["b", "c1"]]'}, "field 'kids' holds a malformed child", lambda v: v.children == ()),
    ],
)
def test_a_corrupt_field_is_flagged_with_its_reason_never_raised(engine, r, fields, problem, check):
    good = encode_payload("app.jobs.add", "[1]", "{}")
    assert engine.enqueue("default", [NewJob(id="bad", data=good)]) == [1]
    r.hset(engine.keys("default").job("bad"), mapping=fields)  # as a hand edit or another program would
    view = JobView.from_hash("default", "bad", engine.get_job("default", "bad"))
    assert view.corrupt
    assert any(problem in p for p in view.problems), view.problems
    assert check(view)
    assert view.state == "waiting", "the other fields still decode"
    for name, value in fields.items():
        assert view.raw[name] == value, "the hash as read is kept"


def test_a_missing_hash_gives_an_empty_record_not_an_error():
    view = JobView.from_hash("default", "gone", {})
    assert (view.state, view.name, view.priority, view.corrupt) == ("", "?", None, True)
    assert view.problems == ("payload is not JSON (Expecting value: line 1 column 1 (char 0))",)


def test_flow_fields_decode_children_and_how_they_ended(engine, r):
    key = engine.keys("default").job("parent")
    r.hset(key, mapping={
        "d": encode_payload("app.jobs.parent", "[]", "{}"), "s": "waiting_children",
        "kids": json.dumps([["djj:{default}:", "c1", "default", "app.jobs.a"], ["djj:{default}:", "c2", "default", "app.jobs.b"]]),
        "c:c1": '{"s":"completed","r":4}', "c:c2": "{broken",
    })
    view = JobView.from_hash("default", "parent", engine.get_job("default", "parent"))
    assert view.in_flow and view.state == JobState.WAITING_CHILDREN
    assert [c[1] for c in view.children] == ["c1", "c2"]
    assert dict(view.child_ends["c1"]) == {"s": "completed", "r": 4}
    assert "c2" not in view.child_ends and view.problems == ("field 'c:c2' is not JSON",)


def test_an_operator_retry_moves_the_run_s_errors_to_earlier_errors_oldest_first(engine, r):
    assert engine.enqueue("default", [NewJob(id="twice", data=encode_payload("app.jobs.add", "[]", "{}"))]) == [1]
    key = engine.keys("default").job("twice")
    runs = [[{"exception_class_path": "E", "traceback": f"run {run} attempt {a}"} for a in (1, 2)] for run in (1, 2)]
    for run in runs:  # each run ends failed with its errors, then an operator retries it
        r.hset(key, mapping={"s": "failed", "err": json.dumps(run)})
        assert engine.retry_many("default", ["twice"]) == [1]
        view = JobView.from_hash("default", "twice", engine.get_job("default", "twice"))
        assert view.errors == [] and not view.corrupt
    assert [e["traceback"] for e in view.earlier_errors] == ["run 1 attempt 1", "run 1 attempt 2", "run 2 attempt 1", "run 2 attempt 2"]


def test_the_record_is_frozen():
    view = JobView.from_hash("default", "x", {"s": "completed"})
    with pytest.raises(AttributeError):
        view.state = "failed"  # type: ignore[misc]
    assert view.is_finished


@pytest.mark.parametrize("text", [
    '{"v":1,"n":"app.jobs.add","a":[1,2],"k":{"x":"\\u00e9\\n"},"o":{"to":1.5},"tc":{"traceparent":"00-1"}}',
    '{"v":1,"n":"é"}', ' {"v":1,"n":"a"}', '{"v":1,"n":"a"} ', '{"v":1,"n":"a"}\n', '{"v":1,"n":"a"}x', '{"v":1,"n":"a"}{}',
    '{"v":1,"n":', '{"v":1,"n":x}', "", " ", "null", "[1,2]", "NaN", '"text"', "1 2", '{"a":' * 50 + "1" + "}" * 50,
])
def test_the_payload_decoder_gives_what_json_loads_gives(text):
    from django_jobs.engine.record import _loads

    try:
        expected: object = json.loads(text)
    except ValueError as exc:
        expected = repr(exc)
    try:
        got: object = _loads(text)
    except ValueError as exc:
        got = repr(exc)
    assert repr(got) == repr(expected)  # NaN too
    assert decode_payload(text) == decode_payload(text)  # and never raises
