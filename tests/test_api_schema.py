"""The OpenAPI schema at /api/schema and the Swagger UI at /api/docs."""

import pytest
import yaml
from django.core.management import call_command

PROBLEM = "application/problem+json"


def test_the_schema_validates_without_warnings(tmp_path):
    target = tmp_path / "schema.yaml"
    call_command("spectacular", "--validate", "--fail-on-warn", "--file", str(target))
    schema = yaml.safe_load(target.read_text())
    assert schema["openapi"].startswith("3.")


@pytest.fixture
def schema(client):
    response = client.get("/api/schema", HTTP_ACCEPT="application/vnd.oai.openapi+json")
    assert response.status_code == 200
    return yaml.safe_load(response.content)


@pytest.mark.django_db
def test_paths_are_written_without_a_trailing_slash(schema):
    assert "/api/v1/readings" in schema["paths"]
    assert "/api/v1/routes/{id}" in schema["paths"]
    assert not [path for path in schema["paths"] if path.endswith("/")]


@pytest.mark.django_db
def test_the_readings_operation_documents_each_problem_with_an_example(schema):
    responses = schema["paths"]["/api/v1/readings"]["post"]["responses"]
    assert set(responses) >= {"201", "400", "401", "403", "409", "413", "415", "422", "429", "503"}
    problem = responses["400"]["content"][PROBLEM]
    assert problem["schema"] == {"$ref": "#/components/schemas/Problem"}
    (example,) = problem["examples"].values()
    assert example["value"]["errors"][0]["field"] == "value"
    assert set(example["value"]) == {"type", "title", "status", "detail", "retryable", "errors"}
    assert responses["429"]["content"][PROBLEM]["examples"]["problem429"]["value"]["retryable"]
    item = schema["components"]["schemas"]["ProblemItem"]["properties"]
    assert set(item) == {"index", "field", "message", "expected", "received"}


@pytest.mark.django_db
def test_the_service_key_scheme_is_documented(schema):
    scheme = schema["components"]["securitySchemes"]["serviceKey"]
    assert (scheme["type"], scheme["scheme"]) == ("http", "bearer")


@pytest.mark.django_db
def test_lists_document_cursor_pagination_and_filters(schema):
    parameters = {p["name"] for p in schema["paths"]["/api/v1/thresholds"]["get"]["parameters"]}
    assert parameters >= {"cursor", "page_size", "route", "signal", "environment", "statistic"}


@pytest.mark.django_db
def test_the_docs_page_serves_its_assets_locally(client):
    page = client.get("/api/docs").content.decode()
    assert "/static/drf_spectacular_sidecar/swagger-ui-dist/swagger-ui-bundle.js" in page
    for cdn in ("cdn.jsdelivr", "unpkg.com", "cdnjs"):
        assert cdn not in page


@pytest.mark.django_db
def test_request_bodies_say_an_extra_key_is_refused(schema):
    components = schema["components"]["schemas"]
    for name in ("ThresholdRequest", "PatchedThresholdRequest", "BaselineCaptureRequest"):
        assert components[name]["additionalProperties"] is False, name
    assert "additionalProperties" not in components["Threshold"]


@pytest.mark.django_db
def test_no_operation_exposes_an_owners_webhook_url_or_signing_secret(schema):
    # Owners appear in the API by name only. A webhook URL is a credential shown whole only
    # to the team's members and superusers (the admin); an endpoint that adds one must do so too.
    text = yaml.safe_dump(schema)
    assert "webhook" not in text and "signing_secret" not in text
