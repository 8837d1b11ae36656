import pytest

from tests.builders import make_owner, make_reviewer, make_service, make_user


@pytest.fixture(autouse=True)
def _fresh_ingest_caches():
    # Keys and names remembered by one test's requests must not serve the next test.
    from signals_app.api import authentication, ingest

    authentication.keys.clear()
    ingest.names.clear()


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings):
    # The default hasher spends ~0.5 s per user on purpose; tests make many users.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def alice(db):
    """alice owns the blog service."""
    return make_user("alice", is_staff=True)


@pytest.fixture
def bob(db):
    """bob is on alice's team."""
    return make_user("bob", is_staff=True)


@pytest.fixture
def carol(db):
    """carol reviews content (group Reviewers)."""
    return make_reviewer(make_user("carol", is_staff=True))


@pytest.fixture
def mallory(db):
    """mallory owns nothing."""
    return make_user("mallory", is_staff=True)


@pytest.fixture
def blog_team(alice, bob):
    return make_owner("Blog team", members=[alice, bob])


@pytest.fixture
def blog(blog_team):
    return make_service("blog", owner=blog_team)


@pytest.fixture
def search_team(db):
    return make_owner("Search team")


@pytest.fixture
def search(search_team):
    return make_service("search", owner=search_team)


@pytest.fixture
def receiver(settings):
    """A real webhook receiver (tests/webhook_server.py) on 127.0.0.1, where deliveries go
    only when DQ_WEBHOOK_ALLOW_PRIVATE is on, as it is for this test."""
    from tests.webhook_server import webhook_receiver

    settings.DQ_WEBHOOK_ALLOW_PRIVATE = True
    with webhook_receiver() as running:
        yield running


@pytest.fixture
def public_receiver(receiver, settings, monkeypatch):
    """The receiver as if it were on the internet, with private addresses refused (the
    default): 127.0.0.1 passes the destination check, every other address is judged as
    ever. What a public receiver says is shown in last_error; a private one's is not."""
    from signals_app import notifications

    settings.DQ_WEBHOOK_ALLOW_PRIVATE = False
    judge = notifications.not_public

    def not_public(address):
        return None if str(address) == "127.0.0.1" else judge(address)

    monkeypatch.setattr(notifications, "not_public", not_public)
    return receiver
