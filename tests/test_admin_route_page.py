"""The route page is the one place: promise, status, charts, incidents, baselines, changes,
rollback notes."""

import re
from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from signals_app.models import Baseline, Change, Incident, RollbackNote
from tests.builders import environment, give_role, make_readings, make_route, make_threshold


@pytest.fixture
def route(blog):
    route = make_route(blog, "/posts/{slug}")
    route.expected_input = "slug of a published post"
    route.expected_result = "200 with the post HTML, cached 5 minutes"
    route.user_impact = "Readers see a spinner instead of the post."
    route.save()
    return route


@pytest.fixture
def page(client, alice, blog_team, route):
    give_role(alice)
    client.force_login(alice)

    def get():
        response = client.get(reverse("admin:signals_app_route_change", args=[route.pk]))
        assert response.status_code == 200
        return response.content.decode()

    return get


def post_action(client, route, name, *args, **data):
    return client.post(reverse(f"admin:signals_app_route_{name}", args=[route.pk, *args]), data)


@pytest.mark.django_db
def test_it_shows_what_the_route_promises_and_who_answers_for_it(page, route):
    html = page()
    assert "blog" in html
    assert "Blog team" in html
    assert "mailto:team@example.com" in html
    assert "slug of a published post" in html
    assert "200 with the post HTML, cached 5 minutes" in html
    assert "Readers see a spinner instead of the post." in html


@pytest.mark.django_db
def test_it_charts_the_last_24_hours_of_each_thresholds_signal(page, route):
    make_threshold(route, warn=300, critical=800)
    make_readings(route, [120.0] * 20, step=timedelta(minutes=15))
    make_readings(route, [12.0] * 20, cache_status="HIT", step=timedelta(minutes=15))
    html = page()
    assert html.count('<figure class="dq-chart"') == 1
    assert 'class="series hit"' in html
    assert 'class="series miss"' in html
    assert "critical 800 ms" in html


@pytest.mark.django_db
def test_a_reading_stored_near_the_largest_float_does_not_break_the_page(page, route):
    # Stored before values were bounded at 1e12: the chart's axis overflowed (log10(inf)).
    make_threshold(route, warn=300, critical=800)
    make_readings(route, [1.7e308, 120.0], step=timedelta(minutes=45))
    html = page()
    assert html.count('<figure class="dq-chart"') == 1


@pytest.mark.django_db
def test_readings_stored_beyond_1e12_do_not_break_a_mean_threshold_or_its_chart(page, route):
    # Their mean overflowed PostgreSQL's avg() in the status and in the chart.
    make_threshold(route, statistic="mean", warn=300, critical=800, min_samples=1)
    make_readings(route, [1.7e308] * 3)
    assert page().count('<figure class="dq-chart"') == 1


@pytest.mark.django_db
def test_it_lists_open_incidents_with_acknowledge_and_silence(page, route):
    threshold = make_threshold(route)
    Incident.objects.create(threshold=threshold, route=route, level="critical", peak_value=950)
    html = page()
    assert "peak 950 ms" in html
    assert ">Acknowledge<" in html
    assert ">Silence<" in html


@pytest.mark.django_db
def test_owner_acknowledges_an_incident(client, page, alice, route):
    page()
    threshold = make_threshold(route)
    incident = Incident.objects.create(
        threshold=threshold, route=route, level="warn", peak_value=420
    )
    response = post_action(client, route, "incident", incident.pk, "acknowledge", note="on it")
    assert response.status_code == 302
    incident.refresh_from_db()
    assert incident.acknowledged_by == alice
    assert incident.acknowledgement_note == "on it"
    assert incident.acknowledged_at is not None
    assert "Acknowledged by alice" in page()


@pytest.mark.django_db
def test_owner_silences_an_incident_for_hours_with_a_reason(client, page, alice, route):
    page()
    incident = Incident.objects.create(
        threshold=make_threshold(route), route=route, level="warn", peak_value=420
    )
    before = timezone.now()
    post_action(client, route, "incident", incident.pk, "silence", hours=4, reason="deploy")
    incident.refresh_from_db()
    assert incident.silenced_by == alice
    assert incident.silence_reason == "deploy"
    assert before + timedelta(hours=4) <= incident.silenced_until
    assert incident.silenced_until <= timezone.now() + timedelta(hours=4)


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("action", "data", "problem"),
    [
        ("acknowledge", {"note": "on\x00it"}, "Note: Null characters are not allowed."),
        ("acknowledge", {"note": "x" * 5001}, "Note: Ensure this value has at most 5000"),
        ("silence", {"hours": 4, "reason": "de\x00ploy"}, "Reason: Null characters"),
        ("silence", {"hours": 5, "reason": "deploy"}, "Hours: Select a valid choice."),
    ],
)
def test_an_incident_note_the_database_cannot_store_is_refused(
    client, page, route, action, data, problem
):
    # A NUL in the note or reason was a 500 on PostgreSQL (and stored on SQLite).
    page()
    incident = Incident.objects.create(
        threshold=make_threshold(route), route=route, level="warn", peak_value=420
    )
    response = post_action(client, route, "incident", incident.pk, action, **data)
    assert response.status_code == 302
    assert problem in page()  # the message, on the route page
    incident.refresh_from_db()
    assert (incident.acknowledged_at, incident.silenced_until) == (None, None)


