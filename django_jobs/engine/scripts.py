"""Load the Lua scripts from ``lua/*.lua``, resolving ``--@include name`` lines."""

from __future__ import annotations

import re
from functools import cache
from importlib import resources

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
    seen: set[str] = set()

    def include(match: re.Match[str]) -> str:
        inc = match.group(1)
        if inc in seen:
            return ""
        seen.add(inc)
        # An include may include others (each still inlined once, before its first use).
        return _INCLUDE.sub(include, (root / "includes" / f"{inc}.lua").read_text())

    return _INCLUDE.sub(include, (root / f"{name}.lua").read_text())
