"""Redis URLs: parse and check them (:func:`parse_url`), show them without password (:func:`safe_url`).

No network I/O. :mod:`django_jobs.engine.connection` re-exports these; :mod:`django_jobs.engine.topology`
uses them too (which is why they live apart from the client building).
"""

from __future__ import annotations

import re
from typing import Any

from redis.connection import parse_url as redis_parse_url

from django_jobs.conf import SettingError, label

#: Schemes REDIS_URL accepts.
URL_SCHEMES = ("redis", "rediss", "unix")
URL_HINT = "Use redis://host:6379/0, rediss://host:6380/0 (TLS) or unix:///path/to/redis.sock."

_QUERY_PASSWORD = re.compile(r"([?&]password=)[^&#]*", re.IGNORECASE)


def safe_url(url: str) -> str:
    """Return ``url`` with any password replaced by ``***`` (for logs and errors).

    Never raises, even on a malformed URL: it masks what looks like a password.

    >>> safe_url("redis://:s3cret@cache:6379/0")
    'redis://:***@cache:6379/0'
    """
    if not isinstance(url, str):
        return repr(url)
    scheme, sep, rest = url.partition("://")
    if not sep:
        scheme, rest = "", url
    # The userinfo ends at the last "@" before the query (a password may hold a raw "@" or "/").
    end = min((i for i in (rest.find("?"), rest.find("#")) if i >= 0), default=len(rest))
    head, tail = rest[:end], rest[end:]
    userinfo, at, host = head.rpartition("@")
    if at and ":" in userinfo:
        user, _, password = userinfo.partition(":")
        if password:
            head = f"{user}:***@{host}"
    tail = _QUERY_PASSWORD.sub(r"\1***", tail)
    return f"{scheme}{sep}{head}{tail}"


def redact(text: str, *secrets: Any) -> str:
    """Return ``text`` with every non-empty secret replaced by ``***``."""
    for secret in secrets:
        if isinstance(secret, str) and secret:
            text = text.replace(secret, "***")
    return text


def parse_url(url: Any, *, setting: str = "REDIS_URL", name: str | None = None) -> dict[str, Any]:
    """Return redis-py's connection keyword arguments for ``url``; no network I/O.

    Stricter than redis-py where it would silently ignore a typo: a ``redis://`` path must be
    a database number, and a ``unix://`` URL needs a socket path.

    Raises:
        SettingError: the URL is malformed (the message shows it without its password).
    """
    name = name or label(setting)
    if not isinstance(url, str) or not url:
        raise SettingError(setting, f"{name} is {url!r}; it must be a Redis URL string.", URL_HINT)
    shown = safe_url(url)
    scheme = url.partition("://")[0] if "://" in url else ""
    if scheme not in URL_SCHEMES:
        hint = URL_HINT
        if not scheme:
            hint = f"Add a scheme, e.g. 'unix://{shown}'." if shown.startswith("/") else f"Add a scheme, e.g. 'redis://{shown}'."
        elif scheme.lower() in URL_SCHEMES:
            hint = f"Write the scheme in lower case: {scheme.lower()}://"
        raise SettingError(
            setting, f"{name} {shown!r} has no valid scheme; it must start with redis://, rediss:// or unix://.", hint
        )
    try:
        kwargs: dict[str, Any] = redis_parse_url(url)  # type: ignore[no-untyped-call]
    except ValueError as exc:  # bad port, bad query value...
        raise SettingError(setting, f"{name} {shown!r} is not a valid Redis URL: {_url_error(url, exc)}", URL_HINT) from None
    if scheme == "unix":
        if not kwargs.get("path"):
            raise SettingError(setting, f"{name} {shown!r} has no socket path.", "Use unix:///path/to/redis.sock (three slashes).")
    else:
        path = url.partition("://")[2].split("?", 1)[0].split("#", 1)[0]
        path = path.rpartition("@")[2].partition("/")[2]
        if path and not path.isdigit():
            raise SettingError(
                setting,
                f"{name} {shown!r} has the path {'/' + path!r}; it must be a database number.",
                "E.g. redis://localhost:6379/0.",
            )
    return kwargs


def _url_error(url: str, exc: Exception) -> str:
    """Return redis-py's parse error, with any password in it masked."""
    userinfo = url.partition("://")[2].split("?", 1)[0].rpartition("@")[0]
    return redact(str(exc), userinfo.partition(":")[2]).rstrip(".") + "."
