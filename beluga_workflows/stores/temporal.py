"""The ``temporal`` store: a read-only view of the runs a Temporal server holds.

``"STORE": {"BACKEND": "temporal", "OPTIONS": {"target": "127.0.0.1:7233", "namespace":
"default"}}``. It lists runs through Temporal's visibility API (``list_workflows`` /
``count_workflows`` queries: status, workflow type, id prefix, parent) and loads one with
``describe`` and its history, Temporal's events mapped to ours
(``runtimes/temporal/mapping.py``). So the admin, the REST API and the commands show the runs of
the ``temporal`` executor; they start, signal, query and cancel them through that executor.

Every write of the store contract is refused with a ``StoreError``: Temporal is the only writer
of its runs. Listing order is Temporal's: open runs first (newest started first), then ended runs,
most recently ended first. Temporal keeps every run of an id (until its retention): ``list``
shows each, ``load`` the newest.
"""

from __future__ import annotations

import contextlib
from datetime import datetime, timedelta, timezone
from typing import Any

from ..engine.errors import StoreError
from ..engine.types import (
    EventType,
    HistoryEvent,
    WorkflowFilter,
    WorkflowState,
    WorkflowStatus,
)
from .base import WorkflowStore

__all__ = ["TemporalStore"]

_READ_ONLY = ("the temporal store is read-only: Temporal writes its runs. Start, signal and "
              "cancel them through the temporal executor (BELUGA_WORKFLOWS['EXECUTOR']"
              "['BACKEND'] = 'temporal')")


