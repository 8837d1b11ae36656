"""Cache status from CDN headers, route templates, excluded paths."""

import pytest
from dqclient.measure import (
    Exclusions,
    cache_status,
    cache_status_from_asgi,
    cache_status_from_wsgi,
    compile_templates,
    django_route_template,
)


def status_of(**headers):
    lowered = {name.replace("_", "-").lower(): value for name, value in headers.items()}
    return cache_status(lowered.get)


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"cf_cache_status": "HIT"}, "HIT"),
        ({"cf_cache_status": "dynamic"}, "DYNAMIC"),
        ({"cf_cache_status": "UPDATING"}, "STALE"),
        ({"x_cache": "Hit from cloudfront"}, "HIT"),
        ({"x_cache": "RefreshHit from cloudfront"}, "REVALIDATED"),
        ({"x_cache": "MISS, HIT"}, "HIT"),  # shield missed, edge hit: the user got a hit
        ({"x_cache": "HIT, MISS"}, "MISS"),
        ({"x_cache": "TCP_MEM_HIT"}, "HIT"),
        ({"x_cache_status": "EXPIRED"}, "EXPIRED"),
        ({"x_cache_status": "BYPASS"}, "BYPASS"),
        ({"age": "120"}, "HIT"),
        ({"age": "0"}, "UNKNOWN"),
        ({"age": "soon"}, "UNKNOWN"),
        ({}, "UNKNOWN"),
    ],
)
def test_it_reads_the_cache_status_from_cdn_headers(headers, expected):
    assert status_of(**headers) == expected


def test_headers_are_read_in_order_cf_then_x_cache_then_x_cache_status_then_age():
    assert status_of(cf_cache_status="MISS", x_cache="HIT", age="30") == "MISS"
    assert status_of(x_cache="MISS", x_cache_status="HIT", age="30") == "MISS"
    assert status_of(x_cache_status="MISS", age="30") == "MISS"
    # a value we cannot read falls through to the next header
    assert status_of(cf_cache_status="NONE", x_cache="Error from cloudfront", age="5") == "HIT"


def test_it_reads_asgi_and_wsgi_header_lists():
    assert cache_status_from_asgi([(b"content-type", b"text/html"), (b"x-cache", b"HIT")]) == "HIT"
    assert cache_status_from_asgi([(b"cf-cache-status", b"DYNAMIC"), (b"age", b"9")]) == "DYNAMIC"
    assert cache_status_from_asgi([(b"CF-Cache-Status", b"HIT")]) == "HIT"
    assert cache_status_from_asgi([(b"x-cache-status", b"EXPIRED")]) == "EXPIRED"
    assert cache_status_from_asgi(None) == "UNKNOWN"
    assert cache_status_from_wsgi([("Content-Type", "text/html"), ("CF-Cache-Status", "MISS")]) == (
        "MISS"
    )
    assert cache_status_from_wsgi([("Age", "3")]) == "HIT"


@pytest.mark.parametrize(
    ("route", "template"),
    [
        ("posts/<slug:slug>", "/posts/{slug}"),
        ("posts/<slug:slug>/", "/posts/{slug}/"),
        ("api/v1/users/<int:pk>/posts/<str:slug>", "/api/v1/users/{pk}/posts/{slug}"),
        ("archive/<year>/", "/archive/{year}/"),
        ("", "/"),
        ("about/", "/about/"),
        ("^posts/(?P<pk>[0-9]+)/$", "/posts/{pk}/"),
        ("^blog/^(?P<year>[0-9]{4})/(?P<slug>[-\\w]+)\\.html$", "/blog/{year}/{slug}.html"),
        ("^files/(?P<path>(a|b)/.+)$", "/files/{path}"),
        ("api/v1/^routes/(?P<pk>[^/.]+)/?$", "/api/v1/routes/{pk}"),
    ],
)
def test_it_turns_django_routes_into_templates(route, template):
    assert django_route_template(route) == template


def test_it_matches_paths_against_templates():
    match = compile_templates(["/posts/{slug}", "/posts/{slug}/comments", "/files/{p:path}", "/"])
    assert match("/posts/hello") == "/posts/{slug}"
    assert match("/posts/hello/comments") == "/posts/{slug}/comments"
    assert match("/files/a/b/c.txt") == "/files/{p:path}"
    assert match("/") == "/"
    assert match("/posts/") is None
    assert match("/elsewhere") is None


def test_exclusions_are_exact_unless_they_end_with_a_star():
    excluded = Exclusions(["/health", "/static/*"])
    assert "/health" in excluded
    assert "/health/deep" not in excluded
    assert "/static/app.css" in excluded
    assert "/posts" not in excluded
