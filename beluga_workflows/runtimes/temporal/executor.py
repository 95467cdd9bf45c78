"""The ``temporal`` runtime: our workflow functions run on a Temporal server.

``"EXECUTOR": {"BACKEND": "temporal", "OPTIONS": {"target": "127.0.0.1:7233", "namespace":
"default", "task_queue": "beluga"}}``. ``execute`` starts a Temporal workflow (id: ours, type: the
registered name, the input as its one argument, ``timeout`` as its execution timeout) on the
task queue that ``python manage.py workflows_temporal_worker`` polls; ``signal``, ``cancel`` and
custom queries are Temporal's; ``status``/``result``/``history`` and handles read the run back
through the read-only ``TemporalStore`` over the same connection (``executor.store``, whatever
``STORE`` says: the runs live in Temporal).

``"local_activities": True`` (or a list of activity names) runs those activities as Temporal
*local activities*: in the worker that runs the workflow task, recorded as markers when the task
completes, without a round trip through the server per activity (W1: ~35-50 ms instead of ~550
ms). The choice is made when a run starts (the run's memo), so a run replays the same way after
the setting changes. What a local activity gives up: it is not visible to Temporal while it runs,
it cannot go to another task queue (``queue`` makes it a normal activity) and, after a worker
crash, every local activity since the run's last completed workflow task runs again.

What the engine's other runtimes do and this one leaves to Temporal or refuses: timers, retries
and recovery are Temporal's (``recover``/``sweep`` schedule nothing); events, flow control,
child workflows, human activities, ``resume`` and ``fork`` are not available (a clear error);
hooks do not fire in the Temporal worker.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from ...engine.errors import (
    InvalidInputError,
    StoreError,
    WorkflowNotFoundError,
    WorkflowNotRunningError,
)
from ...engine.executor import (
    BUILTIN_QUERIES,
    WorkflowExecutor,
    WorkflowHandle,
    _options,
    validate_workflow_id,
)
from ...engine.registry import get_workflow, workflow_name
from ...engine.serialization import to_json_value
from ...engine.types import Signal, WorkflowOptions, WorkflowState, WorkflowStatus, to_seconds
from ...stores.base import already_open
from ...stores.temporal import TemporalStore
from .connection import connection_for
from .workflow import LOCAL_ACTIVITIES_MEMO

__all__ = ["TemporalExecutor"]


class TemporalExecutor(WorkflowExecutor):
    """Runs on Temporal. See the module docstring.

    Args:
        target: ``host:port`` of the Temporal frontend.
        namespace: the Temporal namespace.
        task_queue: the task queue runs start on (``WorkflowOptions.queue`` overrides it).
        store: ignored unless it is a ``TemporalStore`` (runs are read where they live).
    """

    name = "temporal"
    dispatch_verb = "left to Temporal"

    def __init__(self, *, target: str = "127.0.0.1:7233", namespace: str = "default",
                 task_queue: str = "beluga", store: Any = None,
                 local_activities: bool | list[str] | tuple[str, ...] = False,
                 **options: Any) -> None:
        super().__init__(store=None, **options)
        if not isinstance(task_queue, str) or not task_queue:
            raise InvalidInputError("task_queue must be a non-empty string")
        if isinstance(local_activities, (list, tuple)):
            if not all(isinstance(name, str) and name for name in local_activities):
                raise InvalidInputError("local_activities must be True, False or a list of "
                                        "activity names")
            local_activities = sorted(set(local_activities))
        elif not isinstance(local_activities, bool):
            raise InvalidInputError("local_activities must be True, False or a list of activity "
                                    "names")
        self.local_activities: bool | list[str] = local_activities
        self.target, self.namespace, self.task_queue = target, namespace, task_queue
        self.connection = connection_for(target, namespace)
        self._temporal_store = (store if isinstance(store, TemporalStore)
                                else TemporalStore(target=target, namespace=namespace))

    @property
    def store(self) -> TemporalStore:
        """The read-only store over this executor's Temporal connection."""
        return self._temporal_store

    # -- calls ----------------------------------------------------------------------------------

    def _call(self, workflow_id: str | None, call: Callable[[Any], Any],
              timeout: float | None = None) -> Any:
        """Run ``call(client)``; Temporal's "no such open run" as our not-found/not-running."""
        from temporalio.service import RPCError, RPCStatusCode

        try:
            return self.connection.run(call, timeout)
        except RPCError as exc:
            if exc.status is RPCStatusCode.NOT_FOUND and workflow_id is not None:
                raise self._no_open_run(workflow_id) from None
            if exc.status in (RPCStatusCode.INVALID_ARGUMENT, RPCStatusCode.FAILED_PRECONDITION):
                raise InvalidInputError(f"Temporal refused it: {exc}",
                                        workflow_id=workflow_id) from exc
            raise StoreError(f"temporal: {exc}", workflow_id=workflow_id) from exc
        except TimeoutError as exc:
            raise self.connection.unreachable(exc) from exc

    def _no_open_run(self, workflow_id: str) -> Exception:
        state = self.store.load(workflow_id, with_history=False)
        if state is None:
            return WorkflowNotFoundError(f"no workflow with id {workflow_id!r}",
                                         workflow_id=workflow_id)
        return WorkflowNotRunningError(f"workflow {workflow_id!r} has ended ({state.status})",
                                       workflow_id=workflow_id)

    # -- starting -------------------------------------------------------------------------------

    def execute(self, workflow: Callable[..., Any] | str, options: WorkflowOptions | None = None
                ) -> WorkflowHandle:
        """Start a Temporal workflow for the run; returns once Temporal has recorded it.

        Raises:
            InvalidInputError: unknown workflow type, bad id, input, timeout or queue, or a
                workflow that declares flow control or is started by events only.
            WorkflowAlreadyExistsError: a run of that id is still open.
        """
        options = _options(options)
        type_name = workflow_name(workflow)
        definition = get_workflow(type_name)
        if definition.flow is not None:
            raise InvalidInputError(f"workflow {type_name!r} declares flow control, which the "
                                    f"temporal executor does not enforce")
        workflow_id = (validate_workflow_id(options.id) if options.id is not None
                       else f"wf-{uuid.uuid4()}")
        data = to_json_value(options.input, "workflow input", max_bytes=self.max_payload_bytes)
        timeout = to_seconds(options.timeout, "workflow timeout")
        if timeout is not None and timeout <= 0:
            raise InvalidInputError("workflow timeout must be positive")
        queue = options.queue
        if queue is not None and (not isinstance(queue, str) or not queue):
            raise InvalidInputError("queue must be a non-empty string")

        async def start(client: Any) -> str:
            from temporalio.exceptions import WorkflowAlreadyStartedError

            try:
                handle = await client.start_workflow(
                    type_name, data, id=workflow_id, task_queue=queue or self.task_queue,
                    execution_timeout=timedelta(seconds=timeout) if timeout else None,
                    memo=({LOCAL_ACTIVITIES_MEMO: self.local_activities}
                          if self.local_activities else None),
                    rpc_timeout=self.connection.timeout)
            except WorkflowAlreadyStartedError as exc:
                raise already_open(workflow_id, exc.run_id or "?") from None
            return handle.result_run_id

        run_id = self._call(None, start)
        return WorkflowHandle(self, workflow_id, run_id)

    def get_handle(self, workflow_id: str) -> WorkflowHandle:
        """A handle on the newest run of ``workflow_id``.

        Raises:
            WorkflowNotFoundError: Temporal has no run of that id.
        """
        state = self._load(workflow_id, with_history=False)
        return WorkflowHandle(self, state.workflow_id, state.run_id)

    # -- steering -------------------------------------------------------------------------------

    def signal(self, workflow_id: str, signal: Signal) -> Signal:
        """Send ``signal`` to the open run (Temporal records it: it is never lost).

        Raises:
            WorkflowNotFoundError / WorkflowNotRunningError: no such run, or it has ended.
            InvalidInputError: a bad name or payload.
        """
        validate_workflow_id(workflow_id)
        if not isinstance(signal, Signal):
            raise InvalidInputError("signal must be a Signal(name, payload)")
        if not isinstance(signal.name, str) or not signal.name.strip() or len(signal.name) > 255:
            raise InvalidInputError("signal name must be a non-empty string of at most 255 characters")
        payload = to_json_value(signal.payload, "signal payload", max_bytes=self.max_payload_bytes)

        async def send(client: Any) -> None:
            await client.get_workflow_handle(workflow_id).signal(
                signal.name, payload, rpc_timeout=self.connection.timeout)

        self._call(workflow_id, send)
        return Signal(name=signal.name, payload=payload, sent_at=signal.sent_at or self.clock.now(),
                      sender_id=signal.sender_id)

    def cancel(self, workflow_id: str) -> None:
        """Request cancellation: the run's next ``ctx`` call raises ``WorkflowCanceledError``.

        Raises:
            WorkflowNotFoundError / WorkflowNotRunningError: no such run, or it has ended.
        """
        validate_workflow_id(workflow_id)
        state = self._load(workflow_id, with_history=False)
        if not state.is_open:  # Temporal accepts a cancel of an ended run silently
            raise self._no_open_run(workflow_id)

        async def cancel(client: Any) -> None:
            await client.get_workflow_handle(workflow_id, run_id=state.run_id).cancel(
                rpc_timeout=self.connection.timeout)

        self._call(workflow_id, cancel)

    def query(self, workflow_id: str, query_type: str) -> Any:
        """Built-ins ``status``, ``result``, ``history`` from the store; others are Temporal
        queries answered by the workflow's handlers (by a worker, on a replay if need be).

        Raises:
            WorkflowNotFoundError: no such workflow.
            InvalidInputError: unknown query type, or its handler failed.
        """
        if not isinstance(query_type, str) or not query_type:
            raise InvalidInputError("query type must be a non-empty string")
        if query_type in BUILTIN_QUERIES:
            return super().query(workflow_id, query_type)
        self._load(workflow_id, with_history=False)

        async def ask(client: Any) -> Any:
            from temporalio.client import WorkflowQueryFailedError

            try:
                return await client.get_workflow_handle(workflow_id).query(
                    query_type, rpc_timeout=self.connection.timeout)
            except WorkflowQueryFailedError as exc:
                raise InvalidInputError(str(exc), workflow_id=workflow_id) from None

        return self._call(workflow_id, ask)

    # -- waiting ----------------------------------------------------------------------------------

    def wait(self, workflow_id: str, run_id: str, timeout: float | None) -> WorkflowState:
        """Block until the run (or the run it continued as) has ended: Temporal's long poll.

        Raises:
            TimeoutError: still open after ``timeout`` seconds.
            WorkflowNotFoundError: Temporal has no such run.
        """
        async def closed(client: Any) -> None:
            from temporalio.client import WorkflowFailureError

            handle = client.get_workflow_handle(workflow_id, run_id=run_id)
            try:
                await asyncio.wait_for(handle.result(follow_runs=True), timeout)
            except WorkflowFailureError:
                pass
            except asyncio.TimeoutError:
                raise TimeoutError(f"workflow {workflow_id!r} still running after "
                                   f"{timeout:g} s") from None

        try:
            self.connection.run(closed, None if timeout is None else timeout + 30)
        except TimeoutError:
            raise
        except Exception as exc:  # noqa: BLE001 - the run may be gone, or the server
            if self.store.load_run(workflow_id, run_id, with_history=False) is None:
                raise WorkflowNotFoundError(f"run {run_id} of workflow {workflow_id!r} is not in "
                                            f"Temporal", workflow_id=workflow_id) from exc
        state = self.store.load_run(workflow_id, run_id, with_history=False)
        if state is not None and state.status is WorkflowStatus.COMPLETED and self.continued(
                workflow_id, run_id):
            state = self.store.load(workflow_id, with_history=False)
        if state is None:
            raise WorkflowNotFoundError(f"run {run_id} of workflow {workflow_id!r} is not in "
                                        f"Temporal", workflow_id=workflow_id)
        return state

    def continued(self, workflow_id: str, run_id: str) -> bool:
        """Whether run ``run_id`` ended by continuing as new."""
        from temporalio.client import WorkflowExecutionStatus

        async def describe(client: Any) -> bool:
            described = await client.get_workflow_handle(workflow_id, run_id=run_id).describe(
                rpc_timeout=self.connection.timeout)
            return described.status is WorkflowExecutionStatus.CONTINUED_AS_NEW

        return self._call(workflow_id, describe)

    # -- what Temporal does itself, or what it lacks --------------------------------------------

    def schedule(self, workflow_id: str, *, at: datetime | None = None, queue: str | None = None
                 ) -> None:
        """Nothing: Temporal hands runs to workers itself."""

    def recover(self, now: datetime | None = None, limit: int = 1000) -> list[str]:
        """Nothing to recover: Temporal keeps timers, retries and workers' leases itself."""
        return []

    def resume(self, workflow_id: str) -> WorkflowHandle:
        """Not on Temporal (Temporal's own ``reset`` does it)."""
        raise InvalidInputError("resume is not available on the temporal executor: use "
                                "Temporal's 'temporal workflow reset'", workflow_id=workflow_id)

    def fork(self, workflow_id: str, *, from_event: int | None = None, id: str | None = None
             ) -> WorkflowHandle:
        """Not on Temporal (Temporal's own ``reset`` does it)."""
        raise InvalidInputError("fork is not available on the temporal executor: use "
                                "Temporal's 'temporal workflow reset'", workflow_id=workflow_id)
