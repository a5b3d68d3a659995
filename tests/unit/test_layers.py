"""The import layers of django_jobs hold and no module imports itself through others.

The contracts live in pyproject.toml ([tool.importlinter]); tests/lint.sh runs them in CI too.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import grimp

ROOT = Path(__file__).resolve().parents[2]


def test_lint_imports_keeps_the_layers_and_finds_no_cycle():
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(
        [str(Path(sys.executable).with_name("lint-imports")), "--no-cache"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "BROKEN" not in proc.stdout and proc.stdout.count("KEPT") >= 2


def test_no_runtime_import_cycle_between_any_two_modules():
    graph = grimp.build_graph("django_jobs", cache_dir=None, exclude_type_checking_imports=True)
    modules = {m for m in graph.modules if not m.startswith("django_jobs.migrations")}
    cycles = []
    for module in sorted(modules):
        for imported in graph.find_modules_directly_imported_by(module):
            if imported in modules and imported != module and not imported.startswith(module + "."):
                back = graph.find_shortest_chain(importer=imported, imported=module)
                if back is not None and not module.startswith(imported + "."):
                    cycles.append((module, *back))
    assert cycles == []
