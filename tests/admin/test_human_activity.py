"""HumanActivity: a durable question to a person, answered through the signal machinery."""

from __future__ import annotations

import pytest

from beluga_workflows import (
    EventType,
    InvalidInputError,
    WorkflowFailedError,
    WorkflowNotFoundError,
    WorkflowNotRunningError,
    WorkflowOptions,
)
from beluga_workflows.activities import HumanActivity, answer_human_task, pending_human_task
from beluga_workflows.testing import WorkflowEnvironment

from . import workflows  # noqa: F401 - registers the workflows


@pytest.fixture
def env():
    with WorkflowEnvironment() as environment:
        yield environment


def pending(env, workflow_id):
    state = env.store.load(workflow_id)
    return pending_human_task(state, state.history)


def test_request_suspends_the_run_and_records_the_request(env):
    handle = env.execute("admin_tests.review", WorkflowOptions(id="r1"))
    env.run_until_idle()
    state = env.store.load("r1")
    assert state.is_open and state.wait_kind == "human" and state.wait_name.startswith("human:")
    assert not state.lease_owner  # the run holds no worker while it waits
    task = pending(env, "r1")
    assert task.title == "Approve the refund"
    assert task.description == "A customer asks for a refund."
    assert task.choices == ["approve", "reject", "modify"]
    assert task.data == {"order": 42, "amount": "19.90"}
    assert task.request_id == state.wait_name and task.due_at is None
    assert handle.status().value == "running"


@pytest.mark.parametrize("decision,feedback,modified", [
    ("approve", "looks fine", None),
    ("reject", "fraud", None),
    ("modify", "lower it", {"order": 42, "amount": "9.90"}),
])
def test_answer_resumes_the_workflow(env, decision, feedback, modified):
    handle = env.execute("admin_tests.review", WorkflowOptions(id="r2"))
    env.run_until_idle()
    answer_human_task("r2", decision, feedback, modified, executor=env.executor, sender_id="ann")
    assert handle.result(timeout=5) == {
        "answer": {"decision": decision, "feedback": feedback, "modified": modified}
    }
    history = env.store.load("r2").history
    received = [e for e in history if e.type is EventType.SIGNAL_RECEIVED]
    assert len(received) == 1 and received[0].signal_name.startswith("human:")


def test_answer_is_replayed_not_asked_again(env):
    handle = env.execute("admin_tests.two_reviews", WorkflowOptions(id="r3", input={"n": 1}))
    env.run_until_idle()
    first = pending(env, "r3")
    assert first.title == "First look" and first.choices == ["approve", "reject"]
    answer_human_task("r3", "approve", "ok", executor=env.executor, request_id=first.request_id)
    env.run_until_idle()
    second = pending(env, "r3")
    assert second.title == "Second look" and second.request_id != first.request_id
    assert second.data == {"decision": "approve", "feedback": "ok", "modified": None}
    # Answering the first request again is refused: the run now waits for the second.
    with pytest.raises(InvalidInputError, match="no pending human task"):
        answer_human_task("r3", "approve", executor=env.executor, request_id=first.request_id)
    answer_human_task("r3", "reject", "no", executor=env.executor)
    result = handle.result(timeout=5)
    assert [a["decision"] for a in result] == ["approve", "reject"]
    waits = [e for e in env.store.load("r3").history if e.type is EventType.SIGNAL_WAIT_STARTED]
    assert len(waits) == 2  # each request recorded once, whatever the replays


def test_answer_validation_changes_nothing(env):
    env.execute("admin_tests.two_reviews", WorkflowOptions(id="r4"))
    env.run_until_idle()
    before = env.store.load("r4")
    with pytest.raises(InvalidInputError, match="not one of approve, reject"):
        answer_human_task("r4", "modify", executor=env.executor)
    with pytest.raises(InvalidInputError, match="feedback"):
        answer_human_task("r4", "approve", feedback=3, executor=env.executor)
    with pytest.raises(InvalidInputError, match="JSON"):
        answer_human_task("r4", "approve", modified=object(), executor=env.executor)
    with pytest.raises(WorkflowNotFoundError):
        answer_human_task("nope", "approve", executor=env.executor)
    after = env.store.load("r4")
    assert after.signals == [] and len(after.history) == len(before.history)


def test_a_second_answer_is_refused_while_the_first_waits_in_the_inbox(env):
    env.execute("admin_tests.review", WorkflowOptions(id="r5"))
    env.run_until_idle()
    answer_human_task("r5", "approve", executor=env.executor)  # not yet consumed
    with pytest.raises(InvalidInputError, match="no pending human task"):
        answer_human_task("r5", "reject", executor=env.executor)


def test_ended_run_is_refused(env):
    handle = env.execute("admin_tests.review", WorkflowOptions(id="r6"))
    env.run_until_idle()
    answer_human_task("r6", "approve", executor=env.executor)
    handle.result(timeout=5)
    with pytest.raises(WorkflowNotRunningError):
        answer_human_task("r6", "approve", executor=env.executor)


def test_timeout_raises_signal_timeout_in_the_workflow(env):
    handle = env.execute("admin_tests.review", WorkflowOptions(id="r7", input={"timeout": 3600}))
    env.run_until_idle()
    task = pending(env, "r7")
    assert task.due_at is not None
    env.advance(3601)
    with pytest.raises(WorkflowFailedError, match="SignalTimeoutError"):
        handle.result(timeout=5)
    assert pending(env, "r7") is None


def test_timeout_decision_is_returned_instead(env):
    handle = env.execute("admin_tests.review", WorkflowOptions(
        id="r8", input={"timeout": 60, "timeout_decision": "reject"}))
    env.run_until_idle()
    env.advance(61)
    assert handle.result(timeout=5) == {"answer": {
        "decision": "reject", "feedback": "no answer within the timeout", "modified": None}}


def test_cancel_while_waiting_for_a_person(env):
    handle = env.execute("admin_tests.review", WorkflowOptions(id="r9"))
    env.run_until_idle()
    env.cancel("r9")
    env.run_until_idle()
    assert handle.status().value == "canceled"


def test_query_does_not_answer_or_record(env):
    env.execute("admin_tests.review", WorkflowOptions(id="r10"))
    env.run_until_idle()
    before = len(env.store.load("r10").history)
    with pytest.raises(InvalidInputError, match="unknown query"):
        env.query("r10", "nothing")
    assert len(env.store.load("r10").history) == before


@pytest.mark.parametrize("kwargs,match", [
    ({"title": ""}, "title"),
    ({"title": "t", "choices": ()}, "choices"),
    ({"title": "t", "choices": ("approve", "maybe")}, "maybe"),
    ({"title": "t", "timeout": 0}, "positive"),
    ({"title": "t", "timeout": "soon"}, "timeout"),
    ({"title": "t", "choices": ("approve",), "timeout_decision": "reject"}, "timeout_decision"),
])
def test_bad_definitions_are_refused(kwargs, match):
    with pytest.raises(InvalidInputError, match=match):
        HumanActivity(**kwargs)


def test_calling_it_directly_is_refused():
    with pytest.raises(InvalidInputError, match="answered by a person"):
        HumanActivity("t")({"x": 1})
