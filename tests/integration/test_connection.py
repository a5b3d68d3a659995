"""The ways to reach Redis, against real servers: TCP, unix socket, TLS, a CACHES entry, a password."""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path
from urllib.parse import quote

import pytest
import redis
from django.core.cache import caches
from django.core.checks import run_checks
from django.test import override_settings
from redis.connection import SSLConnection, UnixDomainSocketConnection

from django_jobs.conf import get_settings
from django_jobs.engine import get_engine
from django_jobs.engine.connection import ping
from django_jobs.exceptions import ConfigurationError, DjangoJobsError, RedisUnavailable
from tests.redis_server import RedisServer, free_port, redis_binary, wait_until
from tests.testapp import jobs

#: The throwaway server's password: characters that need percent-encoding in a URL.
PASSWORD = "s3cret p@ss/w:rd%"
WRONG = "wr0ng-passw0rd"
DJANGO_REDIS = "django_redis.cache.RedisCache"
LOCMEM = {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}


def without_url(jobs_settings: dict, **extra: object) -> dict:
    """Return the test DJANGO_JOBS without REDIS_URL, plus ``extra``."""
    return {**{k: v for k, v in jobs_settings.items() if k != "REDIS_URL"}, **extra}


def run_a_job(work) -> None:
    """Enqueue a job, run it with the in-process worker, and read its result back."""
    result = jobs.add.enqueue(20, 22)
    assert work() == 1
    assert jobs.add.get_result(result.id).return_value == 42


def deploy_messages() -> list:
    return run_checks(tags=["django_jobs"], include_deployment_checks=True)


@pytest.fixture(scope="module")
def password_server():
    """A server of our own (never the shared one) that requires PASSWORD."""
    server = RedisServer(appendonly=False)
    server.start()
    with server.client() as client:
        client.config_set("requirepass", PASSWORD)
    yield server
    server.kill()
    shutil.rmtree(server.dir, ignore_errors=True)


def password_url(server: RedisServer, password: str = PASSWORD) -> str:
    return f"redis://:{quote(password, safe='')}@127.0.0.1:{server.port}/0"


# -- REDIS_URL ---------------------------------------------------------------------------------


def test_a_redis_url_connects_over_tcp_and_names_the_connection(engine, redis_server, r):
    assert engine.ping() is True
    assert engine.target == redis_server.url
    assert "django_jobs" in {client["name"] for client in r.client_list()}


def test_a_unix_socket_url_runs_jobs_on_the_same_server(jobs_settings, redis_server, r, prefix, work):
    with override_settings(DJANGO_JOBS={**jobs_settings, "REDIS_URL": f"unix://{redis_server.socket}?db=0"}):
        engine = get_engine()
        assert engine.client.connection_pool.connection_class is UnixDomainSocketConnection
        assert engine.target == f"unix://{redis_server.socket}"
        run_a_job(work)
    assert r.keys(f"{prefix}:*"), "the jobs' keys are visible over TCP: one server, two ways in"


def test_redis_options_reach_the_client(jobs_settings, r):
    with override_settings(DJANGO_JOBS={**jobs_settings, "REDIS_OPTIONS": {"client_name": "billing-jobs"}}):
        assert get_engine().ping()
        assert "billing-jobs" in {client["name"] for client in r.client_list()}


def test_a_misspelt_redis_option_fails_when_the_engine_is_built_not_at_the_first_command(jobs_settings):
    with override_settings(DJANGO_JOBS={**jobs_settings, "REDIS_OPTIONS": {"socket_timout": 1}}):
        with pytest.raises(ConfigurationError, match="socket_timout"):
            get_engine()


def test_ping_answers_with_the_safe_url_of_the_server(redis_server, jobs_settings):
    assert ping(get_settings()) == redis_server.url


def test_the_deploy_check_passes_when_redis_answers():
    assert deploy_messages() == []


def test_the_deploy_check_warns_when_redis_does_not_answer(jobs_settings):
    url = f"redis://127.0.0.1:{free_port()}/0"
    with override_settings(DJANGO_JOBS={**jobs_settings, "REDIS_URL": url}):
        started = time.monotonic()
        found = deploy_messages()
    assert [m.id for m in found] == ["django_jobs.W001"]
    assert url in found[0].msg
    assert time.monotonic() - started < 5, "the deploy check must fail fast, without retries"


