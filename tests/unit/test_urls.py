"""Redis URLs: parsing by redis-py's rules without I/O, and printing them without passwords."""

from __future__ import annotations

import pytest
from redis.connection import SSLConnection, UnixDomainSocketConnection

from django_jobs.conf import SettingError, build_settings
from django_jobs.engine.connection import check_config, client_config, parse_url, redact, safe_url


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("redis://:s3cret@cache:6379/0", "redis://:***@cache:6379/0"),
        ("redis://user:s3cret@cache:6379/0", "redis://user:***@cache:6379/0"),
        ("rediss://user:p%40ss%2Fw@cache:6380/1", "rediss://user:***@cache:6380/1"),
        ("redis://:p@ss@cache:6379", "redis://:***@cache:6379"),
        ("redis://:a/b@cache:6379", "redis://:***@cache:6379"),
        ("unix://:s3cret@/run/redis.sock?db=1", "unix://:***@/run/redis.sock?db=1"),
        ("unix:///run/redis.sock?db=1&password=s3cret", "unix:///run/redis.sock?db=1&password=***"),
        ("redis://:s3cret@cache:notaport/0", "redis://:***@cache:notaport/0"),
        ("redis://[::1:s3cret@", "redis://[:***@"),  # malformed: over-masking is fine
    ],
)
def test_safe_url_masks_the_password_wherever_it_is(url, shown):
    assert safe_url(url) == shown


@pytest.mark.parametrize("url", ["redis://cache:6379/0", "redis://user@cache", "unix:///run/redis.sock", "redis://"])
def test_safe_url_leaves_urls_without_a_password_alone(url):
    assert safe_url(url) == url


def test_safe_url_never_raises_on_garbage():
    assert safe_url(None) == "None"  # type: ignore[arg-type]
    assert safe_url("not a url at all") == "not a url at all"


def test_redact_replaces_every_secret():
    assert redact("auth pw failed for pw", "pw", None, "") == "auth *** failed for ***"


def test_parse_url_follows_redis_py():
    assert parse_url("redis://u:p@cache:6380/3") == {"username": "u", "password": "p", "host": "cache", "port": 6380, "db": 3}
    assert parse_url("rediss://cache")["connection_class"] is SSLConnection
    unix = parse_url("unix:///run/redis.sock?db=2")
    assert unix["connection_class"] is UnixDomainSocketConnection
    assert (unix["path"], unix["db"]) == ("/run/redis.sock", 2)


@pytest.mark.parametrize(
    ("url", "fragment"),
    [
        ("redis://cache:6379/zero", "it must be a database number"),
        ("unix://", "has no socket path"),
        ("unix://?db=0", "has no socket path"),
        ("redis://cache:70000", "Port out of range"),
        ("redis://cache?max_connections=many", "Invalid value for 'max_connections'"),
        ("tcp://cache:6379", "has no valid scheme"),
    ],
)
def test_parse_url_refuses_what_redis_py_would_refuse_or_silently_misread(url, fragment):
    with pytest.raises(SettingError, match=fragment) as info:
        parse_url(url)
    assert info.value.setting == "REDIS_URL"


def test_client_config_layers_our_defaults_the_options_and_forces_text_responses():
    settings = build_settings({"REDIS_URL": "redis://cache:6379/0", "REDIS_OPTIONS": {"socket_timeout": 1, "decode_responses": False}})
    url, kwargs = client_config(settings)
    assert url == "redis://cache:6379/0"
    assert kwargs["socket_timeout"] == 1
    assert kwargs["decode_responses"] is True
    assert kwargs["socket_keepalive"] is True
    assert kwargs["client_name"] == "django_jobs"


def test_a_blocking_client_has_no_socket_timeout():
    _, kwargs = client_config(build_settings({"REDIS_URL": "redis://cache"}), blocking=True)
    assert kwargs["socket_timeout"] is None


def test_unix_sockets_get_no_tcp_keepalive_option():
    _, kwargs = client_config(build_settings({"REDIS_URL": "unix:///run/redis.sock"}))
    assert "socket_keepalive" not in kwargs


def test_embedded_mode_is_not_resolved_without_starting_the_server(tmp_path):
    settings = build_settings({"EMBEDDED_DIR": str(tmp_path / "e"), "EMBEDDED": True})  # DEBUG is False here
    assert client_config(settings, start_embedded=False) is None
    assert check_config(settings) is None
    assert not (tmp_path / "e").exists()


def test_check_config_returns_the_safe_url_without_connecting():
    settings = build_settings({"REDIS_URL": "redis://:pw@127.0.0.1:1/0"})
    assert check_config(settings) == "redis://:***@127.0.0.1:1/0"
