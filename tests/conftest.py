"""Fixtures: a real redis-server per session, a fresh key prefix per test, worker helpers."""

from __future__ import annotations

import gc
import os
import signal
import subprocess
import sys
import uuid
import warnings
from pathlib import Path

import pytest
from django.test import override_settings

from tests.redis_server import RedisServer, env_for, wait_until

ROOT = Path(__file__).resolve().parent.parent
TESTPROJECT = ROOT / "testproject"


#: The modules that take longest (a full run's ``--durations``): pytest-xdist starts them first, so
#: none starts near the end and holds the run while the other workers idle. The browser modules
#: alternate with the others: each worker starts with two groups, which it runs one after the other,
#: and four Chromiums at once on two cores would slow each other's pages. A path ending in "/"
#: stands for every module below it; "path::value", for one group of a SPLIT module.
SLOW_FIRST = (
    "tests/browser/test_admin_console.py::1024",
    "tests/integration/test_quickstart.py",
    "tests/browser/test_admin_console.py::1440",
    "tests/chaos/test_cron.py",
    "tests/browser/test_admin_operator.py",
    "tests/integration/test_scheduler.py",
    "tests/browser/test_admin_browser.py",
    "tests/integration/test_mirror_processes.py",
    "tests/browser/test_admin_actions_browser.py",
    "tests/chaos/test_failover.py",
    "tests/browser/",
)

#: Long modules whose tests are parametrized (the module: the parameter): each value's tests are a
#: pytest-xdist group of their own ("path::value"), so several workers share the module instead of
#: one running all of it (tests/browser/test_admin_console.py, a site and a logged-in Chromium page
#: per test, the longest of a full run). Not tests/chaos/test_failover.py (~130 s alone): its
#: halves at once on two workers (two failovers under load together) failed its enqueue-rate
#: checks in both loaded runs that split it; whole, it starts early (SLOW_FIRST). A group's tests start on their worker what they need as every other module's do: the
#: session Redis groups of their topology (once per worker, lazily: a "server" group starts no
#: cluster), and a module-scoped fixture once per group (here: the browser module's Chromium).
#: Only for modules whose module-scoped fixtures are cheap enough to set up once per group.
SPLIT = {
    "tests/browser/test_admin_console.py": "width",
    "tests/chaos/test_shards.py": "topology",
    "tests/integration/test_shards.py": "topology",
    "tests/integration/test_scheduler.py": "topology",
    "tests/integration/test_flows_cluster.py": "topology",
}


def xdist_group_of(item: pytest.Item) -> str:
    """The pytest-xdist group of a test without an ``xdist_group`` mark: its module's ("path::value" in a SPLIT module)."""
    path = item.nodeid.split("::", 1)[0]
    callspec = getattr(item, "callspec", None)
    param = SPLIT.get(path)
    if param is not None and callspec is not None and param in callspec.params:
        return f"{path}::{callspec.params[param]}"
    return path


def slow_rank(group: str) -> int:
    """The place of the pytest-xdist group ``group`` (a module's path, or "path::value") in SLOW_FIRST (``len(SLOW_FIRST)`` for the others)."""
    path = group.split("::", 1)[0]
    for rank, slow in enumerate(SLOW_FIRST):
        if group == slow or path == slow or (slow.endswith("/") and path.startswith(slow)):
            return rank
    return len(SLOW_FIRST)


def pytest_configure(config):
    """pytest-xdist hands out the groups in the order collected (tests/conftest.py orders them), not by size."""
    if hasattr(config.option, "loadscopereorder"):
        config.option.loadscopereorder = False


@pytest.hookimpl(wrapper=True)
def pytest_collection_modifyitems(config, items):
    """Under pytest-xdist (``tests/run.sh`` runs ``-n 4 --dist loadgroup``), one worker runs a module.

    Every test without an ``xdist_group`` mark of its own joins its module's group: a module's
    tests run on one worker, in order, and its module-scoped fixtures are set up once, as in a
    serial run (a SPLIT module: a group per value of its parameter). Each worker has its own session fixtures (redis-server, Sentinel group, Cluster:
    ports the kernel picks, their own directories), its own SQLite database in memory and, on
    PostgreSQL, its own test database (pytest-django appends the worker's name).

    On a pytest-xdist worker, the groups are then ordered as the controller hands them out (it
    takes the workers' order; they all collect the same): the SLOW_FIRST modules first,
    then the others by size, most tests first (pytest-xdist's own order, which
    :func:`pytest_configure` turns off for this one). A group's tests keep their order (after
    the other plugins': pytest-django's puts TestCase classes first). The marks go on before
    the other plugins' hooks (pytest-xdist's reads them), the order after.
    """
    if not config.pluginmanager.hasplugin("xdist"):
        return (yield)
    names: dict[int, str] = {}  # by id(): a test's hash is its node id, which pytest-xdist changes (+ "@group")
    for item in items:
        mark = item.get_closest_marker("xdist_group")
        if mark is None:
            item.add_marker(pytest.mark.xdist_group(xdist_group_of(item)))
            mark = item.get_closest_marker("xdist_group")
        names[id(item)] = mark.args[0] if mark.args else mark.kwargs.get("name", "default")
    result = yield
    if not hasattr(config, "workerinput"):  # not a pytest-xdist worker: one process runs everything in order
        return result
    if config.getvalue("loadgroup") and items and "@" not in items[0].nodeid:
        # pytest-xdist names a test's group in its node id ("...@group"); where it cannot (pytest 9.2
        # with pytest-xdist 3.8), every test is a group of its own: module-scoped fixtures are set up
        # on every worker and a module's tests run side by side. Refused rather than slow and unsound.
        raise pytest.UsageError(
            "pytest-xdist's --dist loadgroup has no effect with this pytest (no '@group' in the test ids): "
            "install the versions pyproject.toml's test extra names"
        )
    groups: dict[str, list[pytest.Item]] = {}
    for item in items:
        groups.setdefault(names[id(item)], []).append(item)
    order = sorted(groups.items(), key=lambda group: (slow_rank(group[0]), -len(group[1])))
    items[:] = [item for _name, group in order for item in group]
    return result


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session):
    """After the session's fixtures are gone, collect what the tests left in reference cycles and name the sockets among it.

    A socket that nothing closed and that sits in a reference cycle (a client a test dropped, a
    connection of a thread that ended) warns when the garbage collector finalizes it. Met during a
    test, that warning fails the test (``filterwarnings = error``); met only by pytest's last
    collection at exit (1 fast-tier run in ~20, never reproduced with tracemalloc on), it failed
    a run whose every test had passed, with no test to point at. Collected here instead, each is
    printed as a line of the run's output.
    """
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ResourceWarning)
        gc.collect()
    unclosed = [str(w.message) for w in caught if issubclass(w.category, ResourceWarning)]
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if unclosed and reporter is not None:
        for message in unclosed:
            reporter.write_line(f"left unclosed by the session (collected at its end): {message}")


