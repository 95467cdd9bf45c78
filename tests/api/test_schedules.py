"""The REST API's schedules: list, make, show, change, delete, pause, resume, trigger now.

On the memory store and local executor of ``conftest`` (the ``Schedule`` table in the test
database). Bad cron expressions, unknown time zones and unknown workflow types are 400s naming
the field; a schedule declared in code refuses edits and deletion with 409; writes need the
write permission classes (staff by default, or ``start_workflow`` with
``HasWorkflowModelPermission``).
"""

from __future__ import annotations

from urllib.parse import quote

import pytest

from beluga_workflows import Cron, workflow
from beluga_workflows.engine import registry
from beluga_workflows.executor import get_executor
from beluga_workflows.models import Schedule

from .conftest import make_user, token_client, wait_until

pytestmark = pytest.mark.django_db

DECLARED = "tests.api.every_two_hours"


def surl(schedule_id: str = "", step: str = "") -> str:
    if not schedule_id:
        return "/api/schedules/"
    return f"/api/schedules/{quote(schedule_id, safe='')}/{step + '/' if step else ''}"


def make(client, **body):
    body = {"id": "nightly", "workflow_type": "tests.api.echo", "cron": "30 2 * * *",
            "timezone": "Europe/Berlin", "input": {"report": "daily"}, **body}
    return client.post(surl(), body, format="json")


@pytest.fixture
def declared():
    def every_two_hours(ctx, value=None):
        return value

    workflow(name=DECLARED, schedule=[Cron("0 */2 * * *"), Cron("0 1 * * *")])(every_two_hours)
    yield DECLARED
    with registry._lock:
        registry._workflows.pop(DECLARED, None)


def test_reading_needs_credentials_and_lists_the_schedules(anonymous, plain, staff, declared):
    assert anonymous.get(surl()).status_code == 401
    assert make(staff).status_code == 201
    listing = plain.get(surl())
    assert listing.status_code == 200
    body = listing.json()
    assert body["count"] == 3 and body["next"] is None
    ids = [s["id"] for s in body["results"]]
    assert ids == ["nightly", DECLARED, f"{DECLARED}#2"]  # declared ones synced in, by id
    nightly = body["results"][0]
    assert {k: nightly[k] for k in ("workflow_type", "cron", "timezone", "input", "overlap",
                                    "catch_up", "paused", "declared", "state")} == {
        "workflow_type": "tests.api.echo", "cron": "30 2 * * *", "timezone": "Europe/Berlin",
        "input": {"report": "daily"}, "overlap": "skip", "catch_up": False, "paused": False,
        "declared": False, "state": "active"}
    assert nightly["next_fire_at"] and nightly["last_fire_at"] is None
    page = plain.get(surl(), {"limit": 1, "offset": 1, "workflow_type": DECLARED}).json()
    assert page["count"] == 2 and [s["id"] for s in page["results"]] == [f"{DECLARED}#2"]
    assert plain.get(surl(f"{DECLARED}#2")).json()["cron"] == "0 1 * * *"
    assert plain.get(surl("missing")).status_code == 404
    assert plain.get(surl("a/b")).json()["code"] == "not_found"


@pytest.mark.parametrize(("body", "field", "message"), [
    ({"cron": "61 * * * *"}, "cron", "bad cron expression '61 * * * *': bad minute"),
    ({"cron": "* * *"}, "cron", "it has 3 field(s)"),
    ({"timezone": "Mars/Olympus"}, "timezone", "unknown time zone 'Mars/Olympus'"),
    ({"workflow_type": "tests.api.nope"}, "workflow_type", "unknown workflow type"),
    ({"id": "with space"}, "id", "a slug"),
])
def test_bad_fields_are_400s_naming_the_field_and_store_nothing(staff, body, field, message):
    response = make(staff, **body)
    assert response.status_code == 400, response.content
    assert message in response.json()["detail"]
    if field != "workflow_type":  # the schema lists the registered types: DRF says "invalid"
        assert message in response.json()["errors"][field][0]
    assert not Schedule.objects.exists()


def test_making_one_and_the_refusals_around_it(staff):
    response = make(staff)
    assert response.status_code == 201
    assert response["Location"] == "/api/schedules/nightly/"
    assert response.json()["next_fire_at"].endswith(("T02:30:00+02:00", "T02:30:00+01:00",
                                                      "T00:30:00Z", "T01:30:00Z"))
    assert make(staff).status_code == 409
    unknown = make(staff, id="other", colour="blue")
    assert unknown.status_code == 400 and "unknown field(s): colour" in unknown.json()["detail"]
    assert make(staff, id="other", catch_up="yes").status_code == 400


