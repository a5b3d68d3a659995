"""The sample app's tests written as Django TestCases with JobsTestMixin."""

from __future__ import annotations

import pytest
from django.test import TestCase

from django_jobs.conf import get_settings
from django_jobs.testing import JobsTestMixin
from tests.sampleapp import services
from tests.sampleapp.jobs import outbox, remind_to_verify, send_welcome


@pytest.mark.db
class SignupInImmediateModeTests(JobsTestMixin, TestCase):
    jobs_mode = "immediate"

    def setUp(self) -> None:
        super().setUp()
        outbox.clear()

    def test_the_welcome_mail_goes_out_when_the_on_commit_callbacks_run(self) -> None:
        with self.captureOnCommitCallbacks(execute=True) as callbacks:
            user, welcome = services.sign_up("eve")
            self.assertEqual(outbox, [])
        self.assertEqual(len(callbacks), 1)
        self.assertEqual(welcome.state, "completed")
        # The job ran in the test's thread, so it read the user this TestCase has not committed.
        self.assertEqual(outbox, ["Welcome, eve!"])

    def test_without_running_the_callbacks_nothing_is_sent(self) -> None:
        with self.captureOnCommitCallbacks(execute=False):
            services.sign_up("fay")
        self.assertEqual(outbox, [])

    def test_each_test_has_its_own_key_prefix(self) -> None:
        self.assertEqual(get_settings().prefix, self.jobs_prefix)


@pytest.mark.db
class SignupInCaptureModeTests(JobsTestMixin, TestCase):
    jobs_mode = "capture"

    def setUp(self) -> None:
        super().setUp()
        outbox.clear()

    def test_signup_enqueues_the_welcome_mail_and_a_reminder_for_tomorrow(self) -> None:
        with self.captureOnCommitCallbacks(execute=True):
            user, welcome = services.sign_up("gus")

        self.jobs.assert_enqueued(send_welcome, [user.pk], queue="high")
        self.jobs.assert_enqueued(remind_to_verify, [user.pk], queue="low", delay=services.DAY)
        self.assertEqual(outbox, [])
        self.assertEqual(self.jobs.run_until_empty(), 2)
        self.assertEqual(outbox, ["Welcome, gus!"])
