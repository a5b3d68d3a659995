"""An opt-in pytest plugin that names the tests leaving sockets for the garbage collector to close.

``python -m pytest -p tests.socket_audit ...`` (a fast-tier combination in one process:
``DJJ_MATRIX_WORKERS=0 bash tests/matrix.sh py313-django60 -- -p tests.socket_audit``): after
each test (its fixtures torn down), every TCP socket still open is noted, the garbage is
collected, and each socket that collection closed is reported with the test, the thread and
the stack that made it. Such a socket was dropped without being closed (a client, a pool, a
connection in a reference cycle): it closes only when the collector finalizes it, at any later
moment, and warns when its own finalizer runs before its connection's ("ResourceWarning:
unclosed <socket.socket ...>", which ``filterwarnings = error`` turns into a failure: of a later
test, or of the whole run at its end). Whether it warns depends on the order the collector
finalizes objects in; this audit reports every such socket, whatever the order. The report is
printed at the end of a run in one process, and written to ``DJJ_SOCKET_AUDIT_FILE`` when that
is set (``DJJ_SOCKET_AUDIT_FILE.gw0``, ... under pytest-xdist, whose workers print nothing).
See docs/testing.md, "Unclosed sockets".
"""

from __future__ import annotations

import gc
import os
import socket
import threading
import traceback
import warnings
from typing import Any

import pytest

_made: dict[int, tuple[str, threading.Thread, str]] = {}  # id(socket): (test, thread, stack where it was made)
_current = ["(collection)"]
_found: list[str] = []
_socket_init = socket.socket.__init__


def _init(self: socket.socket, *args: Any, **kwargs: Any) -> None:
    _socket_init(self, *args, **kwargs)
    stack = "".join(traceback.format_stack(limit=30)[:-1])
    _made[id(self)] = (_current[0], threading.current_thread(), stack)


def _open_tcp() -> list[socket.socket]:
    return [o for o in gc.get_objects()
            if issubclass(type(o), socket.socket) and o.fileno() >= 0 and o.family in (socket.AF_INET, socket.AF_INET6)]


def pytest_configure(config: pytest.Config) -> None:
    socket.socket.__init__ = _init  # type: ignore[method-assign]


def pytest_unconfigure(config: pytest.Config) -> None:
    socket.socket.__init__ = _socket_init  # type: ignore[method-assign]


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> Any:
    _current[0] = item.nodeid
    try:
        return (yield)
    finally:
        _current[0] = f"(after {item.nodeid})"
        open_before = _open_tcp()  # held here: the collection closes them (their connections' finalizers) but frees none
        running = {thread for _, thread, _ in _made.values() if thread.is_alive()}
        with warnings.catch_warnings(record=True):
            warnings.simplefilter("always", ResourceWarning)
            gc.collect()
        for sock in open_before:
            made = _made.get(id(sock))
            if sock.fileno() >= 0 or (made is not None and made[1] in running and not made[1].is_alive()):
                continue  # still open, or closed as the thread that made it ended meanwhile (its thread-locals)
            test, thread, stack = made if made is not None else ("?", None, "(made before the audit started)\n")
            _found.append(f"{item.nodeid}: a socket made during {test} in thread {thread.name if thread else '?'} was "
                          f"closed only by the garbage collector; made at:\n{stack}")
        del open_before


def pytest_sessionfinish(session: pytest.Session) -> None:
    path = os.environ.get("DJJ_SOCKET_AUDIT_FILE")
    if path:
        worker = os.environ.get("PYTEST_XDIST_WORKER")
        with open(f"{path}.{worker}" if worker else path, "w") as out:
            out.write("".join(f"{line}\n" for line in _found))


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if os.environ.get("PYTEST_XDIST_WORKER") or terminalreporter.config.pluginmanager.hasplugin("dsession"):
        return  # under pytest-xdist each worker audits its own tests: DJJ_SOCKET_AUDIT_FILE gets a file per worker
    terminalreporter.section("socket audit")
    terminalreporter.write_line(f"{len(_found)} socket(s) closed only by the garbage collector" + (":" if _found else ""))
    for line in _found:
        terminalreporter.write_line(line)
