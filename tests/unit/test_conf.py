"""DJANGO_JOBS parsing: defaults, coercion, and a clear ConfigurationError for every bad value."""

from __future__ import annotations

import math
import re

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.test import override_settings

from django_jobs.conf import DEFAULTS, SettingError, build_settings, get_settings
from django_jobs.exceptions import ConfigurationError


def settings_for(**values: object):
    """Return get_settings() for DJANGO_JOBS = values (nothing else set)."""
    with override_settings(DJANGO_JOBS=values):
        return get_settings()


def test_an_empty_dict_gives_the_defaults_and_the_embedded_server():
    settings = settings_for()
    assert settings.prefix == DEFAULTS["PREFIX"]
    assert settings.queue_names == ["default"]
    assert settings.lease_seconds == DEFAULTS["LEASE_SECONDS"]
    assert settings.keep_completed == DEFAULTS["KEEP_COMPLETED"]
    assert settings.embedded is True


def test_no_django_jobs_setting_at_all_gives_the_defaults():
    with override_settings():
        from django.conf import settings

        del settings.DJANGO_JOBS
        assert get_settings().prefix == DEFAULTS["PREFIX"]


def test_numeric_strings_from_environment_variables_are_coerced():
    settings = settings_for(LEASE_SECONDS="2.5", MAX_RECOVERIES="4", DEFAULT_ATTEMPTS=" 3 ", EVENTS_MAXLEN=1000.0)
    assert settings.lease_seconds == 2.5
    assert settings.max_recoveries == 4 and isinstance(settings.max_recoveries, int)
    assert settings.default_attempts == 3
    assert settings.events_maxlen == 1000 and isinstance(settings.events_maxlen, int)


def test_an_empty_redis_url_from_an_unset_environment_variable_means_embedded():
    settings = settings_for(REDIS_URL="", CACHE_ALIAS=None)
    assert settings.redis_url is None
    assert settings.embedded is True


def test_the_default_queue_always_exists_and_comes_first():
    settings = settings_for(QUEUES={"emails": {}, "reports": None})
    assert settings.queue_names == ["default", "emails", "reports"]
    assert settings.queues["reports"] == {}


def test_queue_options_are_coerced_and_queue_retention_overrides_the_global_one():
    settings = settings_for(
        KEEP_COMPLETED={"AGE": 100},
        QUEUES={"emails": {"DEFAULT_ATTEMPTS": "5", "PRIORITY": 10.0, "KEEP_COMPLETED": {"COUNT": 7}}},
    )
    assert settings.queues["emails"]["DEFAULT_ATTEMPTS"] == 5
    assert settings.queues["emails"]["PRIORITY"] == 10
    assert settings.keep("emails", "COMPLETED") == (100, 7)
    assert settings.keep("default", "COMPLETED") == (100, DEFAULTS["KEEP_COMPLETED"]["COUNT"])
    assert settings.keep("emails", "FAILED") == (DEFAULTS["KEEP_FAILED"]["AGE"], DEFAULTS["KEEP_FAILED"]["COUNT"])


def test_a_partial_retention_dict_keeps_the_default_for_the_other_key():
    settings = settings_for(KEEP_FAILED={"COUNT": 5})
    assert settings.keep_failed == {"AGE": DEFAULTS["KEEP_FAILED"]["AGE"], "COUNT": 5}


def test_module_lists_accept_tuples_and_embedded_paths_accept_pathlike(tmp_path):
    settings = settings_for(IMPORT_MODULES=("a.jobs", "b.jobs"), EMBEDDED_DIR=tmp_path, EMBEDDED_BINARY=tmp_path / "rs")
    assert settings.import_modules == ["a.jobs", "b.jobs"]
    assert settings.embedded_dir == str(tmp_path)
    assert settings.embedded_binary == str(tmp_path / "rs")


def test_unknown_keys_are_ignored_at_runtime_and_left_to_the_system_check():
    settings = settings_for(REDIS_ULR="redis://x", PREFIX="p")
    assert settings.prefix == "p"
    assert "REDIS_ULR" in settings.raw


def test_the_result_is_cached_and_cleared_when_the_setting_changes():
    with override_settings(DJANGO_JOBS={"PREFIX": "one"}):
        first = get_settings()
        assert get_settings() is first
        with override_settings(DJANGO_JOBS={"PREFIX": "two"}):
            assert get_settings().prefix == "two"
        assert get_settings().prefix == "one"