def _quote(text: str) -> str:
    """A visibility query string literal."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


class TemporalStore(WorkflowStore):
    """Runs on a Temporal server, read through its visibility and history APIs.

    Args:
        target: ``host:port`` of the Temporal frontend.
        namespace: the Temporal namespace.
        task_queue: accepted (the executor's connection keys), unused by the store.
    """

    backend_name = "temporal"
    # Temporal serialises each run's progress itself and this store writes nothing, so two
    # processes can never clobber each other through it.
    supports_compare_and_set = True
    supports_listing = True
    unreachable_hint = ("Start the Temporal server (temporal server start-dev --headless --ip "
                        "127.0.0.1 --port 7233) or fix OPTIONS 'target' and 'namespace'.")

    def __init__(self, *, target: str = "127.0.0.1:7233", namespace: str = "default",
                 task_queue: str | None = None, **options: Any) -> None:
        super().__init__(target=target, namespace=namespace, **options)
        from ..runtimes.temporal.connection import connection_for

        self.connection = connection_for(target, namespace)

    # -- reading ------------------------------------------------------------------------------

    def _run(self, call: Any, timeout: float | None = None) -> Any:
        """``connection.run(call)`` with the backend's failures as ``StoreError``."""
        from temporalio.service import RPCError

        try:
            return self.connection.run(call, timeout)
        except RPCError as exc:
            raise self.backend_error("rpc", exc) from exc
        except TimeoutError as exc:
            raise self.connection.unreachable(exc) from exc

    def ping(self) -> None:
        """Ask the server for its health (one RPC).

        Raises:
            StoreError: it cannot be reached.
        """
        async def call(client: Any) -> None:
            await client.count_workflows("", rpc_timeout=self.connection.timeout)

        self._run(call)

    def query_for(self, filter: WorkflowFilter | None) -> str:
        """The visibility query of ``filter``."""
        from ..runtimes.temporal.mapping import STATUS_QUERY

        filter = filter or WorkflowFilter()
        parts = []
        if filter.status is not None:
            parts.append(STATUS_QUERY[WorkflowStatus(filter.status)])
        if filter.workflow_type:
            parts.append(f"WorkflowType = {_quote(filter.workflow_type)}")
        if filter.workflow_id_prefix:
            parts.append(f"WorkflowId STARTS_WITH {_quote(filter.workflow_id_prefix)}")
        if filter.parent_id:
            parts.append(f"ParentWorkflowId = {_quote(filter.parent_id)}")
        return " AND ".join(parts)

    def list(self, filter: WorkflowFilter | None = None) -> list[WorkflowState]:
        """Runs matching ``filter`` in Temporal's order (see the module docstring), without
        histories (open runs with the wait their memo records). A ``wait_kind`` filter matches
        nothing: visibility cannot query a memo."""
        filter = filter or WorkflowFilter()
        if filter.wait_kind:
            return []
        offset = max(filter.offset, 0)
        wanted = offset + filter.limit if filter.limit > 0 else None
        query = self.query_for(filter)

        async def call(client: Any) -> list[Any]:
            found = []
            async for execution in client.list_workflows(
                    query or None, limit=wanted, page_size=min(wanted or 1000, 1000),
                    rpc_timeout=self.connection.timeout):
                found.append(execution)
            return found

        return [_listed(e) for e in self._run(call)[offset:]]

    def count(self, filter: WorkflowFilter | None = None) -> int:
        """How many runs match ``filter`` (one ``count_workflows``)."""
        filter = filter or WorkflowFilter()
        if filter.wait_kind:
            return 0
        query = self.query_for(filter)

        async def call(client: Any) -> int:
            counted = await client.count_workflows(query or None, rpc_timeout=self.connection.timeout)
            return counted.count

        return self._run(call)

    def count_by_status(self) -> dict[str, int]:
        """How many runs are in each status (one ``count_workflows ... GROUP BY``)."""
        from ..runtimes.temporal.mapping import status_of

        async def call(client: Any) -> list[tuple[Any, int]]:
            counted = await client.count_workflows("GROUP BY ExecutionStatus",
                                                   rpc_timeout=self.connection.timeout)
            return [(group.group_values[0], group.count) for group in counted.groups]

        counts = {s.value: 0 for s in WorkflowStatus}
        for value, count in self._run(call):
            counts[_status_named(value, status_of).value] += count
        return counts

    def count_children(self, workflow_ids: Any) -> dict[str, int]:
        """The temporal executor starts no child runs: none."""
        return {}

    def load(self, workflow_id: str, *, with_history: bool = True) -> WorkflowState | None:
        """The newest run of ``workflow_id`` (``describe`` and its history), or ``None``."""
        return self.load_run(workflow_id, None, with_history=with_history)

    def load_run(self, workflow_id: str, run_id: str | None, *, with_history: bool = True
                 ) -> WorkflowState | None:
        """Run ``run_id`` of ``workflow_id`` (``None``: the newest), or ``None`` if Temporal has
        no such run. Its input, result and error come from its history's first and last events."""
        from temporalio.service import RPCError, RPCStatusCode

        async def call(client: Any) -> tuple[Any, list[Any]] | None:
            handle = client.get_workflow_handle(workflow_id, run_id=run_id)
            try:
                described = await handle.describe(rpc_timeout=self.connection.timeout)
                history = await client.get_workflow_handle(
                    workflow_id, run_id=described.run_id).fetch_history(
                    rpc_timeout=self.connection.timeout)
            except RPCError as exc:
                if exc.status is RPCStatusCode.NOT_FOUND:
                    return None
                raise
            return described, list(history.events)

        found = self._run(call)
        if found is None:
            return None
        described, events = found
        return _state(described, events, with_history)

    def history(self, workflow_id: str, *, after: int = 0, limit: int = 0) -> list[HistoryEvent]:
        """The newest run's events (mapped) with ``id > after``, at most ``limit``."""
        state = self.load(workflow_id)
        if state is None:
            return []
        events = [e for e in state.history if e.id > after]
        return events[:limit] if limit > 0 else events

    def due(self, now: Any, limit: int = 500) -> list[str]:
        """None: Temporal fires its own timers and retries."""
        return []

    # -- writes: refused ------------------------------------------------------------------------

    def _refuse(self, *args: Any, **kwargs: Any) -> Any:
        raise StoreError(_READ_ONLY, code="read_only")

    save = create = delete = claim = append = suspend = refresh = renew = _refuse
    add_signal = request_cancel = append_and_suspend = continue_as_new = _refuse

    def close(self) -> None:
        """Nothing: the connection is the process's, shared with the executor."""


def _status_named(value: Any, status_of: Any) -> WorkflowStatus:
    """Our status for a ``GROUP BY ExecutionStatus`` value (a name such as ``"Running"``)."""
    from temporalio.api.enums.v1 import WorkflowExecutionStatus as TStatus

    name = str(value).strip('"')
    snake = "".join("_" + c if c.isupper() else c for c in name).upper().lstrip("_")
    with contextlib.suppress(ValueError):
        return status_of(TStatus.Value(f"WORKFLOW_EXECUTION_STATUS_{snake}"))
    return WorkflowStatus.RUNNING


def _listed(execution: Any) -> WorkflowState:
    """A run as the visibility API lists it (no input, result or history)."""
    from ..runtimes.temporal.mapping import status_of

    status = status_of(execution.status) if execution.status is not None else WorkflowStatus.RUNNING
    return WorkflowState(
        workflow_id=execution.id, run_id=execution.run_id, workflow_type=execution.workflow_type,
        status=status, created_at=execution.start_time,
        updated_at=execution.close_time or execution.start_time, ended_at=execution.close_time,
        queue=execution.task_queue, parent_id=execution.parent_id or "",
        **(_wait_of(execution) if status is WorkflowStatus.RUNNING else {}))


def _wait_of(execution: Any) -> dict[str, Any]:
    """``wait_kind``, ``wait_name``, ``wait_until`` from the run's wait memo (what its workflow
    put there as its current wait began: ``activity``, ``signal`` or ``timer``)."""
    from ..runtimes.temporal.mapping import decode_payloads
    from ..runtimes.temporal.workflow import WAIT_MEMO

    raw = getattr(execution, "raw_info", None)
    fields = raw.memo.fields if raw is not None else {}
    if WAIT_MEMO not in fields:
        return {}
    values = decode_payloads([fields[WAIT_MEMO]])
    wait = values[0] if values else None
    if not isinstance(wait, dict) or not wait.get("kind"):
        return {}
    until = wait.get("until")
    try:
        wait_until = datetime.fromisoformat(until) if isinstance(until, str) else None
    except ValueError:
        wait_until = None
    return {"wait_kind": str(wait["kind"]), "wait_name": str(wait.get("name") or ""),
            "wait_until": wait_until}


def _retrying(state: WorkflowState, pending: Any) -> None:
    """A pending activity between attempts is a ``retry`` wait until its next attempt; one a
    worker has started is ``working``."""
    from temporalio.api.enums.v1 import PendingActivityState

    for activity in pending:
        if activity.HasField("next_attempt_schedule_time") and activity.attempt > 1:
            state.wait_kind, state.wait_name = "retry", activity.activity_type.name
            state.wait_until = activity.next_attempt_schedule_time.ToDatetime().replace(
                tzinfo=timezone.utc)
            return
    if any(a.state == PendingActivityState.PENDING_ACTIVITY_STATE_STARTED for a in pending):
        state.wait_kind, state.wait_until = "working", None


def _state(described: Any, events: list[Any], with_history: bool) -> WorkflowState:
    """A run as ``describe`` and its history give it."""
    from ..runtimes.temporal.mapping import map_history

    state = _listed(described)
    history = map_history(events)
    timeout = described.raw_description.execution_config.workflow_execution_timeout
    seconds = timeout.ToTimedelta().total_seconds()
    if seconds:
        state.deadline = state.created_at + timedelta(seconds=seconds)
    if history and history[0].type is EventType.WORKFLOW_STARTED:
        state.input = history[0].input
    last = history[-1] if history else None
    if last is not None and not state.is_open:
        state.result = last.result if last.type is EventType.WORKFLOW_COMPLETED else None
        state.error = last.error
    state.cancel_requested = any(e.type is EventType.CANCEL_REQUESTED for e in history)
    if state.is_open and state.wait_kind == "activity":
        _retrying(state, described.raw_description.pending_activities)
    state.history = history if with_history else []
    return state
