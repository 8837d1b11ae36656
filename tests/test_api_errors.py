"""Every error of the whole API is problem details with `retryable` (404, 405, 500, 503)."""

import pytest
from django.db import OperationalError

from tests.api import bearer, call
from tests.builders import make_key


@pytest.mark.django_db
@pytest.mark.parametrize("path", ["/api/v1/nowhere", "/api/nowhere", "/api/v1/routes/abc"])
def test_an_unknown_api_path_is_a_404_problem(client, mallory, path):
    client.force_login(mallory)
    response = call(client, "GET", path, expect_status=404)
    assert response.json()["retryable"] is False


@pytest.mark.django_db
def test_an_unknown_object_is_a_404_problem(client, mallory):
    client.force_login(mallory)
    call(client, "GET", "/api/v1/routes/987654", expect_status=404)


@pytest.mark.django_db
def test_a_method_not_allowed_is_a_405_problem(client, django_user_model):
    client.force_login(django_user_model.objects.create_superuser("root", "r@example.com", "pw"))
    response = call(client, "DELETE", "/api/v1/signals/response_time_ms", expect_status=405)
    assert "DELETE" not in response["Allow"]


@pytest.mark.django_db
def test_an_invalid_cursor_is_a_404_problem(client, mallory):
    client.force_login(mallory)
    call(client, "GET", "/api/v1/routes?cursor=garbage", expect_status=404)


@pytest.mark.django_db
def test_malformed_json_on_any_endpoint_is_a_400_problem(client, alice):
    client.force_login(alice)
    response = client.post("/api/v1/thresholds", "{", content_type="application/json")
    assert response.status_code == 400
    assert response["Content-Type"] == "application/problem+json"


@pytest.mark.django_db
def test_form_bodies_are_415(client, alice):
    client.force_login(alice)
    response = client.post("/api/v1/thresholds", "a=b", content_type="text/plain")
    assert response.status_code == 415
    assert response["Content-Type"] == "application/problem+json"


@pytest.mark.django_db
def test_an_unexpected_error_is_a_500_problem(client, mallory, monkeypatch):
    from signals_app.api import views

    def broken(self):
        raise RuntimeError("boom")

    monkeypatch.setattr(views.RouteViewSet, "get_queryset", broken)
    client.raise_request_exception = False
    client.force_login(mallory)
    response = call(client, "GET", "/api/v1/routes", expect_status=500)
    assert response.json()["retryable"] is False
    assert "boom" not in response.content.decode()


@pytest.mark.django_db
def test_an_unavailable_database_is_a_503_retryable_problem(client, blog, monkeypatch):
    from signals_app.models import ServiceKey

    key = make_key(blog)

    def down(raw):
        raise OperationalError("could not connect to server")

    monkeypatch.setattr(ServiceKey, "authenticate", staticmethod(down))
    response = call(client, "GET", "/api/v1/routes", expect_status=503, **bearer(key))
    assert response.json()["retryable"] is True


@pytest.mark.django_db
def test_errors_are_json_even_for_a_browser(client, mallory):
    client.force_login(mallory)
    response = client.get("/api/v1/routes/987654", HTTP_ACCEPT="text/html")
    assert response.status_code == 404
    assert response["Content-Type"] == "application/problem+json"
    assert response.json()["status"] == 404


@pytest.mark.django_db
def test_an_unknown_api_path_is_a_problem_even_with_debug_on(client, mallory, settings):
    # With DEBUG on Django answers its technical 404 page; under /api/ it becomes a problem.
    settings.DEBUG = True
    client.force_login(mallory)
    response = call(client, "GET", "/api/v1/nowhere", expect_status=404)
    assert "no API resource" in response.json()["detail"]


@pytest.mark.django_db
def test_a_lone_surrogate_in_any_body_is_a_400_problem(client, alice, blog):
    from tests.builders import make_route

    route = make_route(blog)
    client.force_login(alice)
    response = client.patch(
        f"/api/v1/routes/{route.pk}", '{"notes": "\\ud800"}', content_type="application/json"
    )
    assert response.status_code == 400
    assert response["Content-Type"] == "application/problem+json"
