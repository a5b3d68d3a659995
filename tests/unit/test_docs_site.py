"""The documentation builds as a site: ``mkdocs build --strict`` (a broken link or page fails)."""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.timeout(180)
def test_mkdocs_build_strict_passes(tmp_path: Path) -> None:
    if importlib.util.find_spec("mkdocs") is None or importlib.util.find_spec("material") is None:
        pytest.fail("mkdocs and mkdocs-material are missing: pip install -e '.[docs]' (tests/bootstrap.sh does it)")
    site = tmp_path / "site"
    proc = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--config-file", str(ROOT / "mkdocs.yml"), "--site-dir", str(site)],
        cwd=ROOT, capture_output=True, text=True, env={**os.environ, "NO_MKDOCS_2_WARNING": "1"}, check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert (site / "index.html").is_file() and (site / "search" / "search_index.json").is_file()
    # Every page of docs/ is on the site, and the changelog page carries CHANGELOG.md.
    for page in (ROOT / "docs").glob("*.md"):
        built = site / "index.html" if page.stem == "index" else site / page.stem / "index.html"
        assert built.is_file(), f"{page.name} was not built"
    assert "0.1.0" in (site / "changelog" / "index.html").read_text()


def test_every_docs_page_is_in_the_navigation() -> None:
    nav = re.findall(r":\s*([\w-]+\.md)\s*$", (ROOT / "mkdocs.yml").read_text(), re.MULTILINE)
    assert sorted(nav) == sorted(p.name for p in (ROOT / "docs").glob("*.md"))


def test_fence_flags_are_dropped_for_the_site_only() -> None:
    sys.path.insert(0, str(ROOT))
    try:
        from mkdocs_hooks import on_page_markdown
    finally:
        sys.path.remove(str(ROOT))
    page = "```python test db\nx = 1\n```\n\n```shell test\npython manage.py check\n```\n\n```python\ny = 2\n```\n"
    assert on_page_markdown(page) == "```python\nx = 1\n```\n\n```shell\npython manage.py check\n```\n\n```python\ny = 2\n```\n"
