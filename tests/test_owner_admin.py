"""A team's members set its webhook URL and contact email, and generate its signing secret,
in the admin; its name and members, and every other team, stay as they are."""

import re

import pytest
from django.contrib.contenttypes.models import ContentType
from django.contrib.messages import get_messages

from signals_app.models import Owner
from tests.builders import give_role, make_user, owner_form, owner_page


@pytest.fixture
def alice_owner(alice, blog_team):
    return give_role(alice)


def generate(client, *owners):
    return client.post(
        "/admin/signals_app/owner/",
        {"action": "generate_signing_secret", "_selected_action": [o.pk for o in owners]},
        follow=True,
    )


def shown_secrets(response):
    return re.findall(r'<code class="signing-secret">([^<]+)</code>', response.content.decode())


def messages_of(response):
    return [str(message) for message in get_messages(response.wsgi_request)]


@pytest.mark.django_db
def test_a_member_sets_the_webhook_url_and_contact_email_of_their_team(
    client, alice_owner, blog_team, mallory, django_assert_num_queries
):
    client.force_login(alice_owner)
    form = owner_form(
        blog_team,
        webhook_url="https://hooks.example.com/blog",
        contact_email="oncall@example.com",
        name="Renamed",  # read-only for a member: ignored
        members=[mallory.pk],  # likewise
    )
    ContentType.objects.clear_cache()  # the same count whichever test ran before
    # session, user, savepoint, the owner, perms ×2, member teams, UPDATE of the three
    # editable fields (no unique check of the name: read-only), admin log (content type,
    # insert), savepoint release
    with django_assert_num_queries(11) as queries:
        response = client.post(owner_page(blog_team), form)
    assert response.status_code == 302
    # Only the action writes the secret: a save racing it must not put the old one back.
    (update,) = [q["sql"] for q in queries.captured_queries if q["sql"].startswith("UPDATE")]
    assert "signing_secret" not in update
    team = Owner.objects.get(pk=blog_team.pk)
    assert (team.name, team.webhook_url, team.contact_email) == (
        "Blog team",
        "https://hooks.example.com/blog",
        "oncall@example.com",
    )
    assert set(team.members.values_list("username", flat=True)) == {"alice", "bob"}


@pytest.mark.django_db
def test_a_members_team_page_offers_only_the_webhook_url_and_contact_email(
    client, alice_owner, blog_team, django_assert_num_queries
):
    client.force_login(alice_owner)
    ContentType.objects.clear_cache()
    # session, user, the owner, perms ×2, member teams, content type, members (the read-only
    # list)
    with django_assert_num_queries(8):
        response = client.get(owner_page(blog_team))
    assert response.status_code == 200
    page = response.content.decode()
    assert 'name="webhook_url"' in page and 'name="contact_email"' in page
    assert 'name="name"' not in page and 'name="members"' not in page
    assert 'name="_save"' in page


@pytest.mark.django_db
def test_a_member_cannot_change_another_team(client, alice_owner, search_team):
    client.force_login(alice_owner)
    page = client.get(owner_page(search_team))
    assert page.status_code == 200  # read-only
    assert 'name="webhook_url"' not in page.content.decode()
    assert 'name="_save"' not in page.content.decode()
    response = client.post(
        owner_page(search_team), owner_form(search_team, webhook_url="https://evil.example.com/")
    )
    assert response.status_code == 403
    assert Owner.objects.get(pk=search_team.pk).webhook_url == ""


@pytest.mark.django_db
def test_an_owner_on_no_team_changes_none(client, mallory, blog_team):
    client.force_login(give_role(mallory))
    response = client.post(
        owner_page(blog_team), owner_form(blog_team, webhook_url="https://evil.example.com/")
    )
    assert response.status_code == 403
    assert Owner.objects.get(pk=blog_team.pk).webhook_url == ""
    assert shown_secrets(generate(client, blog_team)) == []
    assert Owner.objects.get(pk=blog_team.pk).signing_secret == ""


@pytest.mark.django_db
def test_a_member_generates_their_teams_signing_secret(
    client, alice_owner, blog_team, django_assert_num_queries
):
    client.force_login(alice_owner)
    ContentType.objects.clear_cache()
    # session, user, perms ×2, count of owners ×2 (the changelist's), the chosen owners,
    # member teams, savepoint, UPDATE of the secret, admin log (content type, insert),
    # savepoint release
    with django_assert_num_queries(13):
        response = generate(client, blog_team)
    (secret,) = shown_secrets(response)
    assert Owner.objects.get(pk=blog_team.pk).signing_secret == secret


@pytest.mark.django_db
def test_a_member_cannot_generate_another_teams_secret(client, alice_owner, blog_team, search_team):
    client.force_login(alice_owner)
    for chosen in [(search_team,), (blog_team, search_team)]:
        response = generate(client, *chosen)
        assert shown_secrets(response) == []
        assert messages_of(response) == [
            "No signing secret generated: you may not change Search team (a team's members "
            "and administrators may). Select only your teams."
        ]
    assert set(Owner.objects.values_list("signing_secret", flat=True)) == {""}


