"""The OpenAPI 3 schema at /api/schema/ validates and describes every endpoint."""

from __future__ import annotations

import re

import pytest
from openapi_spec_validator import validate

EXPECTED = {
    ("/api/workflows/", "get"): {"200", "400", "401", "403"},
    ("/api/workflows/", "post"): {"201", "400", "401", "403", "409"},
    ("/api/workflows/{workflow_id}/", "get"): {"200", "401", "403", "404"},
    ("/api/workflows/{workflow_id}/history/", "get"): {"200", "400", "401", "403", "404"},
    ("/api/workflows/{workflow_id}/signal/", "post"): {"202", "400", "401", "403", "404", "409"},
    ("/api/workflows/{workflow_id}/cancel/", "post"): {"202", "401", "403", "404", "409"},
    ("/api/workflows/{workflow_id}/resume/", "post"): {"202", "401", "403", "404", "409"},
    ("/api/workflows/{workflow_id}/fork/", "post"): {"201", "400", "401", "403", "404", "409"},
    ("/api/workflows/{workflow_id}/query/{query_type}/", "get"): {"200", "400", "401", "403", "404"},
    ("/api/workflows/{workflow_id}/human-task/", "get"): {"200", "401", "403", "404"},
    ("/api/workflows/{workflow_id}/human-task/", "post"): {"202", "400", "401", "403", "404",
                                                           "409"},
    ("/api/human-tasks/", "get"): {"200", "400", "401", "403"},
    ("/api/events/", "get"): {"200", "400", "401", "403"},
    ("/api/events/", "post"): {"202", "400", "401", "403"},
    ("/api/events/{event_id}/", "get"): {"200", "401", "403", "404"},
    ("/api/schedules/", "get"): {"200", "400", "401", "403"},
    ("/api/schedules/", "post"): {"201", "400", "401", "403", "409"},
    ("/api/schedules/{schedule_id}/", "get"): {"200", "401", "403", "404"},
    ("/api/schedules/{schedule_id}/", "patch"): {"200", "400", "401", "403", "404", "409"},
    ("/api/schedules/{schedule_id}/", "delete"): {"204", "401", "403", "404", "409"},
    ("/api/schedules/{schedule_id}/pause/", "post"): {"200", "401", "403", "404"},
    ("/api/schedules/{schedule_id}/resume/", "post"): {"200", "401", "403", "404"},
    ("/api/schedules/{schedule_id}/trigger/", "post"): {"202", "400", "401", "403", "404",
                                                       "409"},
    ("/api/flow-control/", "get"): {"200", "401", "403"},
    ("/api/flow-control/{workflow_type}/", "get"): {"200", "401", "403", "404"},
}


@pytest.fixture
def spec(anonymous) -> dict:
    response = anonymous.get("/api/schema/", {"format": "json"})
    assert response.status_code == 200
    assert response["Content-Type"].startswith("application/vnd.oai.openapi+json")
    return response.json()


def test_the_schema_is_valid_openapi_3(spec):
    assert spec["openapi"].startswith("3.")
    validate(spec)


def test_every_endpoint_and_status_is_described(spec):
    operations = {(path, method): set(op["responses"])
                  for path, item in spec["paths"].items() for method, op in item.items()
                  if method in {"get", "post", "put", "patch", "delete"}}
    assert set(operations) == set(EXPECTED)
    for key, codes in EXPECTED.items():
        assert codes <= operations[key], key


def _schema(spec: dict, ref: str) -> dict:
    return spec["components"]["schemas"][ref.rsplit("/", 1)[1]]


