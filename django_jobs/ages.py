"""How long ago, or how long: one compact format for the admin and ``manage.py jobs``."""

from __future__ import annotations


def age_label(seconds: float | None) -> str:
    """Return ``seconds`` compactly with one decimal: ``"4.2 s"``, ``"3.0 min"``, ``"2.5 h"``, ``"4.6 d"``; ``None`` is ``"-"``.

    >>> [age_label(s) for s in (None, 4.2, 180, 9000, 400_000)]
    ['-', '4.2 s', '3.0 min', '2.5 h', '4.6 d']
    """
    if seconds is None:
        return "-"
    seconds = max(0.0, seconds)
    if seconds < 60:
        return f"{seconds:.1f} s"
    if seconds < 3600:
        return f"{seconds / 60:.1f} min"
    if seconds < 86400:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} d"
