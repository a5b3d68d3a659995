"""Check a job's arguments against its function's signature, as calling it would (at enqueue).

Below the backend, so that the backend, flows and the system checks (cron ``ARGS``/``KWARGS``)
share one check.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Mapping, Sequence
from typing import Any

from django_jobs.exceptions import InvalidArguments

__all__ = ["bind_arguments", "bind_each"]


@functools.cache
def _signature(func: Any) -> inspect.Signature:
    return inspect.signature(func)


@functools.cache
def _plain_names(func: Any) -> tuple[str, ...] | None:
    """Return the parameter names of ``func`` when all are plain and required (the fast path), else None."""
    params = _signature(func).parameters.values()
    if all(p.kind is inspect.Parameter.POSITIONAL_OR_KEYWORD and p.default is inspect.Parameter.empty for p in params):
        return tuple(p.name for p in params)
    return None


def bind_arguments(task: Any, args: Sequence[Any], kwargs: Mapping[str, Any], *, where: str = "", leading: int = 0) -> None:
    """Check that ``args``/``kwargs`` fit ``task``'s function, as calling it would.

    ``leading`` counts arguments the worker passes first (a flow parent's children results);
    a task that takes its context gets one more.

    Raises:
        InvalidArguments: they do not fit (also a :class:`TypeError`); the message names the job
            and the problem.
    """
    extra = [None] * (leading + (1 if task.takes_context else 0))
    names = _plain_names(task.func)
    if names is not None and not extra and _fits(names, args, kwargs):
        return
    try:
        _signature(task.func).bind(*extra, *args, **kwargs)
    except TypeError as exc:
        at = f" ({where})" if where else ""
        raise InvalidArguments(
            f"Arguments {list(args)!r}, {dict(kwargs)!r} do not fit {task.module_path}{_signature(task.func)}{at}: {exc}."
        ) from None


def _fits(names: tuple[str, ...], args: Sequence[Any], kwargs: Mapping[str, Any]) -> bool:
    """Whether a call fits a function whose parameters ``names`` are all plain and required.

    The usual job: fits when each parameter gets exactly one value. False sends the call to
    the full bind (for its message).
    """
    given = len(args)
    return given + len(kwargs) == len(names) and (not kwargs or all(k in names[given:] for k in kwargs))


def bind_each(task: Any, calls: Sequence[tuple[Sequence[Any], Mapping[str, Any]]], *, where: str) -> None:
    """:func:`bind_arguments` for each call of ``calls``, first to last (a bulk enqueue).

    The fast path is decided once for the task, not per call; a call that does not fit gets
    the full bind and its message, which names it as ``where.format(number)`` (e.g. ``"item
    {} of enqueue_many()"``, counted from 0).

    Raises:
        InvalidArguments: the first call that does not fit.
    """
    names = _plain_names(task.func) if not task.takes_context else None
    if names is None:
        for number, (args, kwargs) in enumerate(calls):
            bind_arguments(task, args, kwargs, where=where.format(number))
        return
    count = len(names)
    for number, (args, kwargs) in enumerate(calls):
        # (positional arguments only, as many as the parameters: fits, with no call made)
        if (kwargs or len(args) != count) and not _fits(names, args, kwargs):
            bind_arguments(task, args, kwargs, where=where.format(number))
