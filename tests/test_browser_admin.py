"""A real browser: Playwright drives Debian's Chromium (launched by path, never downloaded)
against pytest-django's live_server.

An owner logs in, edits a threshold, finds the edit in its history, opens /board and a
route page with its chart; another owner's threshold opens from their route page, read-only.
Skips, saying why, only where Chromium (or Playwright) is absent.
"""

import os
import re
import shutil
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path

import pytest

from signals_app.models import Threshold, ThresholdState
from tests.builders import give_role, make_readings, make_route, make_threshold

CHROMIUM = os.environ.get("DQ_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
PASSWORD = "pw-for-tests-only"  # tests.builders.make_user's default


def chromium_missing():
    if not (Path(CHROMIUM).exists() or shutil.which(CHROMIUM)):
        return f"Chromium not found at {CHROMIUM} (apt-get install chromium; or set DQ_CHROMIUM)"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "playwright is not installed (pip install -r requirements/dev.txt)"
    return ""


pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(bool(chromium_missing()), reason=chromium_missing() or "ok"),
    # The live server reads what the test wrote, so it must be committed; serialized
    # rollback puts back the signals and environments of the data migrations afterwards.
    pytest.mark.django_db(transaction=True, serialized_rollback=True),
]


@contextmanager
def chromium_page(**options):
    """A page of a fresh Chromium. No ORM inside the block: Playwright's sync API runs an
    event loop in this thread, where Django refuses the ORM (SynchronousOnlyOperation) or,
    with DJANGO_ALLOW_ASYNC_UNSAFE, opens a second connection that outlives the test. The
    test writes its data before and checks the database after."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield chromium.new_page(**options)
        finally:
            chromium.close()


@pytest.fixture
def world(alice, blog, search):
    give_role(alice)
    mine = make_route(blog, "/posts/{slug}")
    threshold = make_threshold(mine, warn=300, critical=800, min_samples=5)
    ThresholdState.objects.create(threshold=threshold, status="ok", value=120, samples=40)
    make_readings(mine, [120.0 + i % 40 for i in range(150)], step=timedelta(minutes=9))
    make_readings(
        mine, [12.0 + i % 5 for i in range(150)], cache_status="HIT", step=timedelta(minutes=9)
    )
    theirs = make_route(search, "/search")
    their_threshold = make_threshold(theirs, warn=500, critical=900)
    return {"route": mine, "threshold": threshold, "theirs": theirs, "their": their_threshold}


def log_in(page, base, username):
    page.goto(f"{base}/admin/login/?next=/admin/")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", PASSWORD)
    page.click("input[type=submit]")
    page.wait_for_url(f"{base}/admin/")


def test_owner_curates_in_a_real_browser(live_server, world):
    base = live_server.url
    threshold, route = world["threshold"], world["route"]
    their, their_route = world["their"], world["theirs"]
    with chromium_page(viewport={"width": 1280, "height": 900}) as page:
        log_in(page, base, "alice")

        # Edit a threshold of her own route.
        page.goto(f"{base}/admin/signals_app/threshold/{threshold.pk}/change/")
        page.fill("input[name=warn]", "350")
        page.click("input[name=_save]")
        assert "was changed successfully" in page.inner_text("ul.messagelist")

        # The history says who, when and old → new.
        page.goto(f"{base}/admin/signals_app/threshold/{threshold.pk}/history/")
        row = page.locator("#change-history tbody tr").first.inner_text()
        assert "alice" in row
        assert re.search(r"warn:\s*300\.0\s*→\s*350\.0", row, re.IGNORECASE)

        # The board lists her route with a status badge and a sparkline.
        page.goto(f"{base}/board")
        card = page.locator(f'li.route[data-route="{route.pk}"]')
        assert card.locator(".dq-badge").is_visible()
        assert card.locator("svg.spark path").count() == 1
        assert "owner: Blog team" in card.inner_text()

        # The route page draws its chart: HIT and MISS lines, warn at the new level.
        page.goto(f"{base}/admin/signals_app/route/{route.pk}/change/")
        chart = page.locator("figure.dq-chart svg").first
        assert chart.is_visible()
        assert chart.bounding_box()["width"] > 300
        assert page.locator("figure.dq-chart path.series.hit").count() == 1
        assert page.locator("figure.dq-chart path.series.miss").count() == 1
        assert "warn 350 ms" in page.locator("figure.dq-chart").first.inner_text()
        assert page.locator('input[name="thresholds-0-warn"]').is_editable()

        # Another owner's threshold is editable nowhere, and readable from their route page.
        page.goto(f"{base}/admin/signals_app/route/{their_route.pk}/change/")
        assert page.locator("#summary").is_visible()
        assert page.locator('input[name="thresholds-0-warn"]').count() == 0
        assert page.locator('input[name="_save"]').count() == 0
        page.locator("#status a", has_text="response_time_ms").click()
        page.wait_for_url(f"{base}/admin/signals_app/threshold/{their.pk}/change/")
        assert page.locator("h1").inner_text().startswith("View threshold")
        assert "500" in page.locator(".field-warn .readonly").inner_text()
        assert page.locator("input[name=warn]").count() == 0
        assert page.locator('input[name="_save"]').count() == 0

    assert Threshold.objects.get(pk=threshold.pk).warn == 350
    assert Threshold.objects.get(pk=their.pk).warn == 500


def test_board_fits_a_phone(live_server, world):
    base = live_server.url
    with chromium_page(viewport={"width": 375, "height": 740}) as page:
        log_in(page, base, "alice")
        page.goto(f"{base}/board")
        assert page.locator("li.route").count() == 2
        width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= 375, f"the board scrolls sideways on a phone ({width}px wide)"
