"""Schemathesis fuzzes the live API (a real server) from its own schema: no 5xx, no answer the
schema does not describe, auth enforced, bad data refused, good data accepted."""

from __future__ import annotations

import pytest
import schemathesis
from django.contrib.auth import get_user_model
from hypothesis import HealthCheck, settings
from rest_framework.authtoken.models import Token
from schemathesis.specs.openapi.checks import positive_data_acceptance

from beluga_workflows.executor import get_executor
from beluga_workflows.types import WorkflowOptions

pytestmark = [
    pytest.mark.django_db(transaction=True),
    # Raised by schemathesis' own strategies, not by this code.
    pytest.mark.filterwarnings("ignore::hypothesis.errors.HypothesisDeprecationWarning"),
]

# Examples per operation; ten operations stay well within a minute.
MAX_EXAMPLES = 40
STAFF_TOKEN = "fuzz0000000000000000000000000000000staff"


class StaffToken:
    """Schemathesis auth: a staff user's token (the checks also try without and with a bad one)."""

    def get(self, case, ctx):
        return STAFF_TOKEN

    def set(self, case, data, ctx):
        case.headers = {**(case.headers or {}), "Authorization": f"Token {data}"}


@pytest.fixture
def live_schema(live_server, transactional_db, store):
    user = get_user_model().objects.create_user("fuzzer", password="pw", is_staff=True)
    Token.objects.create(user=user, key=STAFF_TOKEN)
    assert get_executor().store is store
    # The schema's example ids name real runs, so the examples reach 2xx answers too: "order-123"
    # waits for a signal, "review-123" (the human-task endpoints' example) asks a person again
    # after each answer.
    get_executor().execute("tests.api.approval", WorkflowOptions(id="order-123", input={"n": 1}))
    get_executor().execute("tests.api.review", WorkflowOptions(id="review-123", input={"rounds": 0}))
    loaded = schemathesis.openapi.from_url(f"{live_server.url}/api/schema/?format=json")
    loaded.auth.auth(refresh_interval=None)(StaffToken)
    return loaded


schema = schemathesis.pytest.from_fixture("live_schema")


# The default store (the ORM, on SQLite); the API tests cover the other stores.
@pytest.mark.parametrize("store", ["django-sqlite"], indirect=True)
@schema.parametrize()
@settings(max_examples=MAX_EXAMPLES, deadline=None, database=None,
          suppress_health_check=list(HealthCheck))
def test_the_api_keeps_to_its_schema(case):
    excluded = []
    if "{query_type}" in case.operation.path:
        # Query handlers are set by each workflow at run time: no schema can list them, so a
        # schema-valid query type may still be unknown (400).
        excluded.append(positive_data_acceptance)
    if case.operation.path.endswith("/human-task/") and case.method.upper() == "POST":
        # A task's choices and its current request id are decided at run time too: a
        # schema-valid decision or request id may still not be the pending task's (400).
        excluded.append(positive_data_acceptance)
    if case.operation.path in ("/api/schedules/", "/api/schedules/{schedule_id}/") and (
            case.method.upper() in ("POST", "PATCH")):
        # Which cron expressions and time zones are valid is the cron parser's and the system's
        # time zone database's to say: no schema pattern can, so a schema-valid one may be 400.
        excluded.append(positive_data_acceptance)
    if case.operation.path.endswith("/fork/"):
        # Which event ids begin a step is the run's history's to say: a schema-valid
        # from_event may be past the history or inside a step (400).
        excluded.append(positive_data_acceptance)
    case.call_and_validate(excluded_checks=excluded, timeout=10)