def test_request_and_response_bodies_are_described(spec):
    paths = spec["paths"]
    start = paths["/api/workflows/"]["post"]
    body = _schema(spec, start["requestBody"]["content"]["application/json"]["schema"]["$ref"])
    assert body["required"] == ["workflow_type"]
    assert set(body["properties"]) == {"workflow_type", "id", "input", "timeout"}
    assert set(start["requestBody"]["content"]) == {"application/json"}

    workflow = _schema(spec, start["responses"]["201"]["content"]["application/json"]["schema"]["$ref"])
    assert {"id", "run_id", "workflow_type", "status", "input", "result", "error", "created_at",
            "updated_at"} <= set(workflow["properties"])

    signal = paths["/api/workflows/{workflow_id}/signal/"]["post"]
    signal_body = _schema(spec, signal["requestBody"]["content"]["application/json"]["schema"]["$ref"])
    assert signal_body["required"] == ["name"]

    query = paths["/api/workflows/{workflow_id}/query/{query_type}/"]["get"]
    answer = _schema(spec, query["responses"]["200"]["content"]["application/json"]["schema"]["$ref"])
    assert set(answer["properties"]) == {"result"}

    error = _schema(spec, query["responses"]["404"]["content"]["application/json"]["schema"]["$ref"])
    assert "detail" in error["required"]

    listing = paths["/api/workflows/"]["get"]
    assert {p["name"] for p in listing["parameters"]} == {"status", "workflow_type", "parent_id",
                                                          "limit", "offset"}
    status = next(p for p in listing["parameters"] if p["name"] == "status")
    assert set(status["schema"]["enum"]) == {"", "running", "completed", "failed", "canceled",
                                             "timed_out"}


def test_human_task_bodies_are_described(spec):
    paths = spec["paths"]
    listing = paths["/api/human-tasks/"]["get"]
    assert {p["name"] for p in listing["parameters"]} == {"workflow_type", "limit", "offset"}
    page = _schema(spec, listing["responses"]["200"]["content"]["application/json"]["schema"]["$ref"])
    assert set(page["properties"]) == {"count", "next", "previous", "results"}
    task = _schema(spec, page["properties"]["results"]["items"]["$ref"])
    assert set(task["properties"]) == {"workflow_id", "run_id", "workflow_type", "request_id",
                                       "title", "description", "choices", "data", "asked_at",
                                       "due_at"}
    one = paths["/api/workflows/{workflow_id}/human-task/"]
    assert one["get"]["responses"]["200"]["content"]["application/json"]["schema"]["$ref"] == (
        listing["responses"]["200"]["content"]["application/json"]["schema"]["$ref"].replace(
            "HumanTaskPage", "HumanTask"))
    answer = _schema(spec, one["post"]["requestBody"]["content"]["application/json"]["schema"]["$ref"])
    assert answer["required"] == ["decision"]
    assert set(answer["properties"]) == {"decision", "feedback", "modified", "request_id"}
    decision = _schema(spec, answer["properties"]["decision"]["allOf"][0]["$ref"])
    assert decision["enum"] == ["approve", "reject", "modify"]
    assert task["properties"]["choices"]["items"]["$ref"].endswith("/Decision")
    # An empty feedback is valid: it matches exactly one branch of the oneOf (text, or empty).
    text, empty = answer["properties"]["feedback"]["oneOf"]
    assert re.fullmatch(text["pattern"], "") is None and empty["maxLength"] == 0
    assert "202" in one["post"]["responses"]


def test_resume_and_fork_are_described(spec):
    paths = spec["paths"]
    resume = paths["/api/workflows/{workflow_id}/resume/"]["post"]
    assert "requestBody" not in resume
    assert resume["responses"]["202"]["content"]["application/json"]["schema"]["$ref"].endswith(
        "/Workflow")
    fork = paths["/api/workflows/{workflow_id}/fork/"]["post"]
    body = _schema(spec, fork["requestBody"]["content"]["application/json"]["schema"]["$ref"])
    assert set(body["properties"]) == {"from_event", "id"} and "required" not in body
    assert body["properties"]["from_event"]["type"] == "integer"
    assert body["properties"]["from_event"]["minimum"] == 2
    assert fork["responses"]["201"]["content"]["application/json"]["schema"]["$ref"].endswith(
        "/Workflow")


def test_the_schema_names_both_authentications(spec):
    assert set(spec["components"]["securitySchemes"]) == {"cookieAuth", "tokenAuth"}


def test_the_docs_page_is_served(anonymous):
    response = anonymous.get("/api/docs/")
    assert response.status_code == 200
    assert b"swagger" in response.content.lower()