INVALID = [
    ("LEASE_SECONDS", "soon"),
    ("LEASE_SECONDS", 0),
    ("LEASE_SECONDS", math.inf),
    ("LEASE_SECONDS", None),
    ("RECOVERY_INTERVAL", math.nan),
    ("RECOVERY_INTERVAL", -1),
    ("MAX_RECOVERIES", -1),
    ("MAX_RECOVERIES", 1.5),
    ("MAX_RECOVERIES", [3]),
    ("DEFAULT_ATTEMPTS", 0),
    ("DEFAULT_ATTEMPTS", True),
    ("DEFAULT_TIMEOUT", 0),
    ("DEFAULT_TIMEOUT", "never"),
    ("DEFAULT_BACKOFF", "linear"),
    ("DEFAULT_BACKOFF", {"type": "exponential", "delai": 1}),
    ("DEFAULT_BACKOFF", -5),
    ("DEFAULT_BACKOFF", math.nan),
    ("KEEP_COMPLETED", {"AGE": -1}),
    ("KEEP_COMPLETED", {"AGES": 10}),
    ("KEEP_FAILED", [100, 10]),
    ("KEEP_FAILED", {"COUNT": 2.5}),
    ("EVENTS_MAXLEN", 0),
    ("MAX_PAYLOAD_BYTES", "1kb"),
    ("PREFIX", ""),
    ("PREFIX", "app{1}"),
    ("PREFIX", 7),
    ("IMPORT_MODULES", "myapp.jobs"),
    ("IMPORT_MODULES", ["myapp.jobs", 3]),
    ("AUTODISCOVER", {"jobs": True}),
    ("REDIS_OPTIONS", ["ssl"]),
    ("REDIS_OPTIONS", {1: "x"}),
    ("REDIS_URL", 6379),
    ("CACHE_ALIAS", ["default"]),
    ("EMBEDDED_DIR", 1),
    ("QUEUES", ["default", "emails"]),
    ("QUEUES", {"a:b": {}}),
    ("QUEUES", {"{emails}": {}}),
    ("QUEUES", {"": {}}),
    ("QUEUES", {3: {}}),
    ("QUEUES", {"emails": {"ATTEMPTS": 3}}),
    ("QUEUES", {"emails": {"DEFAULT_ATTEMPTS": 0}}),
    ("QUEUES", {"emails": {"PRIORITY": "high"}}),
    ("QUEUES", {"emails": {"KEEP_FAILED": {"AGE": -1}}}),
    ("QUEUES", {"emails": ["DEFAULT_ATTEMPTS", 3]}),
]


@pytest.mark.parametrize(("key", "value"), INVALID, ids=[f"{k}={v!r}" for k, v in INVALID])
def test_an_invalid_value_raises_a_configuration_error_naming_the_setting(key, value):
    with override_settings(DJANGO_JOBS={key: value}):
        with pytest.raises(ConfigurationError, match=re.escape(f"DJANGO_JOBS[{key!r}]")) as info:
            get_settings()
    assert isinstance(info.value, ImproperlyConfigured)
    assert not isinstance(info.value, (ValueError, TypeError))
    assert isinstance(info.value, SettingError) and info.value.setting == key
    assert info.value.hint, "every error says how to fix it"


def test_the_message_shows_the_bad_value_and_the_default_as_an_example():
    with pytest.raises(ConfigurationError) as info:
        build_settings({"LEASE_SECONDS": "soon"})
    assert str(info.value) == (
        "DJANGO_JOBS['LEASE_SECONDS'] is 'soon'; it must be a number of seconds > 0. Use e.g. 10.0 (the default)."
    )


def test_a_queue_option_error_names_the_queue_and_the_option():
    with pytest.raises(ConfigurationError) as info:
        build_settings({"QUEUES": {"emails": {"DEFAULT_ATTEMPTS": 0}}})
    assert "DJANGO_JOBS['QUEUES']['emails']['DEFAULT_ATTEMPTS'] is 0" in str(info.value)


def test_active_events_is_a_per_queue_bool_on_by_default_and_a_shard_follows_its_queue():
    settings = settings_for(QUEUES={"bulk": {"ACTIVE_EVENTS": False}, "hot": {"ACTIVE_EVENTS": True}})
    assert (settings.active_events("default"), settings.active_events("hot")) == (True, True)
    assert (settings.active_events("bulk"), settings.active_events("bulk#3")) == (False, False)
    with pytest.raises(ConfigurationError, match=re.escape("['bulk']['ACTIVE_EVENTS'] is 'no'; it must be True or False")):
        build_settings({"QUEUES": {"bulk": {"ACTIVE_EVENTS": "no"}}})


def test_a_misspelt_queue_option_suggests_the_right_one():
    with pytest.raises(ConfigurationError, match="Did you mean 'DEFAULT_TIMEOUT'"):
        build_settings({"QUEUES": {"emails": {"DEFAULT_TIMOUT": 5}}})


def test_a_string_instead_of_a_module_list_suggests_wrapping_it():
    with pytest.raises(ConfigurationError, match=re.escape("Use ['myapp.jobs'].")):
        build_settings({"IMPORT_MODULES": "myapp.jobs"})


def test_a_django_jobs_setting_that_is_not_a_dict_is_a_configuration_error():
    with override_settings(DJANGO_JOBS=[("REDIS_URL", "redis://localhost")]):
        with pytest.raises(ConfigurationError, match="DJANGO_JOBS is list .* it must be a dict"):
            get_settings()


def test_redis_url_and_cache_alias_together_are_ambiguous():
    with override_settings(DJANGO_JOBS={"REDIS_URL": "redis://localhost:6379/0", "CACHE_ALIAS": "default"}):
        with pytest.raises(ConfigurationError, match="are both set") as info:
            get_settings()
    assert info.value.hint == "Set only one of them."


def test_a_bad_value_is_not_cached_so_fixing_it_takes_effect():
    with override_settings(DJANGO_JOBS={"LEASE_SECONDS": -1}):
        with pytest.raises(ConfigurationError):
            get_settings()
    with override_settings(DJANGO_JOBS={"LEASE_SECONDS": 3}):
        assert get_settings().lease_seconds == 3.0


def test_lean_job_hash_is_off_unless_set_to_true_and_refuses_anything_but_a_bool():
    assert settings_for().lean_job_hash is False
    assert settings_for(LEAN_JOB_HASH=True).lean_job_hash is True
    assert settings_for(LEAN_JOB_HASH=False).lean_job_hash is False
    with pytest.raises(ConfigurationError, match=re.escape("DJANGO_JOBS['LEAN_JOB_HASH']")) as info:
        settings_for(LEAN_JOB_HASH="yes")
    assert "0.1.0" in str(info.value)
