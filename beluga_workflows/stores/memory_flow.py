"""Flow control in the ``memory`` store (``MemoryStore``): slots, waiters, GCRA buckets, event
groups and the trigger ledger, each operation one step under the store's lock.

The rules are those of ``WorkflowStore``'s "flow control" section and ``engine/flow.py``; under
one lock nothing can interleave, so no operation here needs a retry.
"""

from __future__ import annotations

import copy
import uuid
from datetime import datetime, timedelta
from typing import Any

from ..engine.events import Event, EventRecord, EventWait, empty_outcome, merge_outcome
from ..engine.flow import Admission, Bucket, debounce_due, gcra, promoted_wait
from ..engine.types import WorkflowState
from . import transitions

__all__ = ["MemoryFlowControl"]


def _skip(workflow_type: str, reason: str) -> dict[str, str]:
    return {"workflow_type": workflow_type, "reason": reason}


class MemoryFlowControl:
    """The flow-control half of ``MemoryStore`` (its lock and runs are the store's)."""

    supports_flow_control = True
    _lock: Any
    _runs: dict[str, WorkflowState]
    _events: dict[str, EventRecord]
    _waits: dict[str, dict[int, EventWait]]

    def _init_flow(self) -> None:
        # (event id, workflow type) -> the ledger row.
        self._ledger: dict[tuple[str, str], dict[str, str]] = {}
        self._slots: dict[Bucket, dict[int, str]] = {}  # bucket -> slot number -> run id
        self._limits: dict[Bucket, int] = {}
        # bucket -> run id -> (order_at, workflow id, limit, arrival number)
        self._waiters: dict[Bucket, dict[str, tuple[datetime, str, int, int]]] = {}
        self._arrivals = 0
        self._tats: dict[Bucket, datetime] = {}
        self._groups: dict[str, dict[str, Any]] = {}

    # -- admission -------------------------------------------------------------------------------

    def _take(self, gate: Any, now: datetime, *, delay: bool) -> tuple[bool, datetime]:
        start, tat = gcra(self._tats.get(gate.bucket), now, gate.limit, gate.period)
        if start > now and not delay:
            return False, start
        self._tats[gate.bucket] = tat
        return True, start

    def _admit(self, state: WorkflowState, admission: Admission) -> None:
        """Enforce ``admission`` for the new run ``state`` (see the store contract), under the lock.

        Raises:
            RateLimitExceededError: the rate limit refuses it (nothing changed).
        """
        now = state.created_at
        admission.take_rates(state, self._take)
        if not admission.slots:
            return
        full = next(((b, limit) for b, limit in admission.slots
                     if self._waiters.get(b) or len(self._slots.get(b, {})) >= limit), None)
        if full is None:
            for bucket, limit in admission.slots:
                self._take_slot(bucket, limit, state.run_id)
            return
        bucket, limit = full
        admission.mark_waiting(state, bucket, len(self._slots.get(bucket, {})), limit)
        self._arrivals += 1
        for b, lim in admission.slots:
            self._waiters.setdefault(b, {})[state.run_id] = (admission.order_at or now,
                                                             state.workflow_id, lim, self._arrivals)

    def _take_slot(self, bucket: Bucket, limit: int, run_id: str) -> bool:
        used = self._slots.setdefault(bucket, {})
        free = next((n for n in range(limit) if n not in used), None)
        if free is None:
            return False
        used[free] = run_id
        self._limits[bucket] = limit
        return True

    def _release(self, run_id: str) -> list[Bucket]:
        """Free ``run_id``'s slots and waiter rows; the buckets whose slots it freed."""
        freed = []
        for bucket, used in self._slots.items():
            for number in [n for n, r in used.items() if r == run_id]:
                del used[number]
                freed.append(bucket)
        for waiters in self._waiters.values():
            waiters.pop(run_id, None)
        return sorted(set(freed))

    def _start_admitted(self, state: WorkflowState, waits: list[EventWait],
                        admission: Admission | None) -> None:
        if admission is not None:
            self._admit(state, admission)
        self._keep(transitions.create(self._runs.get(state.workflow_id), state))
        self._waits[state.run_id] = {w.op: w for w in waits}

    # -- slots -------------------------------------------------------------------------------------

    def promote(self, buckets: list[Bucket], now: datetime, limit: int = 100
                ) -> list[tuple[str, str]]:
        """Hand free slots to the waiters in ``order_at`` order, under the lock."""
        promoted: list[tuple[str, str]] = []
        with self._lock:
            for bucket in sorted(set(buckets)):
                waiters = self._waiters.get(bucket, {})
                for run_id, _ in sorted(waiters.items(), key=lambda item: (item[1][0], item[1][3])):
                    if len(promoted) >= limit:
                        return promoted
                    needs = [(b, w[run_id][2]) for b, w in sorted(self._waiters.items())
                             if run_id in w]
                    if any(len(self._slots.get(b, {})) >= lim for b, lim in needs):
                        if len(self._slots.get(bucket, {})) >= waiters[run_id][2]:
                            break  # this bucket is full: the rest wait
                        continue  # held back by its other bucket
                    workflow_id = waiters[run_id][1]
                    for b, lim in needs:
                        self._take_slot(b, lim, run_id)
                        self._waiters[b].pop(run_id, None)
                    state = self._runs.get(workflow_id)
                    if state is not None and state.run_id == run_id and state.is_open:
                        transitions.wake(state, now)
                        for name, value in promoted_wait(state.wait_until, now).items():
                            setattr(state, name, value)
                        promoted.append((workflow_id, state.queue or ""))
        return promoted

    def release_orphans(self, now: datetime, limit: int = 1000) -> list[Bucket]:
        """Free the slots and waiters of runs that are not open any more, under the lock."""
        with self._lock:
            open_runs = {s.run_id for s in self._runs.values() if s.is_open}
            orphans = {r for used in self._slots.values() for r in used.values()
                       if r not in open_runs}
            orphans |= {r for waiters in self._waiters.values() for r in waiters
                        if r not in open_runs}
            freed: set[Bucket] = set()
            for run_id in sorted(orphans)[:limit]:
                freed.update(self._release(run_id))
            return sorted(freed)

    def waiting_buckets(self, limit: int = 1000) -> list[Bucket]:
        """The buckets with waiters, under the lock."""
        with self._lock:
            return sorted(b for b, waiters in self._waiters.items() if waiters)[:limit]

    def flow_usage(self, workflow_type: str | None = None) -> list[dict[str, Any]]:
        """Slots in use and waiters per bucket, under the lock."""
        with self._lock:
            buckets = {b for b, used in self._slots.items() if used}
            buckets |= {b for b, waiters in self._waiters.items() if waiters}
            rows = []
            for bucket in sorted(buckets):
                if workflow_type is not None and bucket[0] != workflow_type:
                    continue
                waiters = self._waiters.get(bucket, {})
                limit = self._limits.get(bucket) or next(
                    (w[2] for w in waiters.values()), 0)
                rows.append({"workflow_type": bucket[0], "scope": bucket[1], "key": bucket[2],
                             "in_use": len(self._slots.get(bucket, {})), "limit": limit,
                             "waiting": len(waiters)})
            return rows

    # -- the ledger and event groups ------------------------------------------------------------

    def get_delivery(self, event_id: str, workflow_type: str) -> dict[str, str] | None:
        """A copy of the ledger row, under the lock."""
        with self._lock:
            row = self._ledger.get((event_id, workflow_type))
            return dict(row) if row is not None else None

    def _deliver(self, event_id: str, workflow_type: str, **row: str) -> None:
        self._ledger[(event_id, workflow_type)] = {
            "workflow_id": "", "run_id": "", "outcome": "started", "reason": "", "group": "",
            **row}

    def _add_outcome(self, event_id: str, **outcome: list) -> None:
        record = self._events.get(event_id)
        if record is not None:
            record.outcome = merge_outcome(record.outcome, {**empty_outcome(), **outcome})

    def group_event(self, event: Event, received_at: datetime, workflow_type: str, kind: str,
                    key: str, *, period: float, timeout: float | None, max_size: int
                    ) -> dict[str, Any]:
        """Add the event to its open group (opening one), under the lock."""
        with self._lock:
            known = self._ledger.get((event.id, workflow_type))
            if known is not None:
                group = self._groups.get(known["group"])
                return {"outcome": known["outcome"], "group": known["group"],
                        "due_at": group["due_at"] if group else None, "reason": known["reason"]}
            group = next((g for g in self._groups.values() if g["workflow_type"] == workflow_type
                          and g["key"] == key and not g["closed"]), None)
            if group is not None and group["due_at"] <= received_at:
                group["closed"] = True  # past due: it fires as it is
                group = None
            if group is None:
                group = {"id": uuid.uuid4().hex, "workflow_type": workflow_type, "kind": kind,
                         "key": key, "opened_at": received_at, "size": 0, "closed": False,
                         "event_id": "", "event_ts": None, "version": 0,
                         "due_at": received_at + timedelta(seconds=period)}
                self._groups[group["id"]] = group
            outcome, reason = ("debounced" if kind == "debounce" else "batched"), ""
            group["size"] += 1
            group["version"] += 1
            if kind == "debounce":
                group["due_at"] = debounce_due(group["opened_at"], received_at, period, timeout)
                newer = group["event_ts"] is None or event.ts >= group["event_ts"]
                if newer:
                    if group["event_id"]:
                        self._supersede(group["event_id"], workflow_type, event.id)
                    group["event_id"], group["event_ts"] = event.id, event.ts
                else:
                    outcome = "skipped"
                    reason = (f"debounce: event {group['event_id']!r} of the same burst is newer "
                              f"(its ts is later)")
                    self._add_outcome(event.id, skipped=[_skip(workflow_type, reason)])
            elif group["size"] >= max_size:
                group["closed"] = True
            self._deliver(event.id, workflow_type, outcome=outcome, reason=reason,
                          group=group["id"])
            return {"outcome": outcome, "group": group["id"],
                    "due_at": received_at if group["closed"] else group["due_at"],
                    "reason": reason}

    def _supersede(self, old_event: str, workflow_type: str, new_event: str) -> None:
        reason = f"debounce: superseded by the newer event {new_event!r}"
        row = self._ledger.get((old_event, workflow_type))
        if row is not None:
            row.update(outcome="skipped", reason=reason)
        self._add_outcome(old_event, skipped=[_skip(workflow_type, reason)])

    def due_groups(self, now: datetime, limit: int = 100) -> list[dict[str, Any]]:
        """Copies of the due groups with their events, under the lock."""
        with self._lock:
            due = sorted((g for g in self._groups.values() if g["closed"] or g["due_at"] <= now),
                         key=lambda g: (g["due_at"], g["id"]))[:max(limit, 0)]
            return [self._described(g) for g in due]

    def _described(self, group: dict[str, Any]) -> dict[str, Any]:
        if group["kind"] == "debounce":
            ids = [group["event_id"]]
        else:
            ids = [e for (e, t), row in self._ledger.items()
                   if t == group["workflow_type"] and row["group"] == group["id"]]
            ids.sort(key=lambda e: (self._events[e].received_at, e) if e in self._events else
                     (datetime.max.replace(tzinfo=None), e))
        events = [copy.deepcopy(self._events[e].event) for e in ids if e in self._events]
        return {"id": group["id"], "workflow_type": group["workflow_type"], "kind": group["kind"],
                "key": group["key"], "version": group["version"], "events": events}

    def next_group_due(self) -> datetime | None:
        """The soonest due time of an open group, under the lock."""
        with self._lock:
            return min((g["due_at"] for g in self._groups.values()), default=None)

    def fire_group(self, group: dict[str, Any], state: WorkflowState, *,
                   waits: list[EventWait] = (), admission: Admission | None = None) -> bool:
        """Start the group's run and drop the group if its version is unchanged, under the lock."""
        with self._lock:
            current = self._groups.get(group["id"])
            if current is None or current["version"] != group["version"]:
                return False
            self._start_admitted(state, list(waits), admission)
            del self._groups[group["id"]]
            for (event_id, _), row in self._ledger.items():
                if row["group"] == group["id"] and row["outcome"] != "skipped":
                    row.update(outcome="started", workflow_id=state.workflow_id,
                               run_id=state.run_id)
                    self._add_outcome(event_id, started=[state.workflow_id])
            return True
