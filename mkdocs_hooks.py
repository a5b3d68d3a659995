"""MkDocs hooks for the documentation site (named by ``hooks:`` in mkdocs.yml).

The docs mark their runnable examples with words after the fence's language (```` ```python test
db ````, see tests/integration/test_docs.py). Markdown fences take a language only, so the site
drops those words before rendering: the page shows a plain ``python`` block.
"""

from __future__ import annotations

import re
from typing import Any

#: A fence opener with words after its language: ```` ```python test db ````.
FENCE_FLAGS = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>`{3,}|~{3,})(?P<lang>[\w+-]+)[ \t]+[\w \t]+$", re.MULTILINE)


def on_page_markdown(markdown: str, **kwargs: Any) -> str:
    """Return the page's Markdown with test flags removed from its fences."""
    return FENCE_FLAGS.sub(r"\g<indent>\g<fence>\g<lang>", markdown)
