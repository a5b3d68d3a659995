"""The sample app's tests written with the pytest fixtures of django_jobs.pytest_plugin."""

from __future__ import annotations

import pytest
from django.db import transaction

from django_jobs.compat import TaskResultDoesNotExist
from django_jobs.engine import get_engine
from django_jobs.testing import immediate
from tests.sampleapp import services
from tests.sampleapp.jobs import (
    count_words,
    import_contacts,
    outbox,
    remind_to_verify,
    send_welcome,
    summarize,
    sync_to_crm,
)

pytestmark = [pytest.mark.db, pytest.mark.django_db(transaction=True)]


@pytest.fixture(autouse=True)
def empty_outbox():
    outbox.clear()


def test_signup_sends_the_welcome_mail_as_soon_as_the_user_is_committed(jobs_immediate):
    user, welcome = services.sign_up("ada")

    assert welcome.state == "completed"
    assert welcome.return_value == "Welcome, ada!"
    assert outbox == ["Welcome, ada!"]


def test_a_rolled_back_signup_never_sends_the_welcome_mail(jobs_immediate):
    with pytest.raises(ValueError):
        services.sign_up("bob", fail_after_enqueue=True)

    assert outbox == []
    assert get_engine().counts("high") == dict.fromkeys(["waiting", "scheduled", "active", "completed", "failed", "cancelled", "waiting_children"], 0)


def test_an_on_commit_enqueue_waits_for_the_outer_transaction_in_immediate_mode(jobs_immediate):
    with transaction.atomic():
        user, welcome = services.sign_up("cyd")
        assert outbox == []  # still inside the outer transaction: not enqueued yet
        with pytest.raises(TaskResultDoesNotExist):
            send_welcome.get_result(welcome.id)
    assert outbox == ["Welcome, cyd!"]
    assert send_welcome.get_result(welcome.id).state == "completed"


def test_a_non_json_argument_fails_in_immediate_mode_exactly_as_in_production(jobs_isolated):
    with pytest.raises(TypeError) as in_production:
        services.export_since_yesterday()
    with immediate(), pytest.raises(TypeError) as in_immediate_mode:
        services.export_since_yesterday()

    assert str(in_immediate_mode.value) == str(in_production.value)
    assert "not JSON serializable (datetime)" in str(in_production.value)
    assert get_engine().counts("default")["waiting"] == 0


def test_a_non_json_return_value_fails_the_job_in_immediate_mode_as_on_a_worker(jobs_isolated, jobs_worker):
    on_worker = summarize.enqueue([1, 2])
    jobs_worker(queues=["default"], threads=1)
    on_worker.refresh()
    with immediate():
        immediately = summarize.enqueue([1, 2])

    for result in (on_worker, immediately):
        assert result.state == "failed"
        assert [e.exception_class for e in result.errors] == [TypeError]
        assert "not JSON serializable" in result.errors[0].traceback


def test_retries_run_at_once_in_immediate_mode_with_the_same_attempts_and_errors(jobs_immediate):
    result = sync_to_crm.enqueue(7)  # backoff=60 s between attempts in production

    assert result.state == "completed"
    assert result.return_value == {"user_id": 7, "attempt": 3}
    assert result.attempts == 3
    assert [e.exception_class for e in result.errors] == [ConnectionError, ConnectionError]


def test_raise_failures_turns_a_failed_job_into_a_test_failure(jobs_isolated):
    with immediate(raise_failures=True), pytest.raises(AssertionError, match="not JSON serializable"):
        summarize.enqueue([3])


def test_async_jobs_run_in_immediate_mode(jobs_immediate):
    assert count_words.enqueue("one two three").return_value == 3


def test_the_capture_fixture_records_jobs_with_their_queue_and_delay(jobs_capture):
    user, welcome = services.sign_up("dee")

    jobs_capture.assert_enqueued(send_welcome, [user.pk], queue="high", count=1)
    reminder = jobs_capture.assert_enqueued(remind_to_verify, [user.pk], queue="low", delay=services.DAY)
    assert reminder.result.state == "scheduled"
    assert outbox == []

    assert jobs_capture.run_all() == 2
    assert outbox == ["Welcome, dee!"]
    assert remind_to_verify.get_result(reminder.id).return_value == f"reminder for user {user.pk}"


def test_run_until_empty_also_runs_the_jobs_that_captured_jobs_enqueue(jobs_capture):
    imported = import_contacts.enqueue([1, 2])

    assert jobs_capture.run_all() == 1
    assert [j.args for j in jobs_capture.pending()] == [[1], [2]]
    assert jobs_capture.run_until_empty() == 2
    assert jobs_capture.pending() == []
    children = jobs_capture.filter(sync_to_crm)
    assert [sync_to_crm.get_result(c.id).parent_id for c in children] == [imported.id, imported.id]
    assert all(c.result.state == "completed" for c in children)


def test_capture_assertions_say_what_was_enqueued_instead(jobs_capture):
    remind_to_verify.enqueue(5)

    with pytest.raises(AssertionError, match=r"remind_to_verify\(args=\[5\]"):
        jobs_capture.assert_enqueued(remind_to_verify, [6])
    with pytest.raises(AssertionError, match="Expected 2 enqueue"):
        jobs_capture.assert_enqueued(remind_to_verify, count=2)
    with pytest.raises(AssertionError, match="Expected no enqueue"):
        jobs_capture.assert_not_enqueued(remind_to_verify)
    jobs_capture.assert_not_enqueued(send_welcome)


def test_the_burst_worker_fixture_runs_jobs_on_the_real_worker(jobs_worker):
    result = remind_to_verify.enqueue(3)

    assert jobs_worker(queues=["low"], threads=1) == 1
    result.refresh()
    assert result.state == "completed"
    assert result.worker_ids and result.worker_ids[0] != "testing:immediate"
