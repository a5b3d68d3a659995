"""Tie a child process' life to its parent's (Linux ``PR_SET_PDEATHSIG``).

Worker processes, isolated jobs' processes and the mirror process call :func:`die_with_parent`
so that none outlives a ``kill -9`` of its parent. Standard library only: every layer may use it.
"""

from __future__ import annotations

import ctypes
import functools
import signal
from typing import Any

__all__ = ["die_with_parent", "libc"]


@functools.cache
def libc() -> Any:
    """The C library, loaded once (isolated jobs call :func:`die_with_parent` in every child)."""
    try:
        return ctypes.CDLL(None, use_errno=True)
    except OSError:
        return None


def die_with_parent(sig: int = signal.SIGUSR2) -> None:
    """Ask Linux to send ``sig`` to this process when its parent dies (no-op elsewhere)."""
    try:
        libc().prctl(1, sig)  # PR_SET_PDEATHSIG
    except AttributeError:
        pass
