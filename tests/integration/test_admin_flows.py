"""The admin with flow control and flows: queue limits, the flow tree of a job, progress.

Through Django's test client against the real test Redis; rows come from the real mirror.
"""

from __future__ import annotations

import re

import pytest
from django.test import Client, override_settings
from django.urls import reverse

from django_jobs.engine import get_engine
from django_jobs.flows import Flow
from django_jobs.limits import Rate, set_queue_limits
from django_jobs.mirror import mirror_once
from django_jobs.testing import work_until_empty
from tests.integration.test_admin import change_url, messages_of, staff, url
from tests.testapp import jobs_flows as jf
from tests.testapp import jobs_limits
from tests.testapp.jobs import add

pytestmark = [pytest.mark.db, pytest.mark.django_db]

QUEUES = ["default", "high", "low"]


def queues_page(client: Client):
    return client.get(url("django_jobs_queues"))


def limits_row(response, queue: str = "default"):
    return next(q for q in response.context["rows"] if q["name"] == queue)["limits"]


def set_limits(client: Client, queue: str = "default", rate: str = "", concurrency: str = ""):
    return client.post(url("django_jobs_queues"), {"queue": queue, "op": "limits", "rate": rate, "concurrency": concurrency}, follow=True)


# -- queue limits -------------------------------------------------------------------------------


def test_the_queues_page_shows_and_changes_the_limits_in_force(admin_client, engine):
    response = queues_page(admin_client)
    page = response.content.decode()
    assert (limits_row(response).rate, limits_row(response).concurrency, limits_row(response).overridden) == (None, None, False)
    assert "no rate limit" in page and "no concurrency limit" in page and "(settings)" in page
    assert "Set limits</button>" in page and "Reset to settings" not in page
    # One count per column: the header and the cells list the same states.
    header = re.search(r"<thead>(.*?)</thead>", page, re.DOTALL).group(1)
    row = re.search(r'<tr data-queue="default">(.*?)</tr>', page, re.DOTALL).group(1)
    assert header.count("<th>") - 4 == row.count("djj-count ") == 7

    response = set_limits(admin_client, rate="100/m", concurrency="3")
    assert engine.queue_limits("default") == (Rate(100, 60_000), 3, True)
    assert messages_of(response) == ["Queue 'default' now has at most 100/m starts, at most 3 running, on every worker, until the limits are reset to the settings."]
    page = queues_page(admin_client).content.decode()
    row = re.search(r'<tr data-queue="default">(.*?)</tr>', page, re.DOTALL).group(1)
    assert "100/m" in row and "3 at once" in row and "(set at run time)" in row and "Reset to settings</button>" in row
    assert 'name="rate" value="100/m"' in row and 'name="concurrency" value="3"' in row
    assert engine.queue_limits("high") == (None, None, False)  # other queues untouched

    set_limits(admin_client, rate=" 5 / 10s ", concurrency="")  # empty: no concurrency limit
    assert engine.queue_limits("default") == (Rate(5, 10_000), None, True)
    set_limits(admin_client, rate="", concurrency="")  # both lifted, still an override
    assert engine.queue_limits("default") == (None, None, True)

    response = admin_client.post(url("django_jobs_queues"), {"queue": "default", "op": "reset-limits"}, follow=True)
    assert engine.queue_limits("default") == (None, None, False)
    assert messages_of(response) == ["Queue 'default' uses the limits of its settings again: no rate limit, no concurrency limit."]


def test_a_limit_set_in_the_admin_holds_for_the_workers(admin_client, engine):
    set_limits(admin_client, rate="2/s")
    results = add.enqueue_many([(i, i) for i in range(3)])
    work_until_empty()
    starts = sorted(int(engine.get_job("default", r.id)["st"]) for r in results)
    assert starts[2] - starts[0] >= 1000  # the third start waited for the window


