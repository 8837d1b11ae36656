"""The Notification admin: read-only, owners see their routes' notifications, Deliver again."""

from datetime import timedelta

import pytest
from django.contrib.contenttypes.models import ContentType
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from signals_app.models import Incident, Notification
from tests.builders import give_role, make_route, make_threshold, make_user

CHANGELIST = reverse("admin:signals_app_notification_changelist")


@pytest.fixture
def alice_owner(alice, blog_team):
    return give_role(alice)


@pytest.fixture
def root(db):
    return make_user("root", is_staff=True, is_superuser=True)


@pytest.fixture
def blog_route(blog):
    return make_route(blog, "/posts/{slug}")


@pytest.fixture
def search_route(search):
    return make_route(search, "/search")


def make_notification(route, status="pending", **fields):
    incident = Incident.objects.create(
        threshold=make_threshold(route, window_minutes=Notification.objects.count() + 1),
        route=route,
        level="warn",
        peak_value=500.0,
    )
    values = {"event": "opened", "payload": {"owner": route.owner.name}, "status": status}
    return Notification.objects.create(incident=incident, owner=route.owner, **{**values, **fields})


def listed(client, **params):
    response = client.get(CHANGELIST, params)
    assert response.status_code == 200
    return {n.pk for n in response.context["cl"].result_list}


def count_queries(client, url):
    ContentType.objects.clear_cache()  # the same count whichever test ran before
    with CaptureQueriesContext(connection) as queries:
        response = client.get(url)
    assert response.status_code == 200, url
    return len(queries.captured_queries)


def deliver_again(client, *notifications):
    return client.post(
        CHANGELIST,
        {"action": "deliver_again", "_selected_action": [n.pk for n in notifications]},
        follow=True,
    )


@pytest.mark.django_db
def test_an_owner_lists_only_the_notifications_of_routes_they_own(
    client, alice_owner, blog_route, search_route
):
    own = make_notification(blog_route)
    make_notification(search_route)
    client.force_login(alice_owner)
    assert listed(client) == {own.pk}


@pytest.mark.django_db
def test_a_route_moved_to_another_team_leaves_its_notifications_with_the_first(
    client, alice_owner, blog_route, search
):
    earlier = make_notification(blog_route)
    blog_route.owner = search.owner
    blog_route.save()
    client.force_login(alice_owner)
    assert listed(client) == {earlier.pk}  # sent to the Blog team's webhook: theirs to see
    dana = give_role(make_user("dana-moved", is_staff=True))
    search.owner.members.add(dana)
    client.force_login(dana)
    assert listed(client) == set()


@pytest.mark.django_db
def test_a_superuser_lists_every_notification(client, root, blog_route, search_route):
    made = {make_notification(blog_route).pk, make_notification(search_route).pk}
    client.force_login(root)
    assert listed(client) == made


@pytest.mark.django_db
def test_it_filters_by_status_and_event(client, root, blog_route):
    failed = make_notification(blog_route, "failed", event="resolved")
    make_notification(blog_route, "failed", event="opened")
    make_notification(blog_route, "delivered", event="resolved")
    client.force_login(root)
    assert listed(client, status="failed", event="resolved") == {failed.pk}


@pytest.mark.django_db
def test_someone_outside_the_owners_group_cannot_open_it(client, mallory, blog_route):
    make_notification(blog_route)
    client.force_login(mallory)
    assert client.get(CHANGELIST).status_code == 403


@pytest.mark.django_db
@pytest.mark.parametrize("who", ["owner", "root"])
def test_the_changelist_costs_the_same_queries_for_many_rows(
    client, alice_owner, root, blog_route, who
):
    client.force_login(alice_owner if who == "owner" else root)
    make_notification(blog_route, last_error="HTTP 500 (expected 2xx): " + "x" * 200)
    few = count_queries(client, CHANGELIST)
    for status in ("pending", "delivered", "failed", "skipped") * 3:
        make_notification(make_route(blog_route.service), status)
    assert count_queries(client, CHANGELIST) == few
    # session, user, (an owner's user and group permissions,) count, count of all, page of
    # rows with owner, incident, route and service
    assert few == {"owner": 7, "root": 5}[who]


