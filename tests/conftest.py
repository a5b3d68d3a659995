"""Fixtures: a real redis-server per session, a fresh key prefix per test, worker helpers."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from django.test import override_settings

from tests.redis_server import RedisServer, env_for, wait_until

ROOT = Path(__file__).resolve().parent.parent
TESTPROJECT = ROOT / "testproject"


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config, items):
    """Under pytest-xdist (``tests/run.sh`` runs ``-n 4 --dist loadgroup``), one worker runs a module.

    Every test without an ``xdist_group`` mark of its own joins its module's group: a module's
    tests run on one worker, in order, and its module-scoped fixtures are set up once, as in a
    serial run. Each worker has its own session fixtures (redis-server, Sentinel group, Cluster:
    ports the kernel picks, their own directories), its own SQLite database in memory and, on
    PostgreSQL, its own test database (pytest-django appends the worker's name).
    """
    if not config.pluginmanager.hasplugin("xdist"):
        return
    for item in items:
        if item.get_closest_marker("xdist_group") is None:
            item.add_marker(pytest.mark.xdist_group(item.nodeid.split("::", 1)[0]))


@pytest.fixture(scope="session")
def redis_server():
    server = RedisServer()
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def cluster_group():
    """A real Redis Cluster (3 primaries, 3 replicas) on loopback, started once per session."""
    from tests.redis_server import ClusterGroup, start_group

    group = start_group(ClusterGroup)
    yield group
    group.stop()


@pytest.fixture(scope="session")
def sentinel_group():
    """A real primary, a replica and three sentinels (with passwords) on loopback, once per session."""
    from tests.redis_server import SentinelGroup, start_group

    group = start_group(SentinelGroup)
    yield group
    group.stop()


@pytest.fixture
def topology(request) -> str:
    """Which Redis the test runs against: "server" unless a module parametrizes it (indirect=True).

    ``pytestmark = pytest.mark.parametrize("topology", ["server", "cluster"], indirect=True)``
    runs every test of a module against one server and against a real Redis Cluster.
    """
    value = getattr(request, "param", "server")
    marker = request.node.get_closest_marker("single_server")
    if marker is not None and value != "server":
        pytest.skip(f"single server only: {marker.args[0] if marker.args else marker.kwargs.get('reason', '')}")
    return value


@pytest.fixture
def target(request, topology):
    """What ``jobs_settings`` points DJANGO_JOBS at: (settings, env for worker subprocesses, raw client)."""
    import json

    if topology == "cluster":
        group = request.getfixturevalue("cluster_group")
        client = group.client()
        yield {"REDIS_URL": group.url, "CLUSTER": True}, {"DJJ_REDIS_URL": group.url, "DJJ_CLUSTER": "1"}, client
        client.close()
    elif topology == "sentinel":
        group = request.getfixturevalue("sentinel_group")
        client = group.primary_client()
        value = group.settings()
        yield {"SENTINEL": value}, {"DJJ_SENTINEL": json.dumps(value)}, client
        client.close()
    else:
        server = request.getfixturevalue("redis_server")
        client = server.client()
        yield {"REDIS_URL": server.url}, {"DJJ_REDIS_URL": server.url}, client
        client.close()


@pytest.fixture
def prefix() -> str:
    return "t" + uuid.uuid4().hex[:10]


@pytest.fixture(autouse=True)
def jobs_settings(target, prefix, tmp_path, monkeypatch):
    """Point DJANGO_JOBS at the test server with a unique prefix; give each test a ledger file."""
    from django.conf import settings

    ledger = tmp_path / "ledger.txt"
    monkeypatch.setenv("DJJ_LEDGER", str(ledger))
    where, env, _client = target
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("DJJ_PREFIX", prefix)
    from tests.testapp.jobs import calls_in_process

    calls_in_process.clear()  # a test run once per topology must not see the runs of the first
    value = {**settings.DJANGO_JOBS, "PREFIX": prefix}
    if "SENTINEL" in where:
        value.pop("REDIS_URL", None)
    value.update(where)
    with override_settings(DJANGO_JOBS=value):
        yield value
    from django_jobs.engine import reset_engine

    reset_engine()


@pytest.fixture
def ledger_path(jobs_settings) -> Path:
    return Path(os.environ["DJJ_LEDGER"])


def read_ledger(path: Path) -> list[list[str]]:
    if not path.exists():
        return []
    return [line.rstrip("\n").split("\t") for line in path.read_text().splitlines() if line]


@pytest.fixture
def r(target):
    """A raw client of the Redis the test runs against (a RedisCluster client on a cluster)."""
    return target[2]


@pytest.fixture
def engine(jobs_settings):
    from django_jobs.engine import get_engine

    return get_engine()


@pytest.fixture
def work():
    """Run an in-process burst worker until the queues are empty."""
    from django_jobs.testing import work_until_empty

    return work_until_empty


class Workers:
    """``manage.py runworkers`` subprocesses started by a test (killed at teardown)."""

    def __init__(self, server: RedisServer, prefix: str, env: dict[str, str] | None = None) -> None:
        self.server = server
        self.prefix = prefix
        #: The target's environment (DJJ_REDIS_URL, DJJ_CLUSTER, DJJ_SENTINEL) for the subprocesses.
        self.env = dict(env or {})
        self.procs: list[subprocess.Popen[str]] = []

    def start(self, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
        cmd = [sys.executable, "-m", "django", "runworkers", *args]
        proc = subprocess.Popen(
            cmd, cwd=ROOT, env=env_for(self.server, self.prefix, **{**self.env, **(env or {})}),
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
        )
        self.procs.append(proc)
        return proc

    def children(self, proc: subprocess.Popen[str]) -> list[int]:
        out = subprocess.run(["pgrep", "-P", str(proc.pid)], capture_output=True, text=True).stdout
        return [int(p) for p in out.split()]

    def wait_children(self, proc: subprocess.Popen[str], count: int, timeout: float = 20) -> list[int]:
        return wait_until(lambda: (c := self.children(proc)) and len(c) >= count and c, timeout, message=f"{count} worker processes")

    def stop_all(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                proc.wait(timeout=10)


@pytest.fixture
def workers(redis_server, prefix, target):
    w = Workers(redis_server, prefix, target[1])
    yield w
    w.stop_all()


@pytest.fixture(scope="session")
def built_wheel(tmp_path_factory) -> Path:
    """The wheel of this checkout (``pip wheel --no-build-isolation``), built once per test run.

    pip builds in the source tree (build/, the .egg-info): two builds at once would share those
    directories, so the pytest-xdist workers build under a lock in their common temporary
    directory, and the first one's wheel serves them all.
    """
    import fcntl

    base = tmp_path_factory.getbasetemp()
    shared = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base
    out = shared / "djj-wheel"
    with open(shared / "djj-wheel.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        wheels = list(out.glob("django_jobs_redis-*.whl"))
        if not wheels:
            building = shared / "djj-wheel-building"
            subprocess.run(
                [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(building), str(ROOT)],
                check=True, capture_output=True, text=True,
            )
            building.rename(out)
            wheels = list(out.glob("django_jobs_redis-*.whl"))
    (wheel,) = wheels
    return wheel


@pytest.fixture(scope="module")
def testproject_on_path():
    """Make the testproject's packages (``testproject``, ``demo``) importable for a test module."""
    sys.path.insert(0, str(TESTPROJECT))
    yield
    sys.path.remove(str(TESTPROJECT))