def test_the_settings_limits_show_and_reset_goes_back_to_them(django_user_model, jobs_settings):
    queues = {"default": {"RATE_LIMIT": "10/s", "CONCURRENCY": 2}, "high": {}, "low": {}}
    with override_settings(DJANGO_JOBS={**jobs_settings, "QUEUES": queues}):
        client = staff(django_user_model, "view_jobrecord", "manage_queues")
        page = queues_page(client)
        limits = limits_row(page)
        assert (limits.rate, limits.concurrency, limits.overridden) == ("10/s", 2, False)
        assert 'name="rate" value="10/s"' in page.content.decode()
        set_limits(client, rate="1/h", concurrency="9")
        assert get_engine().queue_limits("default") == (Rate(1, 3_600_000), 9, True)
        response = client.post(url("django_jobs_queues"), {"queue": "default", "op": "reset-limits"}, follow=True)
        assert get_engine().queue_limits("default") == (Rate(10, 1000), 2, False)
        assert "at most 10/s starts, at most 2 running" in messages_of(response)[0]


@pytest.mark.parametrize(
    ("rate", "concurrency", "message"),
    [
        ("ten/s", "", "Rate 'ten/s' is not valid. Write it as 'N/s', 'N/m' or 'N/h'"),
        ("0/s", "", "Rate '0/s' is not valid: N must be 1..1,000,000"),
        ("100/d", "", "Rate '100/d' is not valid."),
        ("", "abc", "Concurrency 'abc' of queue 'default' is not valid: use a whole number of at least 1"),
        ("", "0", "Concurrency 0 is not valid: use a whole number of at least 1"),
        ("", "-2", "Concurrency -2 is not valid"),
        ("", "1.5", "Concurrency '1.5' of queue 'default' is not valid"),
    ],
)
def test_bad_limits_are_refused_with_a_message_and_change_nothing(admin_client, engine, rate, concurrency, message):
    set_queue_limits("default", rate="7/m", concurrency=4)
    response = set_limits(admin_client, rate=rate, concurrency=concurrency)
    assert response.status_code == 200
    [text] = messages_of(response)
    assert message in text and text.endswith("Nothing was changed.")
    assert engine.queue_limits("default") == (Rate(7, 60_000), 4, True)


def test_limits_of_an_unknown_queue_are_refused(admin_client, engine):
    response = set_limits(admin_client, queue="nope", rate="1/s")
    assert messages_of(response) == ["Unknown queue 'nope'."]
    response = admin_client.post(url("django_jobs_queues"), {"queue": "nope", "op": "reset-limits"}, follow=True)
    assert messages_of(response) == ["Unknown queue 'nope'."]


def test_changing_limits_needs_the_manage_queues_permission_and_a_csrf_token(django_user_model, engine):
    viewer = staff(django_user_model, "view_jobrecord")
    page = queues_page(viewer).content.decode()
    assert "no rate limit" in page and "Set limits" not in page and 'name="rate"' not in page
    assert viewer.post(url("django_jobs_queues"), {"queue": "default", "op": "limits", "rate": "1/s"}).status_code == 403
    set_queue_limits("default", concurrency=2)
    assert viewer.post(url("django_jobs_queues"), {"queue": "default", "op": "reset-limits"}).status_code == 403
    assert engine.queue_limits("default") == (None, 2, True)

    user = django_user_model.objects.create_superuser("root", password="pw")
    strict = Client(enforce_csrf_checks=True)
    strict.force_login(user)
    assert strict.post(url("django_jobs_queues"), {"queue": "default", "op": "limits", "rate": "1/s"}).status_code == 403
    assert engine.queue_limits("default") == (None, 2, True)


# -- the flow of a job ----------------------------------------------------------------------------


def flow_items(page: str) -> list[tuple[str, int, str]]:
    """Return ``(job id, depth, state)`` of each job of the flow section, in page order."""
    section = re.search(r'<section class="djj-box djj-wide" id="djj-flow">(.*?)</section>', page, re.DOTALL).group(1)
    return [
        (m.group(1), int(m.group(2)), m.group(3))
        for m in re.finditer(r'<li data-job="(\w+)" data-depth="(\d+)".*?<span class="djj-state djj-\w+">(\w+)</span>', section)
    ]