@pytest.mark.django_db
def test_the_notification_page_is_read_only_and_shows_the_body_sent(
    client, alice_owner, blog_route
):
    notification = make_notification(blog_route)
    client.force_login(alice_owner)
    url = reverse("admin:signals_app_notification_change", args=[notification.pk])
    response = client.get(url)
    assert response.status_code == 200
    page = response.content.decode()
    assert "&quot;event&quot;: &quot;incident.opened&quot;" in page
    assert f"&quot;delivery&quot;: {notification.pk}" in page
    assert 'name="_save"' not in page
    assert client.post(url, {"status": "delivered"}).status_code == 403
    assert Notification.objects.get().status == "pending"


@pytest.mark.django_db
def test_another_teams_notification_page_is_not_found_for_an_owner(
    client, alice_owner, search_route
):
    notification = make_notification(search_route)
    client.force_login(alice_owner)
    url = reverse("admin:signals_app_notification_change", args=[notification.pk])
    assert client.get(url, follow=True).redirect_chain[-1][0] == reverse("admin:index")


@pytest.mark.django_db
def test_deliver_again_puts_failed_and_skipped_ones_back_in_the_queue(
    client, alice_owner, blog_route
):
    long_ago = timezone.now() - timedelta(days=2)
    failed = make_notification(
        blog_route, "failed", attempts=8, next_attempt_at=long_ago, last_error="HTTP 410"
    )
    skipped = make_notification(blog_route, "skipped", attempts=1, next_attempt_at=long_ago)
    delivered = make_notification(blog_route, "delivered", attempts=1, delivered_at=long_ago)
    client.force_login(alice_owner)
    before = timezone.now()
    response = deliver_again(client, failed, skipped, delivered)
    assert "2 notification(s) will be delivered again. 1 left alone: only failed or skipped" in (
        response.content.decode()
    )
    for notification in (failed, skipped):
        notification.refresh_from_db()
        assert (notification.status, notification.attempts) == ("pending", 0)
        assert notification.next_attempt_at >= before
        assert notification.last_error == ""  # as if new: an old error no longer applies
    delivered.refresh_from_db()
    assert (delivered.status, delivered.delivered_at) == ("delivered", long_ago)


@pytest.mark.django_db
def test_an_owner_cannot_deliver_another_teams_notification_again(
    client, alice_owner, search_route
):
    failed = make_notification(search_route, "failed", attempts=8)
    client.force_login(alice_owner)
    deliver_again(client, failed)
    failed.refresh_from_db()
    assert (failed.status, failed.attempts) == ("failed", 8)


@pytest.mark.django_db
def test_a_viewer_without_change_permission_has_no_deliver_again(client, blog_route, alice):
    from django.contrib.auth.models import Permission

    alice.user_permissions.add(Permission.objects.get(codename="view_notification"))
    blog_route.owner.members.add(alice)
    failed = make_notification(blog_route, "failed", attempts=8)
    client.force_login(alice)
    assert "deliver_again" not in client.get(CHANGELIST).content.decode()
    deliver_again(client, failed)
    failed.refresh_from_db()
    assert failed.status == "failed"


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("url", "saved"),
    [("https://hooks.example.com/dq", True), ("ftp://files.example.com/hooks", False)],
)
def test_an_owners_webhook_url_must_be_http(client, root, blog_route, url, saved):
    # Delivery can only POST over HTTP(S): an ftp:// URL failed when an incident opened.
    owner = blog_route.owner
    client.force_login(root)
    change = reverse("admin:signals_app_owner_change", args=[owner.pk])
    data = {"name": owner.name, "contact_email": "", "webhook_url": url, "members": []}
    response = client.post(change, data)
    owner.refresh_from_db()
    assert (owner.webhook_url == url) is saved
    assert response.status_code == (302 if saved else 200)
