"""JSON in and out. No pickle anywhere: what is not JSON fails in the caller."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

_encoder = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False)
_encode = _encoder.encode
loads = json.loads

#: The C encoder ``_encoder.encode`` makes again on every call, made once (None where the
#: ``_json`` accelerator is missing), without the circular-reference markers: it keeps no state
#: between calls, so threads share it. A cycle then ends in ``RecursionError``, and
#: :func:`dumps` encodes that value again with ``_encoder`` for its own error.
_c_make_encoder = getattr(json.encoder, "c_make_encoder", None)
_iterencode: Any = (
    _c_make_encoder(None, _encoder.default, json.encoder.encode_basestring, None, ":", ",", False, False, False)
    if _c_make_encoder is not None
    else None
)


def dumps(value: Any) -> str:
    """Return ``value`` as compact JSON (non-ASCII kept; NaN and infinities refused).

    ``None`` and ints, what most jobs return, are written without the encoder's set-up for
    each call (~2-3 us; it already writes a str directly): the same text. Anything else goes
    to the C encoder made once (:data:`_iterencode`): ``_encoder.encode``'s text and errors
    without its set-up (~1.5 us a call; docs/performance.md, "Bulk enqueue, Python per job").
    """
    if value is None:
        return "null"
    if type(value) is int:
        return int.__repr__(value)
    if _iterencode is None:
        return _encode(value)
    try:
        return "".join(_iterencode(value, 0))
    except RecursionError:
        # A cycle (or nesting deeper than the recursion limit): the checking encoder says which.
        return _encode(value)


def dumps_call(job_name: str, args: Sequence[Any], kwargs: Mapping[str, Any]) -> tuple[str, str]:
    """Return the JSON of ``args`` and ``kwargs``, naming the argument that is not JSON.

    Raises:
        TypeError: an argument cannot be represented in JSON.
    """
    try:
        return (dumps(list(args)) if args else "[]"), (dumps(dict(kwargs)) if kwargs else "{}")
    except (TypeError, ValueError):
        pass
    for index, value in enumerate(args):
        _check(job_name, f"positional argument {index}", value)
    for name, value in kwargs.items():
        _check(job_name, f"argument {name!r}", value)
    raise TypeError(f"The arguments of job {job_name!r} are not JSON serializable.")


def _check(job_name: str, what: str, value: Any) -> None:
    try:
        dumps(value)
    except (TypeError, ValueError) as exc:
        raise TypeError(
            f"The {what} of job {job_name!r} is not JSON serializable "
            f"({type(value).__name__}): {exc}. Pass ids or plain data instead of objects."
        ) from None


def normalize(value: Any) -> Any:
    """Return ``value`` as it comes back from a JSON round trip (tuples become lists...)."""
    return loads(dumps(value))
