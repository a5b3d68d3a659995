"""Secret job arguments: replaced by ``[redacted]`` on every admin page."""

from __future__ import annotations

import inspect
import logging
from collections.abc import Iterable
from typing import Any

logger = logging.getLogger(__name__)


#: What the admin shows instead of a redacted value.
REDACTED = "[redacted]"


def _secret(name: str, words: Iterable[str]) -> bool:
    low = name.lower()
    return any(word in low for word in words)


def _redact_value(value: Any, words: list[str]) -> Any:
    if isinstance(value, dict):
        return {k: REDACTED if isinstance(k, str) and _secret(k, words) else _redact_value(v, words) for k, v in value.items()}
    if isinstance(value, list):
        return [_redact_value(v, words) for v in value]
    return value


def redact_arguments(name: str, args: Any, kwargs: Any) -> tuple[Any, Any]:
    """Return ``(args, kwargs)`` of job ``name`` with secret arguments replaced by ``[redacted]``.

    An argument is secret when its name contains a word of ``DJANGO_JOBS["REDACT_ARGUMENTS"]``
    (case-insensitive): keyword arguments and keys of nested dicts by their own name,
    positional arguments by the name of the job function's parameter they bind to.

    >>> redact_arguments("myapp.jobs.login", [], {"user": "ann", "password": "hunter2"})
    ([], {'user': 'ann', 'password': '[redacted]'})
    """
    from django_jobs import registry
    from django_jobs.conf import get_settings

    words = get_settings().redact_arguments
    if not words:
        return args, kwargs
    if isinstance(args, list):
        params: list[str] = []
        task = registry.get(name)
        if task is not None:
            try:
                params = [p.name for p in inspect.signature(task.func).parameters.values()
                          if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
            except (TypeError, ValueError):
                params = []
            if getattr(task, "takes_context", False):
                params = params[1:]
        args = [
            REDACTED if i < len(params) and _secret(params[i], words) else _redact_value(v, words)
            for i, v in enumerate(args)
        ]
    return args, _redact_value(kwargs, words)


def redact_text(text: str) -> str:
    """Return ``text`` (a raw payload) or ``[redacted]`` when it mentions a secret argument name."""
    from django_jobs.conf import get_settings

    return REDACTED if text and _secret(text, get_settings().redact_arguments) else text