# -- CACHE_ALIAS -------------------------------------------------------------------------------


def test_a_django_redis_cache_alias_reuses_its_location_and_options(jobs_settings, redis_server, r, prefix, work):
    cache = {
        "BACKEND": DJANGO_REDIS,
        "LOCATION": redis_server.url,
        "OPTIONS": {"SOCKET_CONNECT_TIMEOUT": 3, "SOCKET_TIMEOUT": 7, "CONNECTION_POOL_KWARGS": {"max_connections": 17}},
    }
    with override_settings(CACHES={"default": LOCMEM, "jobs": cache}, DJANGO_JOBS=without_url(jobs_settings, CACHE_ALIAS="jobs")):
        engine = get_engine()
        pool = engine.client.connection_pool
        assert pool.max_connections == 17
        assert pool.connection_kwargs["socket_connect_timeout"] == 3
        assert pool.connection_kwargs["socket_timeout"] == 7
        assert engine.target == redis_server.url
        run_a_job(work)
        caches["jobs"].set(f"{prefix}-greeting", "hello")
        assert r.keys(f"*{prefix}-greeting"), "the cache and the jobs share the server"
    assert r.keys(f"{prefix}:*")


def test_redis_options_win_over_the_cache_options(jobs_settings, redis_server):
    cache = {"BACKEND": DJANGO_REDIS, "LOCATION": redis_server.url, "OPTIONS": {"SOCKET_TIMEOUT": 7}}
    value = without_url(jobs_settings, CACHE_ALIAS="jobs", REDIS_OPTIONS={"socket_timeout": 3})
    with override_settings(CACHES={"default": LOCMEM, "jobs": cache}, DJANGO_JOBS=value):
        assert get_engine().client.connection_pool.connection_kwargs["socket_timeout"] == 3


def test_a_django_redis_cache_on_a_unix_socket_with_a_password_option(jobs_settings, password_server, work):
    cache = {"BACKEND": DJANGO_REDIS, "LOCATION": f"unix://{password_server.socket}", "OPTIONS": {"PASSWORD": PASSWORD}}
    with override_settings(CACHES={"default": LOCMEM, "jobs": cache}, DJANGO_JOBS=without_url(jobs_settings, CACHE_ALIAS="jobs")):
        engine = get_engine()
        assert engine.target == f"unix://{password_server.socket}"
        run_a_job(work)


def test_djangos_own_redis_cache_alias_works_too(jobs_settings, password_server):
    cache = {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": f"redis://127.0.0.1:{password_server.port}",
        "OPTIONS": {"password": PASSWORD, "db": 1},
    }
    with override_settings(CACHES={"default": LOCMEM, "jobs": cache}, DJANGO_JOBS=without_url(jobs_settings, CACHE_ALIAS="jobs")):
        engine = get_engine()
        assert engine.ping()
        assert engine.client.connection_pool.connection_kwargs["db"] == 1


def test_a_cache_alias_naming_no_redis_cache_fails_with_a_configuration_error(jobs_settings):
    with override_settings(CACHES={"default": LOCMEM}, DJANGO_JOBS=without_url(jobs_settings, CACHE_ALIAS="default")):
        with pytest.raises(ConfigurationError, match="not a Redis cache"):
            get_engine()


# -- passwords ---------------------------------------------------------------------------------


def test_a_percent_encoded_password_in_the_url_is_accepted_and_jobs_run(jobs_settings, password_server, work):
    with override_settings(DJANGO_JOBS={**jobs_settings, "REDIS_URL": password_url(password_server)}):
        engine = get_engine()
        assert PASSWORD not in engine.target and quote(PASSWORD, safe="") not in engine.target
        run_a_job(work)  # the worker's blocking client carries the password too


def test_a_wrong_password_fails_at_once_and_the_message_hides_it(jobs_settings, password_server):
    with override_settings(DJANGO_JOBS={**jobs_settings, "REDIS_URL": password_url(password_server, WRONG)}):
        started = time.monotonic()
        with pytest.raises(RedisUnavailable, match="invalid username-password pair") as info:
            get_engine().ping()
        assert time.monotonic() - started < 2, "refused credentials are not retried with backoff"
    assert WRONG not in str(info.value)


