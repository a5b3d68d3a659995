"""A TCP proxy in front of Redis that can lose the reply of a script call that already ran.

Workers connect to :attr:`DropProxy.url` instead of Redis. The proxy forwards bytes both
ways and follows the RESP protocol just enough to pair each reply with its command. When
armed (:meth:`DropProxy.drop_script_replies`), it swallows the server's reply to the next
``EVALSHA`` / ``EVAL`` (optionally only of given scripts) and closes that connection: the
script ran in Redis, the client sees a dropped connection and sends the call again. This is
the fault redis-py's retries and the engine's replay turn into "a script may run twice".
"""

from __future__ import annotations

import hashlib
import socket
import threading
from collections import deque
from collections.abc import Iterable

from django_jobs.engine.scripts import script_source
from tests.redis_server import free_port

#: Commands that run a Lua script.
SCRIPT_COMMANDS = frozenset({b"EVALSHA", b"EVAL", b"EVALSHA_RO", b"EVAL_RO"})


def script_sha(name: str) -> str:
    """Return the SHA1 the engine calls script ``name`` by (``EVALSHA``)."""
    return hashlib.sha1(script_source(name).encode()).hexdigest()


def _line(buf: bytes | bytearray, i: int) -> tuple[bytes, int] | None:
    j = buf.find(b"\r\n", i)
    if j < 0:
        return None
    return bytes(buf[i:j]), j + 2


def reply_end(buf: bytes | bytearray, i: int) -> int | None:
    """Return the index just past the RESP2/RESP3 value starting at ``i`` (None: incomplete)."""
    if i >= len(buf):
        return None
    kind = buf[i : i + 1]
    got = _line(buf, i + 1)
    if got is None:
        return None
    head, pos = got
    if kind in b"+-:_,#(":
        return pos
    if kind in b"$=!":
        size = int(head)
        if size < 0:
            return pos
        end = pos + size + 2
        return end if len(buf) >= end else None
    if kind in b"*~>%|":
        count = int(head)
        if count < 0:
            return pos
        if kind in b"%|":
            count *= 2
        for _ in range(count):
            nxt = reply_end(buf, pos)
            if nxt is None:
                return None
            pos = nxt
        return pos
    raise ValueError(f"not RESP at {i}: {bytes(buf[i:i + 20])!r}")


def command_end(buf: bytes | bytearray, i: int) -> tuple[int, list[bytes]] | None:
    """Parse the command (an array of bulk strings) at ``i``: (end, its first two words), or None."""
    got = _line(buf, i + 1)
    if got is None:
        return None
    head, pos = got
    if buf[i : i + 1] != b"*":
        raise ValueError(f"not a RESP command: {bytes(buf[i:i + 20])!r}")
    words: list[bytes] = []
    for _ in range(int(head)):
        got = _line(buf, pos + 1)
        if got is None:
            return None
        size_text, start = got
        end = start + int(size_text) + 2
        if len(buf) < end:
            return None
        if len(words) < 2:
            words.append(bytes(buf[start : end - 2]))
        pos = end
    return pos, words


class DropProxy:
    """Forward 127.0.0.1:<port> to Redis; on demand lose script replies (see the module doc)."""

    def __init__(self, target_port: int, target_host: str = "127.0.0.1") -> None:
        self.target = (target_host, target_port)
        self.port = free_port()
        self._listener = socket.create_server(("127.0.0.1", self.port))
        self._lock = threading.Lock()
        self._armed = 0
        self._only: frozenset[bytes] | None = None
        self._open: set[socket.socket] = set()
        self._closed = threading.Event()
        #: Script replies lost so far, by SHA1.
        self.dropped: dict[str, int] = {}
        #: Connections accepted so far.
        self.connections = 0
        self._thread = threading.Thread(target=self._accept, name="drop-proxy", daemon=True)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> DropProxy:
        self._thread.start()
        return self

    def close(self) -> None:
        self._closed.set()
        self._listener.close()
        with self._lock:
            sockets = list(self._open)
        for sock in sockets:
            _shut(sock)

    def drop_script_replies(self, count: int = 1, *, only: Iterable[str] | None = None) -> None:
        """Lose the replies of the next ``count`` script calls (of the scripts with SHA1 in ``only``)."""
        with self._lock:
            self._armed = count
            self._only = frozenset(sha.encode() for sha in only) if only is not None else None

    @property
    def armed(self) -> int:
        with self._lock:
            return self._armed

    @property
    def total_dropped(self) -> int:
        with self._lock:
            return sum(self.dropped.values())

    # -- plumbing ---------------------------------------------------------------------------

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            try:
                server = socket.create_connection(self.target)
            except OSError:
                _shut(client)
                continue
            for sock in (client, server):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            pending: deque[tuple[bytes, bytes]] = deque()
            with self._lock:
                self.connections += 1
                self._open.update((client, server))
            threading.Thread(target=self._upstream, args=(client, server, pending), daemon=True).start()
            threading.Thread(target=self._downstream, args=(client, server, pending), daemon=True).start()

    def _upstream(self, client: socket.socket, server: socket.socket, pending: deque[tuple[bytes, bytes]]) -> None:
        """Client → Redis: note each command (name, first argument) before its last byte is sent."""
        buf = bytearray()
        try:
            while chunk := client.recv(65536):
                buf += chunk
                pos = 0
                while pos < len(buf) and (parsed := command_end(buf, pos)) is not None:
                    pos, words = parsed
                    pending.append((words[0].upper(), words[1] if len(words) > 1 else b""))
                del buf[:pos]
                server.sendall(chunk)
        except OSError:
            pass
        finally:
            self._end(client, server)

    def _downstream(self, client: socket.socket, server: socket.socket, pending: deque[tuple[bytes, bytes]]) -> None:
        """Redis → client: forward whole replies; lose an armed script reply and hang up."""
        buf = bytearray()
        try:
            while chunk := server.recv(65536):
                buf += chunk
                pos = 0
                while (end := reply_end(buf, pos)) is not None:
                    name, arg = pending.popleft() if pending else (b"", b"")
                    # An error reply (NOSCRIPT...) means the script did not run: not this fault.
                    if name in SCRIPT_COMMANDS and buf[pos : pos + 1] != b"-" and self._take(arg):
                        client.sendall(bytes(buf[:pos]))  # the replies before it arrive
                        return
                    pos = end
                client.sendall(bytes(buf[:pos]))
                del buf[:pos]
        except OSError:
            pass
        finally:
            self._end(client, server)

    def _take(self, sha: bytes) -> bool:
        with self._lock:
            if self._armed <= 0 or (self._only is not None and sha not in self._only):
                return False
            self._armed -= 1
            key = sha.decode()
            self.dropped[key] = self.dropped.get(key, 0) + 1
            return True

    def _end(self, client: socket.socket, server: socket.socket) -> None:
        with self._lock:
            self._open.difference_update((client, server))
        _shut(client)
        _shut(server)


def _shut(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    sock.close()
