"""Only django_jobs/engine/ sends Redis commands (docs/architecture.md, "Layers").

Outside it, no module reaches for the engine's client or its private senders, builds a
pipeline or sends a raw command. (Importing ``redis`` for an exception class is allowed.)
"""

from __future__ import annotations

import ast
from pathlib import Path

import django_jobs

PACKAGE = Path(django_jobs.__file__).parent
#: Attributes that reach Redis directly.
FORBIDDEN = {
    "client", "blocking_client", "pipeline", "execute_command", "_call", "_run_chunked", "_bulk", "_scripts",
    "xread", "xreadgroup", "xrange", "xrevrange", "hgetall", "hget", "hset", "zrange", "register_script",
}


def offenders(root: Path = PACKAGE) -> list[str]:
    found = []
    for path in sorted(root.rglob("*.py")):
        if root / "engine" in path.parents:
            continue
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Attribute) and node.attr in FORBIDDEN:
                found.append(f"{path.relative_to(root)}:{node.lineno} .{node.attr}")
    return found


def test_no_module_outside_the_engine_sends_redis_commands():
    assert offenders() == []


def test_the_check_sees_an_offender(tmp_path):
    (tmp_path / "engine").mkdir()
    (tmp_path / "rogue.py").write_text("def f(engine):\n    return engine.client.get('k')\n")
    (tmp_path / "engine" / "fine.py").write_text("def f(self):\n    return self.client.get('k')\n")
    assert offenders(tmp_path) == ["rogue.py:2 .client"]
