"""Load the Lua scripts from ``lua/*.lua``, resolving ``--@include name`` lines."""

from __future__ import annotations

import re
from functools import cache
from importlib import resources
from importlib.resources.abc import Traversable

_INCLUDE = re.compile(r"^--@include (\w+)\s*$", re.MULTILINE)


@cache
def script_names() -> tuple[str, ...]:
    """Return the name of every entry-point script (each ``lua/<name>.lua``): the one registry.

    The engine registers all of them once, at start-up (:class:`~django_jobs.engine.runner.ScriptRunner`);
    registering only computes the SHA1, so nothing is sent to Redis.
    """
    root = resources.files("django_jobs.engine") / "lua"
    return tuple(sorted(p.name[:-4] for p in root.iterdir() if p.name.endswith(".lua")))


@cache
def script_source(name: str) -> str:
    """Return the source of script ``name`` with its includes inlined (each once)."""
    root = resources.files("django_jobs.engine") / "lua"
    return inline_includes((root / f"{name}.lua").read_text(), root / "includes")


def inline_includes(text: str, includes: Traversable) -> str:
    """Return ``text`` with each ``--@include name`` line replaced by ``includes/<name>.lua``.

    Each include is inlined once, before its first use (an include may include others). The
    benchmarks call it with another checkout's ``lua/includes`` to load that checkout's scripts.
    """
    seen: set[str] = set()

    def include(match: re.Match[str]) -> str:
        inc = match.group(1)
        if inc in seen:
            return ""
        seen.add(inc)
        return _INCLUDE.sub(include, (includes / f"{inc}.lua").read_text())

    return _INCLUDE.sub(include, text)