def test_the_deploy_check_points_at_the_credentials_when_redis_refuses_them(jobs_settings, password_server):
    with override_settings(DJANGO_JOBS={**jobs_settings, "REDIS_URL": password_url(password_server, WRONG)}):
        found = deploy_messages()
    assert [m.id for m in found] == ["django_jobs.W001"]
    assert found[0].hint == "Redis refused the credentials: check the user and password in DJANGO_JOBS['REDIS_URL']."


def test_a_missing_password_says_authentication_is_required(jobs_settings, password_server):
    url = f"redis://127.0.0.1:{password_server.port}/0"
    with override_settings(DJANGO_JOBS={**jobs_settings, "REDIS_URL": url}):
        with pytest.raises(RedisUnavailable, match=f"Cannot reach Redis at {url}: Authentication required"):
            get_engine().ping()


def _scenarios(server: RedisServer) -> dict[str, tuple[dict, dict]]:
    """Ways to get a connection error, each with the password somewhere in the settings."""
    port = server.port
    encoded = quote(WRONG, safe="")
    return {
        "wrong password in the url": ({"REDIS_URL": f"redis://:{encoded}@127.0.0.1:{port}/0"}, {}),
        "user and wrong password": ({"REDIS_URL": f"redis://default:{encoded}@127.0.0.1:{port}/0"}, {}),
        "password in the query": ({"REDIS_URL": f"unix://{server.socket}?password={encoded}"}, {}),
        "malformed port": ({"REDIS_URL": f"redis://:{encoded}@127.0.0.1:port/0"}, {}),
        "malformed db": ({"REDIS_URL": f"redis://:{encoded}@127.0.0.1:{port}/zero"}, {}),
        "misspelt option": ({"REDIS_URL": f"redis://:{encoded}@127.0.0.1:{port}/0", "REDIS_OPTIONS": {"pasword": 1}}, {}),
        "nothing listening": ({"REDIS_URL": f"redis://:{encoded}@127.0.0.1:{free_port()}/0"}, {}),
        "wrong cache password option": (
            {"CACHE_ALIAS": "jobs"},
            {"CACHES": {"default": LOCMEM, "jobs": {"BACKEND": DJANGO_REDIS, "LOCATION": f"redis://127.0.0.1:{port}", "OPTIONS": {"PASSWORD": WRONG}}}},
        ),
    }


SCENARIOS = [
    "wrong password in the url", "user and wrong password", "password in the query", "malformed port",
    "malformed db", "misspelt option", "nothing listening", "wrong cache password option",
]


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_no_error_message_or_check_ever_contains_the_password(scenario, jobs_settings, password_server):
    djj, other = _scenarios(password_server)[scenario]
    shown: list[str] = []
    with override_settings(DJANGO_JOBS=without_url(jobs_settings, **djj), **other):
        with pytest.raises(DjangoJobsError) as info:
            get_engine().ping()
        shown.append(str(info.value))
        shown += [f"{m.msg} {m.hint}" for m in deploy_messages()]
    assert len(shown) >= 2, "the failure shows up in the checks too"
    for text in shown:
        assert WRONG not in text and quote(WRONG, safe="") not in text, text
    assert any("***" in text for text in shown) or scenario == "wrong cache password option"