def test_the_detail_page_shows_the_flow_tree_with_live_states_and_links(admin_client, engine):
    inner = Flow(jf.gather.s("inner"), children=[jf.value.s(2)])
    handle = Flow(jf.gather.s("outer"), children=[jf.value.s(1), inner, jf.value.s(3).on_failure("ignore")]).enqueue()
    one, inner_handle, three = handle.children
    two = inner_handle.children[0]
    mirror_once()

    page = admin_client.get(change_url(two.id)).content.decode()  # any job of the flow shows all of it
    assert flow_items(page) == [
        (handle.id, 0, "waiting_children"),
        (one.id, 1, "waiting"),
        (inner_handle.id, 1, "waiting_children"),
        (two.id, 2, "waiting"),
        (three.id, 1, "waiting"),
    ]
    for job_id in (handle.id, one.id, inner_handle.id, two.id, three.id):
        assert f'<a href="{change_url(job_id)}">' in page
    assert "on failure: ignore" in page
    assert re.search(rf'<li data-job="{two.id}"[^>]* class="djj-here">', page)
    assert page.count("&larr; this job") == 1

    work_until_empty(QUEUES)
    mirror_once()
    page = admin_client.get(change_url(handle.id)).content.decode()
    assert [state for _id, _depth, state in flow_items(page)] == ["completed"] * 5
    assert re.search(rf'<li data-job="{handle.id}"[^>]* class="djj-here">', page)


def test_a_job_outside_flows_shows_no_flow(admin_client):
    job_id = add.enqueue(1, 2).id
    work_until_empty()
    mirror_once()
    page = admin_client.get(change_url(job_id)).content.decode()
    assert 'id="djj-flow"' not in page


def test_a_flow_partly_or_wholly_gone_from_redis_is_shown_as_far_as_it_is_known(admin_client, engine):
    handle = Flow(jf.gather.s("p"), children=[jf.value.s(1), jf.value.s(2)]).enqueue()
    one, two = handle.children
    work_until_empty(QUEUES)
    mirror_once()

    # A child trimmed from Redis: the tree shows it as deleted.
    assert engine.delete_jobs("default", [two.id]) == [1]
    page = admin_client.get(change_url(handle.id)).content.decode()
    assert flow_items(page) == [(handle.id, 0, "completed"), (one.id, 1, "completed"), (two.id, 1, "deleted")]

    # The parent gone: a child's page shows the flow from the child down, and says why.
    assert engine.delete_jobs("default", [handle.id]) == [1]
    page = admin_client.get(change_url(one.id)).content.decode()
    assert flow_items(page) == [(one.id, 0, "completed")]
    assert f"Its parent {handle.id} is no longer in Redis" in page

    # The job itself gone (its row not dropped yet by the mirror): a note, no error.
    assert engine.delete_jobs("default", [one.id]) == [1]
    response = admin_client.get(change_url(one.id))
    assert response.status_code == 200
    assert "This job is no longer in Redis, so its flow cannot be shown" in response.content.decode()


# -- progress -------------------------------------------------------------------------------------


def test_progress_shows_in_the_list_and_on_the_detail_page_live_from_redis(admin_client):
    job_id = jobs_limits.report.enqueue({"done": 40, "total": 100}).id
    mirror_once()  # the row exists, without progress
    work_until_empty()  # the job reports progress; not mirrored yet

    page = admin_client.get(change_url(job_id)).content.decode()
    assert re.search(r'id="djj-progress">-', page)
    live = re.search(r'id="djj-live-progress">(.*?)</td>', page).group(1)
    assert '<progress value="40" max="100"></progress> 40 / 100 (40%)' in live

    mirror_once()
    page = admin_client.get(change_url(job_id)).content.decode()
    assert re.search(r'id="djj-progress"><span class="djj-progress"><progress value="40" max="100"></progress> 40 / 100 \(40%\)', page)
    listing = admin_client.get(reverse("admin:django_jobs_jobrecord_changelist")).content.decode()
    assert "40 / 100 (40%)" in listing


def test_other_progress_values_show_as_json_with_secrets_redacted(admin_client):
    ids = [
        jobs_limits.report.enqueue("step <b>3</b>").id,
        jobs_limits.report.enqueue({"stage": "upload", "token": "s3cret"}).id,
        jobs_limits.report.enqueue({"done": 5, "total": 0}).id,
    ]
    work_until_empty()
    mirror_once()
    pages = [admin_client.get(change_url(i)).content.decode() for i in ids]
    assert "&quot;step &lt;b&gt;3&lt;/b&gt;&quot;" in pages[0] and "<b>3</b>" not in pages[0]
    assert "s3cret" not in pages[1] and "[redacted]" in pages[1] and "upload" in pages[1]
    assert "{&quot;done&quot;: 5, &quot;total&quot;: 0}" in pages[2]