def test_writes_need_the_write_permission(plain, staff):
    assert make(staff).status_code == 201
    assert make(plain, id="mine").status_code == 403  # default: staff only
    for step in ("pause", "resume", "trigger"):
        assert plain.post(surl("nightly", step), format="json").status_code == 403
    assert plain.patch(surl("nightly"), {"cron": "0 4 * * *"}, format="json").status_code == 403
    assert plain.delete(surl("nightly")).status_code == 403
    row = Schedule.objects.get(pk="nightly")
    assert (row.paused, row.cron, row.last_workflow_id) == (False, "30 2 * * *", "")


def test_the_start_permission_with_the_model_permission_class(workflow_backend, staff):
    workflow_backend.BELUGA_WORKFLOWS = {
        **workflow_backend.BELUGA_WORKFLOWS,
        "API_WRITE_PERMISSION_CLASSES": [
            "rest_framework.permissions.IsAuthenticated",
            "beluga_workflows.api.permissions.HasWorkflowModelPermission",
        ],
    }
    user, key = make_user("starter")
    client = token_client(key)
    denied = make(client)
    assert denied.status_code == 403
    assert denied.json()["detail"] == "You do not have the permission to start workflows."
    from django.contrib.auth.models import Permission

    user.user_permissions.add(Permission.objects.get(codename="start_workflow"))
    assert make(client).status_code == 201
    assert client.post(surl("nightly", "pause")).status_code == 200


def test_pause_resume_and_trigger(staff):
    make(staff, workflow_type="tests.api.approval", input=None)
    before = staff.get(surl("nightly")).json()
    paused = staff.post(surl("nightly", "pause"))
    assert paused.status_code == 200
    assert (paused.json()["state"], paused.json()["next_fire_at"]) == ("paused", None)
    fired = staff.post(surl("nightly", "trigger"), format="json")  # paused: triggers all the same
    assert fired.status_code == 202
    run_id = fired.json()["workflow_id"]
    assert run_id.startswith("nightly@now-") and fired.json()["outcome"] == "started"
    store = get_executor().store
    wait_until(lambda: (s := store.load(run_id)) and s.wait_kind == "signal", what="the run")
    skipped = staff.post(surl("nightly", "trigger"), {}, format="json")
    assert skipped.status_code == 409
    assert f"the previous run {run_id} is still open" in skipped.json()["detail"]
    allowed = staff.post(surl("nightly", "trigger"), {"overlap": "allow"}, format="json")
    assert allowed.status_code == 202 and allowed.json()["workflow_id"] != run_id
    assert staff.post(surl("nightly", "trigger"), {"overlap": "x"},
                      format="json").status_code == 400
    resumed = staff.post(surl("nightly", "resume")).json()
    assert resumed["state"] == "active" and resumed["next_fire_at"] == before["next_fire_at"]
    assert resumed["last_workflow_id"] == allowed.json()["workflow_id"]
    for step in ("pause", "resume", "trigger"):
        assert staff.post(surl("missing", step)).status_code == 404


def test_changing_and_deleting(staff, declared):
    make(staff)
    changed = staff.patch(surl("nightly"), {"cron": "*/5 * * * * *", "timezone": "UTC"},
                          format="json")
    assert changed.status_code == 200 and changed.json()["cron"] == "*/5 * * * * *"
    bad = staff.patch(surl("nightly"), {"timezone": "Nowhere/Land"}, format="json")
    assert bad.status_code == 400 and bad.json()["errors"]["timezone"]
    assert staff.patch(surl("missing"), {"paused": True}, format="json").status_code == 404
    staff.get(surl())  # syncs the declared schedules in
    refused = staff.patch(surl(DECLARED), {"cron": "0 3 * * *"}, format="json")
    assert refused.status_code == 409 and "is declared in code" in refused.json()["detail"]
    assert staff.patch(surl(DECLARED), {"paused": True}, format="json").json()["paused"] is True
    assert staff.delete(surl(DECLARED)).status_code == 409
    assert staff.delete(surl("nightly")).status_code == 204
    assert staff.delete(surl("nightly")).status_code == 404
