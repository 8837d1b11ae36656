"""A request helper for the API tests: sends JSON, checks the status and problem shape."""

import json

PROBLEM_FIELDS = {"type", "title", "status", "detail", "retryable", "errors"}


def call(client, method, url, data=None, *, expect_status=200, expect_field=None, **headers):
    body = json.dumps(data) if data is not None else None
    kwargs = {"content_type": "application/json"} if body is not None else {}
    response = client.generic(method, url, body or "", **kwargs, **headers)
    assert response.status_code == expect_status, response.content
    if expect_status >= 400:
        assert response["Content-Type"] == "application/problem+json", response.content
        problem = response.json()
        assert set(problem) >= PROBLEM_FIELDS
        assert problem["status"] == expect_status
        if expect_field:
            assert expect_field in {e["field"] for e in problem["errors"]}, problem
    return response


def bearer(key):
    return {"HTTP_AUTHORIZATION": f"Bearer {key}"}
