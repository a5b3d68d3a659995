"""One job record: the payload's encoding and the decoding of a job hash.

Every job hash read from Redis is decoded here, into one :class:`JobView` (frozen, slotted),
and every payload (the hash's ``d`` field) is built by :func:`encode_payload` and read by
:func:`decode_payload`. The field names are those of docs/architecture.md ("Fields of a
job hash").

**Bad data** (a hand-edited hash, a payload written by another program, an older or newer
format) has one policy: decoding never raises. A field that does not decode takes its empty
value (``""``, ``0``, ``None``, ``[]``, ``{}``; an unreadable payload gives the name ``"?"``)
and the record lists why in :attr:`JobView.problems` (``corrupt`` is then True); the hash as
read stays in :attr:`JobView.raw`, and an unreadable payload's text in
:attr:`JobView.raw_payload`. Each reader decides what a corrupt record means for it: the
mirror and ``manage.py jobs`` show it as it is, ``JobResult`` refuses an unreadable payload
(:class:`~django.tasks.exceptions.TaskResultDoesNotExist`), the worker fails the job
without retrying it.

>>> view = JobView.from_hash("default", "j1", {"d": '{"v":1,"n":"app.jobs.add","a":[1,2],"k":{}}', "s": "waiting", "p": "x"})
>>> (view.name, view.args, view.state, view.priority, view.problems)
('app.jobs.add', [1, 2], 'waiting', None, ("field 'p' is not an integer: 'x'",))
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from django_jobs.engine.protocol import FINISHED_STATES

#: Version of the payload format (``"v"`` in the job's ``d`` JSON).
PAYLOAD_VERSION = 1

_encoder = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False)
#: The C scanner of ``json.loads``' own decoder (the same defaults): one call per payload.
_scan: Any = json.JSONDecoder().scan_once  # type: ignore[attr-defined]  # set by JSONDecoder.__init__, not in typeshed


def _loads(data: str) -> Any:
    """``json.loads(data)``: the same value, or the same error, ~1 us sooner for a payload.

    A document that fills the whole string (what :func:`encode_payload` writes) is scanned in one
    C call, without ``json.loads``' checks and its regular expressions for surrounding
    whitespace; anything else (whitespace around it, bad JSON, bytes) goes to ``json.loads``.
    """
    try:
        value, end = _scan(data, 0)
    except (StopIteration, TypeError):
        return json.loads(data)
    return value if end == len(data) else json.loads(data)


def encode_payload(name: str, args_json: str, kwargs_json: str, options_json: str = "", trace_json: str = "") -> str:
    """Return the payload of a job: ``{"v":1,"n":name[,"a":args][,"k":kwargs][,"o":options][,"tc":trace]}``.

    ``args_json`` / ``kwargs_json`` / ``options_json`` are JSON texts already encoded (the
    caller checked them, naming the argument that is not JSON); ``options_json`` ``""``: none.
    ``trace_json``: the W3C trace context of the enqueue (django_jobs.tracing; ``""``: none).
    No arguments (``[]``) and no keyword arguments (``{}``) are left out: :func:`decode_payload`
    reads a missing ``a`` / ``k`` as empty, as every release did (a smaller hash in Redis).
    """
    return PayloadEncoder(name, options_json, trace_json)(args_json, kwargs_json)


class PayloadEncoder:
    """:func:`encode_payload` for many jobs of one name, options and trace: what they share is encoded once."""

    __slots__ = ("head", "tail")

    def __init__(self, name: str, options_json: str = "", trace_json: str = "") -> None:
        self.head = f'{{"v":{PAYLOAD_VERSION},"n":{_encoder.encode(name)}'
        self.tail = (f',"o":{options_json}' if options_json else "") + (f',"tc":{trace_json}}}' if trace_json else "}")

    def __call__(self, args_json: str, kwargs_json: str) -> str:
        """Return the payload of one job with these arguments (JSON texts)."""
        if kwargs_json == "{}":
            return self.head + self.tail if args_json == "[]" else f'{self.head},"a":{args_json}{self.tail}'
        if args_json == "[]":
            return f'{self.head},"k":{kwargs_json}{self.tail}'
        return f'{self.head},"a":{args_json},"k":{kwargs_json}{self.tail}'


@dataclass(frozen=True, slots=True)
class Payload:
    """A decoded payload (``d``). ``problem`` is ``""`` when it decoded, else why not."""

    name: str = "?"
    args: list[Any] = field(default_factory=list)
    kwargs: dict[str, Any] = field(default_factory=dict)
    options: dict[str, Any] = field(default_factory=dict)
    problem: str = ""
    #: ``tc``: the W3C trace context of the enqueue (``traceparent``, ``tracestate``; empty: none).
    trace: dict[str, str] = field(default_factory=dict)

    def with_options(self, **options: Any) -> str:
        """Return this payload encoded again with ``options`` added to its own."""
        opts = {**self.options, **options}
        return encode_payload(
            self.name, _encoder.encode(self.args), _encoder.encode(self.kwargs), _encoder.encode(opts) if opts else "",
            _encoder.encode(self.trace) if self.trace else "",
        )


def decode_payload(data: str | None) -> Payload:
    """Decode a payload; never raises (see the module's bad-data policy)."""
    fields = payload_fields(data)
    if isinstance(fields, str):
        return Payload(problem=fields)
    name, args, kwargs, options, trace = fields
    return Payload(name, args, kwargs, options, trace=trace)


def payload_fields(data: str | None) -> tuple[str, list[Any], dict[str, Any], dict[str, Any], dict[str, str]] | str:
    """Decode a payload into ``(name, args, kwargs, options, trace)``, or why it does not decode (a str); never raises.

    :func:`decode_payload` without the :class:`Payload` (a frozen dataclass: ~1 us to build):
    what the worker decodes before a job's first line.
    """
    try:
        payload = _loads(data or "")
    except (ValueError, RecursionError) as exc:
        return f"payload is not JSON ({exc})"
    if not isinstance(payload, dict):
        return "payload is not a JSON object"
    name, args, kwargs, options = payload.get("n"), payload.get("a", []), payload.get("k", {}), payload.get("o", {})
    if not isinstance(name, str):
        return "payload has no job name ('n')"
    if not isinstance(args, list) or not isinstance(kwargs, dict) or not isinstance(options, dict):
        return "payload fields have the wrong types"
    trace = payload.get("tc")
    return name, args, kwargs, options, trace if isinstance(trace, dict) else {}


@dataclass(frozen=True, slots=True, kw_only=True)
class JobView:
    """One job as its hash holds it, decoded (docs/architecture.md, "Fields of a job hash").

    Times are Redis ms (None: not set). Build one with :meth:`from_hash`.
    """

    queue: str
    id: str
    #: ``s``: a :class:`~django_jobs.engine.protocol.JobState` value ("" when missing).
    state: str = ""
    name: str = "?"
    args: list[Any] = field(default_factory=list)
    kwargs: dict[str, Any] = field(default_factory=dict)
    options: dict[str, Any] = field(default_factory=dict)
    #: ``d`` as stored when it did not decode ("" when it did).
    raw_payload: str = ""
    #: ``p``: 0 when a job's hash leaves it out (priority 0); None for an empty hash or a value
    #: that is not an integer.
    priority: int | None = None
    attempts: int = 0
    recoveries: int = 0
    enqueued_ms: int | None = None
    started_ms: int | None = None
    last_started_ms: int | None = None
    finished_ms: int | None = None
    due_ms: int | None = None
    #: ``w``: the worker of the latest lease; ``wk``: of every claim.
    worker: str = ""
    workers: list[Any] = field(default_factory=list)
    token: str = ""
    #: ``r``: the return value's JSON ("" none) and its value.
    result_json: str = ""
    result: Any = None
    #: ``err``: one ``{"exception_class_path", "traceback"}`` per failed attempt.
    errors: list[dict[str, Any]] = field(default_factory=list)
    #: ``eh``: the errors of earlier runs, oldest first (an operator's retry appends ``err``
    #: here before starting the job over; :attr:`errors` then holds only the current run's).
    earlier_errors: list[dict[str, Any]] = field(default_factory=list)
    progress: Any = None
    correlation_id: str = ""
    parent_id: str = ""
    #: ``why``: the failure reason (``worker_lost``, ``child_failed``, ``parent_ended``).
    reason: str = ""
    cancel_requested: bool = False
    #: Flows: the parent's queue base (``pb``; only a flow child has it), the failure policy
    #: code toward it (``fp``), the children ``(base, id, queue, name)`` and how each ended
    #: (``c:<id>``: ``{"s": state, "r": value}``).
    parent_base: str = ""
    policy: str = ""
    children: tuple[tuple[str, str, str, str], ...] = ()
    child_ends: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    #: Why fields did not decode (empty: none did not).
    problems: tuple[str, ...] = ()
    #: The hash as read.
    raw: Mapping[str, str] = field(default_factory=dict)

    @property
    def corrupt(self) -> bool:
        """True when a field of the hash did not decode (see :attr:`problems`)."""
        return bool(self.problems)

    @property
    def in_flow(self) -> bool:
        """True for a flow child or a flow parent."""
        return bool(self.parent_base or self.children)

    @property
    def is_finished(self) -> bool:
        """True for a completed, failed or cancelled job."""
        return self.state in FINISHED_STATES

    @property
    def last_error(self) -> dict[str, Any]:
        """The error of the latest failed attempt (``{}``: none)."""
        return self.errors[-1] if self.errors else {}

    @classmethod
    def from_hash(cls, queue: str, job_id: str, data: Mapping[str, str]) -> JobView:
        """Decode a job hash (an empty one gives a record with state ``""``); never raises."""
        problems: list[str] = []

        def integer(name: str) -> int | None:
            raw = data.get(name)
            if raw is None or raw == "":
                return None
            try:
                return int(raw)
            except (TypeError, ValueError):
                problems.append(f"field {name!r} is not an integer: {raw!r}")
                return None

        def loads(name: str, default: Any, kind: type | None = None) -> Any:
            raw = data.get(name)
            if not raw:
                return default
            try:
                value = json.loads(raw)
            except (ValueError, RecursionError):
                problems.append(f"field {name!r} is not JSON")
                return default
            if kind is not None and not isinstance(value, kind):
                problems.append(f"field {name!r} is not a JSON {kind.__name__}")
                return default
            return value

        def error_list(name: str) -> list[dict[str, Any]]:
            listed = loads(name, [], list)
            kept = [e for e in listed if isinstance(e, dict)]
            if len(kept) != len(listed):
                problems.append(f"field {name!r} holds entries that are not objects")
            return kept

        payload = decode_payload(data.get("d"))
        if payload.problem:
            problems.append(payload.problem)
        errors, earlier_errors = error_list("err"), error_list("eh")
        kids: list[tuple[str, str, str, str]] = []
        for kid in loads("kids", [], list):
            if isinstance(kid, list) and len(kid) == 4 and all(isinstance(part, str) for part in kid):
                kids.append((kid[0], kid[1], kid[2], kid[3]))
            else:
                problems.append("field 'kids' holds a malformed child")
        ends: dict[str, Mapping[str, Any]] = {}
        for _base, child_id, _queue, _name in kids:
            end = loads("c:" + child_id, None, dict)
            if end is not None:
                ends[child_id] = MappingProxyType(end)
        workers = loads("wk", [], list)
        return cls(
            queue=queue,
            id=job_id,
            state=data.get("s") or "",
            name=payload.name,
            args=payload.args,
            kwargs=payload.kwargs,
            options=payload.options,
            raw_payload=(data.get("d") or "") if payload.problem else "",
            priority=integer("p") if "p" in data else (0 if data else None),
            attempts=integer("a") or 0,
            recoveries=integer("rec") or 0,
            enqueued_ms=integer("e"),
            started_ms=integer("st"),
            last_started_ms=integer("la"),
            finished_ms=integer("f"),
            due_ms=integer("run"),
            worker=data.get("w") or "",
            workers=workers,
            token=data.get("tok") or "",
            result_json=data.get("r") or "",
            result=loads("r", None),
            errors=errors,
            earlier_errors=earlier_errors,
            progress=loads("pg", None),
            correlation_id=data.get("cid") or "",
            parent_id=data.get("par") or "",
            reason=data.get("why") or "",
            cancel_requested=data.get("cx") == "1",
            parent_base=data.get("pb") or "",
            policy=data.get("fp") or "",
            children=tuple(kids),
            child_ends=MappingProxyType(ends),
            problems=tuple(problems),
            raw=MappingProxyType(dict(data)),
        )