# -- TLS ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory):
    """A TLS-only redis-server with a self-signed certificate for localhost; yields (port, ca file)."""
    directory = tmp_path_factory.mktemp("tls")
    cert, key = directory / "cert.pem", directory / "key.pem"
    if shutil.which("openssl") is None:
        pytest.skip("the openssl command is needed to make a test certificate")
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
         "-keyout", str(key), "-out", str(cert), "-days", "2", "-subj", "/CN=localhost",
         "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
        check=True, capture_output=True, timeout=30,
    )
    port = free_port()
    log = directory / "redis.log"
    proc = subprocess.Popen(
        [redis_binary(), "--port", "0", "--tls-port", str(port), "--bind", "127.0.0.1",
         "--tls-cert-file", str(cert), "--tls-key-file", str(key), "--tls-ca-cert-file", str(cert),
         "--tls-auth-clients", "no", "--save", "", "--appendonly", "no", "--dir", str(directory),
         "--logfile", str(log)],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )

    def ready() -> bool:
        if proc.poll() is not None:
            return True
        try:
            with redis.Redis(host="localhost", port=port, ssl=True, ssl_ca_certs=str(cert)) as client:
                return bool(client.ping())
        except redis.ConnectionError:
            return False

    wait_until(ready, timeout=10, message="the TLS redis-server")
    if proc.poll() is not None:
        output = (proc.stderr.read() if proc.stderr else "") + (log.read_text() if log.exists() else "")
        if "tls" in output.lower():
            pytest.skip(f"{redis_binary()} was built without TLS support")
        raise AssertionError(f"the TLS redis-server exited: {output[-2000:]}")
    yield port, Path(cert)
    proc.terminate()
    proc.wait(timeout=10)
    if proc.stderr:
        proc.stderr.close()


def test_a_rediss_url_gets_its_tls_options_from_redis_options(jobs_settings, tls_server, work):
    port, ca = tls_server
    value = {**jobs_settings, "REDIS_URL": f"rediss://localhost:{port}/0", "REDIS_OPTIONS": {"ssl_ca_certs": str(ca)}}
    with override_settings(DJANGO_JOBS=value):
        engine = get_engine()
        assert engine.client.connection_pool.connection_class is SSLConnection
        assert engine.target == f"rediss://localhost:{port}/0"
        run_a_job(work)


def test_without_the_ca_the_tls_server_is_refused_and_says_why(jobs_settings, tls_server):
    port, _ = tls_server
    with override_settings(DJANGO_JOBS={**jobs_settings, "REDIS_URL": f"rediss://localhost:{port}/0"}):
        with pytest.raises(RedisUnavailable, match="certificate verify failed"):
            ping(get_settings())


# -- Socket timeouts of script calls -----------------------------------------------------------


@pytest.fixture
def pausable_server():
    """A server of our own (never the shared one): a test may pause all its clients."""
    server = RedisServer(appendonly=False)
    server.start()
    yield server
    server.kill()
    shutil.rmtree(server.dir, ignore_errors=True)


@pytest.mark.parametrize("how", ["tcp", "unix"])
def test_script_calls_keep_their_socket_timeout_in_the_kernel_and_a_stalled_server_still_fails_them(how, jobs_settings, pausable_server):
    """A script call's socket is blocking with SO_RCVTIMEO / SO_SNDTIMEO = socket_timeout (no poll()
    before each send and receive): a server that stops answering still fails the call with
    RedisUnavailable after the retries, and the next call after it answers again reconnects and
    gets the same timeouts."""
    import socket
    import struct

    url = pausable_server.url if how == "tcp" else f"unix://{pausable_server.socket}?db=0"
    with override_settings(DJANGO_JOBS={**jobs_settings, "REDIS_URL": url, "REDIS_OPTIONS": {"socket_timeout": 0.25}}):
        engine = get_engine()

        def own_socket() -> socket.socket:
            sock = engine._lane.own.conn._sock
            assert sock.gettimeout() is None  # blocking: CPython calls no poll() first
            for option in (socket.SO_RCVTIMEO, socket.SO_SNDTIMEO):
                seconds, micros = struct.unpack("ll", sock.getsockopt(socket.SOL_SOCKET, option, 16))
                assert 0.24 <= seconds + micros / 1e6 <= 0.26  # (the kernel rounds it to its clock tick)
            return sock

        assert jobs.add.enqueue(1, 2).id
        first = own_socket()
        with pausable_server.client() as admin:
            admin.execute_command("CLIENT", "PAUSE", 20_000, "WRITE")  # a script call waits; UNPAUSE still runs
            try:
                with pytest.raises(RedisUnavailable, match="Cannot reach Redis"):
                    jobs.add.enqueue(3, 4)
            finally:
                admin.execute_command("CLIENT", "UNPAUSE")
        result = jobs.add.enqueue(5, 6)
        assert jobs.add.get_result(result.id).args == [5, 6]
        assert own_socket() is not first  # a new connection, with the same kernel timeouts