@pytest.fixture(scope="session")
def redis_server():
    server = RedisServer()
    server.start()
    yield server
    server.kill()  # its data is thrown away: no shutdown that writes it (fsync, a loaded disk)


@pytest.fixture(scope="session")
def cluster_group():
    """A real Redis Cluster (3 primaries, 3 replicas) on loopback, started once per session."""
    from tests.redis_server import ClusterGroup, start_group

    group = start_group(ClusterGroup)
    yield group
    group.stop()


@pytest.fixture(scope="session")
def cluster_group_acl():
    """A Redis Cluster whose default user is off (ACL user ``app``): 3 primaries, no replicas, started
    once per session and only when a test asks for it."""
    from tests.redis_server import ClusterGroup

    group = ClusterGroup(primaries=3, replicas=0, acl=True)
    group.start()
    yield group
    group.stop()


@pytest.fixture(scope="session")
def cluster_group_tls():
    """A Redis Cluster on TLS only (certificates generated by openssl), with the ACL user too:
    3 primaries, no replicas, started once per session and only when a test asks for it."""
    from tests.redis_server import ClusterGroup

    group = ClusterGroup(primaries=3, replicas=0, tls=True, acl=True)
    group.start()
    yield group
    group.stop()


@pytest.fixture(scope="session")
def cluster_group_lone():
    """A Redis Cluster of 3 primaries without replicas (a stopped primary leaves its slots unserved: CLUSTERDOWN),
    started once per session and only when a test asks for it."""
    from tests.redis_server import ClusterGroup

    group = ClusterGroup(primaries=3, replicas=0)
    group.start()
    yield group
    group.stop()


#: The cluster fixture of each cluster topology ``target`` knows.
CLUSTERS = {"cluster": "cluster_group", "cluster-acl": "cluster_group_acl", "cluster-tls": "cluster_group_tls",
            "cluster-lone": "cluster_group_lone"}


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
    runs every test of a module against one server and against a real Redis Cluster
    ("cluster-acl", "cluster-tls": the clusters with an ACL user, and on TLS).
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

    if topology in CLUSTERS:
        group = request.getfixturevalue(CLUSTERS[topology])
        client = group.client()
        env = {"DJJ_REDIS_URL": group.url, "DJJ_CLUSTER": "1"}
        if group.redis_options:
            env["DJJ_REDIS_OPTIONS"] = json.dumps(group.redis_options)
        yield group.settings(), env, client
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


#: Shards of the queue ``hot`` that ``sharded`` adds (worker subprocesses: DJJ_SHARDS, tests/settings.py).
SHARDS = 4


@pytest.fixture
def sharded(jobs_settings):
    """Add the queue ``hot`` of SHARDS shards to the test's settings (``pytest.mark.usefixtures("sharded")``)."""
    from django_jobs.engine import reset_engine

    with override_settings(DJANGO_JOBS={**jobs_settings, "QUEUES": {**jobs_settings["QUEUES"], "hot": {"SHARDS": SHARDS}}}):
        yield
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

    def wait_children(self, proc: subprocess.Popen[str], count: int, timeout: float = 60) -> list[int]:
        """Wait for ``count`` worker processes of ``proc``; a supervisor that exited fails at once, with its output."""

        def started() -> list[int] | None:
            if proc.poll() is not None:
                raise AssertionError(f"runworkers exited with {proc.returncode} before {count} worker processes:\n{proc.stdout.read() if proc.stdout else ''}")
            children = self.children(proc)
            return children if len(children) >= count else None

        return wait_until(started, timeout, message=f"{count} worker processes")

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