@pytest.mark.django_db
def test_silence_needs_a_reason(client, page, route):
    page()
    incident = Incident.objects.create(
        threshold=make_threshold(route), route=route, level="warn", peak_value=420
    )
    response = post_action(client, route, "incident", incident.pk, "silence", hours=4, reason="")
    assert response.status_code == 302
    incident.refresh_from_db()
    assert incident.silenced_until is None


@pytest.mark.django_db
def test_outsider_cannot_acknowledge_another_owners_incident(client, mallory, search):
    give_role(mallory)
    theirs = make_route(search)
    incident = Incident.objects.create(
        threshold=make_threshold(theirs), route=theirs, level="warn", peak_value=420
    )
    client.force_login(mallory)
    response = post_action(client, theirs, "incident", incident.pk, "acknowledge", note="x")
    assert response.status_code == 403
    incident.refresh_from_db()
    assert incident.acknowledged_at is None


@pytest.mark.django_db
def test_incident_actions_answer_only_post(client, page, route):
    page()
    incident = Incident.objects.create(
        threshold=make_threshold(route), route=route, level="warn", peak_value=420
    )
    url = reverse("admin:signals_app_route_incident", args=[route.pk, incident.pk, "acknowledge"])
    assert client.get(url).status_code == 405


@pytest.mark.django_db
@pytest.mark.parametrize(
    "action", ["incidents/1/acknowledge/", "rollback-notes/1/rehearsed/"], ids=["ack", "rehearsal"]
)
def test_an_action_on_a_route_id_that_is_not_a_number_is_a_404(client, page, action):
    page()  # logged in as alice, an owner
    response = client.post(f"/admin/signals_app/route/not-a-number/{action}", {})
    assert response.status_code == 404  # was a 500: ValueError from the id lookup


@pytest.mark.django_db
def test_it_lists_active_baselines_only(page, route):
    threshold = make_threshold(route)
    now = timezone.now()
    fields = {
        "route": route,
        "signal": threshold.signal,
        "environment": threshold.environment,
        "window_start": now - timedelta(days=2),
        "window_end": now - timedelta(days=1),
    }
    Baseline.objects.create(**fields, p50=111, p95=222, note="before the ttl change")
    Baseline.objects.create(**fields, p50=999, p95=9999, active=False)
    html = page()
    assert "before the ttl change" in html
    assert ">222<" in html
    assert ">9999<" not in html


@pytest.mark.django_db
def test_it_lists_recent_changes(page, route):
    for hours in range(7):
        Change.objects.create(
            route=route,
            environment=environment(),
            variable=f"change {hours}",
            applied_at=timezone.now() - timedelta(hours=hours),
        )
    section = page().split('<section id="changes">')[1].split("</section>")[0]
    listed = re.findall(r">(change \d)</a>", section)
    assert listed == ["change 0", "change 1", "change 2", "change 3", "change 4"]


@pytest.mark.django_db
def test_owner_records_a_rehearsal_from_the_route_page(client, page, alice, route):
    note = RollbackNote.objects.create(route=route, steps="redeploy 1.7.8")
    assert "never rehearsed" in page()
    response = post_action(client, route, "rehearsal", note.pk, outcome="passed")
    assert response.status_code == 302
    note.refresh_from_db()
    assert (note.rehearsed_by, note.rehearsal_outcome) == (alice, "passed")
    assert "by alice" in page()


@pytest.mark.django_db
def test_a_rehearsal_outcome_must_be_passed_or_failed(client, page, route):
    page()
    note = RollbackNote.objects.create(route=route, steps="redeploy 1.7.8")
    post_action(client, route, "rehearsal", note.pk, outcome="maybe")
    note.refresh_from_db()
    assert note.rehearsed_at is None


