"""Jobs of the Django task contract tests (tests/integration/test_django_contract.py)."""

from __future__ import annotations

import sys

from django_jobs import job
from tests.testapp.jobs import ledger


@job
def exits(code: int) -> None:
    """Call ``sys.exit()``: a job cannot stop its worker this way."""
    ledger("exits", code)
    sys.exit(code)


@job
def interrupts() -> None:
    """Raise KeyboardInterrupt from the job's own code."""
    ledger("interrupts")
    raise KeyboardInterrupt


@job
async def async_exits() -> None:
    """An ``async def`` job calling ``sys.exit()``."""
    ledger("async_exits")
    sys.exit(3)


@job(isolated=True)
def isolated_exits() -> None:
    """``sys.exit()`` in an isolated job's forked process."""
    sys.exit(4)


@job
def fails(message: str) -> None:
    """Fail with ValueError(message)."""
    raise ValueError(message)


@job
def greet(user_id: int, *, greeting: str = "hello") -> str:
    """Return a greeting: the function checks arguments are bound at enqueue."""
    return f"{greeting} {user_id}"


@job
def noop() -> None:
    """Do nothing."""


@job
def login(user: str, password: str, *, profile: dict | None = None) -> None:
    """Take a secret positional argument and a nested secret (``jobs show`` redacts them)."""


@job
def raises_system_exit_with_message() -> None:
    """Raise SystemExit with a message (Django's failing_task_system_exit)."""
    raise SystemExit("This Task failed due to SystemExit")


@job
def complex_exception() -> None:
    """Raise an exception wrapping another one."""
    raise ValueError(ValueError("This task failed"))


@job
def complex_return_value() -> object:
    """Return something JSON cannot carry: the run fails with a TypeError."""
    return {1, 2}


@job(takes_context=True)
def get_task_id(context) -> str:
    """Return the running job's id, read from its context."""
    return context.task_result.id


@job
def calculate_meaning_of_life() -> int:
    """Return 42."""
    return 42