@pytest.mark.django_db
def test_a_member_adds_and_deletes_no_team(client, alice_owner, blog_team):
    client.force_login(alice_owner)
    assert client.get("/admin/signals_app/owner/add/").status_code == 403
    assert client.post(f"/admin/signals_app/owner/{blog_team.pk}/delete/").status_code == 403
    assert Owner.objects.filter(pk=blog_team.pk).exists()


# --- who reads a webhook URL whole ---------------------------------------------------------

BLOG_HOOK = "https://hooks.slack.com/services/T0BLOG/B0BLOG/blogtoken"
SEARCH_HOOK = "https://hooks.slack.com/services/T0SRCH/B0SRCH/searchtoken"
HOST_ONLY = "https://hooks.slack.com/…"


@pytest.fixture
def hooks(blog_team, search_team):
    """Both teams with a Slack webhook URL, whose path is its token."""
    Owner.objects.filter(pk=blog_team.pk).update(webhook_url=BLOG_HOOK)
    Owner.objects.filter(pk=search_team.pk).update(webhook_url=SEARCH_HOOK)
    blog_team.refresh_from_db()
    search_team.refresh_from_db()


def webhook_column(page):
    """Team name -> what the changelist's webhook column shows."""
    row = (
        r'<th class="field-name"><a [^>]*>([^<]+)</a></th>.*?<td class="field-webhook">([^<]*)</td>'
    )
    return dict(re.findall(row, page, re.DOTALL))


@pytest.mark.django_db
def test_a_member_reads_their_teams_webhook_url_whole_and_only_the_host_of_others(
    client, alice_owner, hooks, django_assert_num_queries
):
    client.force_login(alice_owner)
    ContentType.objects.clear_cache()
    # session, user, perms ×2, count ×2, the owners with whether alice is a member of each
    # (one EXISTS in the same query: the same count as before the URLs were hidden)
    with django_assert_num_queries(7):
        response = client.get("/admin/signals_app/owner/")
    page = response.content.decode()
    assert webhook_column(page) == {"Blog team": BLOG_HOOK, "Search team": HOST_ONLY}
    assert "searchtoken" not in page


@pytest.mark.django_db
def test_a_staff_user_on_no_team_reads_only_hosts(client, mallory, hooks):
    client.force_login(give_role(mallory))
    page = client.get("/admin/signals_app/owner/").content.decode()
    assert webhook_column(page) == {"Blog team": HOST_ONLY, "Search team": HOST_ONLY}
    assert "blogtoken" not in page and "searchtoken" not in page


@pytest.mark.django_db
def test_a_superuser_reads_every_webhook_url_whole(client, hooks, django_assert_num_queries):
    client.force_login(make_user("root", is_staff=True, is_superuser=True))
    # session, user, count ×2, the owners (no permission queries for a superuser)
    with django_assert_num_queries(5):
        page = client.get("/admin/signals_app/owner/").content.decode()
    assert webhook_column(page) == {"Blog team": BLOG_HOOK, "Search team": SEARCH_HOOK}


@pytest.mark.django_db
def test_another_teams_page_shows_only_the_host_of_its_webhook_url(
    client, alice_owner, search_team, hooks, django_assert_num_queries
):
    client.force_login(alice_owner)
    ContentType.objects.clear_cache()
    # session, user, the owner with alice's membership, perms ×2, member teams, content type,
    # members (the read-only list): as on her own team's page
    with django_assert_num_queries(8):
        response = client.get(owner_page(search_team))
    page = response.content.decode()
    assert re.search(r'<div class="readonly">https://hooks\.slack\.com/…</div>', page)
    assert "searchtoken" not in page
    assert 'name="webhook_url"' not in page


@pytest.mark.django_db
def test_a_member_and_a_superuser_read_the_whole_url_on_the_team_page(
    client, alice_owner, blog_team, search_team, hooks
):
    client.force_login(alice_owner)
    assert f'value="{BLOG_HOOK}"' in client.get(owner_page(blog_team)).content.decode()
    client.force_login(make_user("root", is_staff=True, is_superuser=True))
    assert f'value="{SEARCH_HOOK}"' in client.get(owner_page(search_team)).content.decode()


@pytest.mark.django_db
@pytest.mark.parametrize(
    "query",
    [
        "signing_secret__startswith=dqwhsec_",
        "signing_secret=x",
        "webhook_url__contains=T0SECRET",
        "webhook_url__startswith=https",
    ],
)
def test_no_one_filters_the_owner_list_on_a_credential(client, admin_user, alice_owner, query):
    # Each guess listed the team or not: every team's signing secret and full webhook URL
    # could be read a character at a time by any staff user who may view owners.
    search_team = Owner.objects.create(
        name="Search team", webhook_url="https://hooks.slack.com/services/T0SECRET/B1/x"
    )
    search_team.rotate_signing_secret()
    for user in (alice_owner, admin_user):
        client.force_login(user)
        response = client.get(f"/admin/signals_app/owner/?{query}")
        assert response.status_code == 400
        assert "Search team" not in response.content.decode()


@pytest.mark.django_db
def test_the_owner_list_still_filters_by_name(client, alice_owner, blog_team):
    client.force_login(alice_owner)
    response = client.get(f"/admin/signals_app/owner/?name={blog_team.name}")
    assert response.status_code == 200