@pytest.mark.django_db
def test_it_shows_the_current_status_per_threshold_with_value_and_level(page, route):
    make_threshold(route, warn=300, critical=800, min_samples=5)
    make_threshold(route, statistic="p50", warn=300, critical=800, min_samples=50)
    make_readings(route, [900.0] * 10, step=timedelta(seconds=20))
    html = page()
    status = html.split('<section id="status">')[1].split("</section>")[0]
    assert "900 ms" in status
    assert '<span class="dq-badge dq-critical">' in status
    assert '<span class="dq-badge dq-no_data">' in status  # 10 of 50 samples
    assert "of 50" in status
    assert 'id="route-status">Critical<' in html


def make_regression(route, *, applied_minutes_ago=90):
    """30 MISS readings at 100 ms in the hour before a change, 30 at 300 ms after it."""
    applied = timezone.now() - timedelta(minutes=applied_minutes_ago)
    make_readings(
        route, [100.0] * 30, start=applied - timedelta(seconds=30), step=timedelta(minutes=1)
    )
    make_readings(
        route, [300.0] * 30, start=applied + timedelta(minutes=59), step=timedelta(minutes=1)
    )
    return Change.objects.create(
        route=route, environment=environment(), variable="drop the index", applied_at=applied
    )


@pytest.mark.django_db
def test_recent_changes_carry_their_verdicts(page, route):
    make_regression(route)
    section = page().split('<section id="changes">')[1].split("</section>")[0]
    assert '<span class="dq-verdict-regressed">regressed</span>' in section


@pytest.mark.django_db
def test_change_page_compares_before_and_after_with_a_chart(client, page, route):
    page()  # logs alice in
    change = make_regression(route)
    response = client.get(reverse("admin:signals_app_change_change", args=[change.pk]))
    html = response.content.decode()
    assert 'id="verdict">regressed<' in html
    assert "p95 +200.0 %" in html
    assert html.count('<figure class="dq-chart"') == 1
    assert "change applied" in html
    assert 'class="series miss"' in html


@pytest.mark.django_db
@pytest.mark.parametrize(
    "asked, shown, warned",
    [("30", 30, False), ("5", 15, True), ("500", 240, True), ("abc", 60, True), ("", 60, True)],
)
def test_change_page_minutes_stay_within_15_to_240_and_say_so(
    client, page, route, asked, shown, warned
):
    page()  # logs alice in
    change = make_regression(route)
    url = reverse("admin:signals_app_change_change", args=[change.pk])
    response = client.get(url, {"minutes": asked})
    assert response.status_code == 200
    assert response.context["minutes"] == shown
    html = response.content.decode()
    assert f"Before vs after ({shown} minutes each side)" in html
    message = f"?minutes={asked} is not a whole number from 15 to 240: showing {shown} minutes"
    assert (message in html) is warned


@pytest.mark.django_db
def test_inline_selects_keep_the_saved_choice(page, route):
    threshold = make_threshold(route, statistic="p99", cache_segment="miss")
    html = page()
    row = html.split('name="thresholds-0-signal"')[1].split("</select>")[0]
    assert f'<option value="{threshold.signal_id}" selected>response_time_ms</option>' in row
    statistic = html.split('name="thresholds-0-statistic"')[1].split("</select>")[0]
    assert '<option value="p99" selected>' in statistic
    segment = html.split('name="thresholds-0-cache_segment"')[1].split("</select>")[0]
    assert '<option value="miss" selected>' in segment


@pytest.mark.django_db
def test_a_change_stored_in_year_1_does_not_break_the_route_or_change_page(client, page, route):
    # Stored before applied_at was bounded: applied_at - 60 minutes overflowed on both pages.
    from datetime import UTC, datetime

    page()  # logs alice in
    change = Change.objects.create(
        route=route, environment=environment(), variable="epoch",
        applied_at=datetime(1, 1, 1, tzinfo=UTC),
    )  # fmt: skip
    assert "too early for a window" in page()
    response = client.get(reverse("admin:signals_app_change_change", args=[change.pk]))
    assert response.status_code == 200


@pytest.mark.django_db
def test_the_change_form_refuses_an_applied_at_before_2000(client, page, route):
    page()  # logs alice in
    response = client.post(
        reverse("admin:signals_app_change_add"),
        {
            "route": route.pk, "environment": environment().pk, "variable": "TTL",
            "applied_at_0": "0001-01-01", "applied_at_1": "00:00:00",
        },
    )  # fmt: skip
    assert response.status_code == 200
    (error,) = response.context["adminform"].form.errors["applied_at"]
    assert "must be from 2000-01-01 to 2100-01-01" in error
    assert not Change.objects.exists()
