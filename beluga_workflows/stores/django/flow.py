"""Flow control in the ``django`` store (API.md §9, ``engine/flow.py``): slots, waiters, GCRA
buckets and event groups, on PostgreSQL and SQLite alike.

- **Slots.** A ``ConcurrencySlot`` row per slot in use, unique on (workflow type, scope, key,
  slot number) and checked ``0 <= slot < slot_limit`` by the database: two runs can never hold the
  same slot, whatever the workers do. A start reads the numbers in use and inserts the lowest
  free one under a savepoint; a concurrent start that took it first makes the insert fail (on
  PostgreSQL it waits for that transaction, then sees its row) and the start reads again. Slots
  are taken in the write that stores the run and deleted in the write that ends it.
- **Waiters.** A run that finds no free slot (or finds runs already waiting for one) is stored
  with a ``ConcurrencyWaiter`` row per bucket. ``promote`` hands free slots to waiters oldest
  ``order_at`` first (ties: the earlier waiter row), one short transaction per promotion, rows locked ``SKIP LOCKED`` where the
  database has it, so two promoters never grant one waiter twice and never wait on each other.
- **Buckets.** Throttle and rate-limit state is one ``FlowBucket`` row per key, updated by
  compare-and-set on ``version`` (an insert for a new key, refused by the unique key if another
  writer inserted it first): a lost race reads again.
- **Groups.** Debounce and batch groups are ``EventGroup`` rows (one open group per workflow type
  and key, by a partial unique constraint) holding their events through the ledger
  (``EventDelivery.group``); ``fire_group`` deletes the group, fenced on its ``version``, in the
  write that starts its run.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any

from django.db import IntegrityError, connections, transaction
from django.db.models import Count, Exists, F, Max, OuterRef, Q

from ... import models
from ...engine.errors import ConflictError
from ...engine.events import Event, EventWait, empty_outcome, merge_outcome
from ...engine.flow import Admission, Bucket, Gcra, debounce_due, gcra, promoted_wait
from ...engine.types import RunEnd, WorkflowState, WorkflowStatus
from ..base import check_history, guarded

__all__ = ["DjangoFlowControl"]

RUNNING = WorkflowStatus.RUNNING.value
# How often a compare-and-set or a slot insert is tried again under contention.
_ATTEMPTS = 50
# How many waiters of a bucket a promotion looks at past ones held back by their other bucket.
_LOOKAHEAD = 10


def _bucket_filter(bucket: Bucket) -> dict[str, str]:
    return {"workflow_type": bucket[0], "scope": bucket[1], "key": bucket[2]}


def _skip(workflow_type: str, reason: str) -> dict[str, str]:
    return {"workflow_type": workflow_type, "reason": reason}


class DjangoFlowControl:
    """The flow-control operations of ``DjangoStore`` (see the module docstring)."""

    supports_flow_control = True
    using: str

    @property
    def _slots(self):
        return models.ConcurrencySlot.objects.using(self.using)

    @property
    def _waiters(self):
        return models.ConcurrencyWaiter.objects.using(self.using)

    @property
    def _buckets(self):
        return models.FlowBucket.objects.using(self.using)

    @property
    def _groups(self):
        return models.EventGroup.objects.using(self.using)

    def _skip_locked(self) -> bool:
        return connections[self.using].features.has_select_for_update_skip_locked

    # -- admission (inside the caller's transaction) ---------------------------------------------

    def _admit(self, state: WorkflowState, admission: Admission) -> None:
        """Enforce ``admission`` for the new run ``state`` (the store contract's three steps),
        setting its wait fields; the caller's transaction holds every row written here.

        Raises:
            RateLimitExceededError: the rate limit refuses the run (nothing written).
        """
        now = state.created_at
        admission.take_rates(state, self._take_gcra)
        if admission.slots and not self._take_slots(state, admission, now):
            order_at = admission.order_at or now
            self._waiters.bulk_create([
                models.ConcurrencyWaiter(**_bucket_filter(bucket), slot_limit=limit,
                                         order_at=order_at, run_id=state.run_id,
                                         workflow_id=state.workflow_id)
                for bucket, limit in admission.slots])

    def _insert_run(self, state: WorkflowState) -> None:
        """Store the new run (inside the caller's transaction), replacing an ended run of its id."""
        self._replace_ended(state)

    def _take_slots(self, state: WorkflowState, admission: Admission, now: datetime) -> bool:
        """Take a slot of each bucket (all or none); ``False``, with ``state`` marked waiting,
        when one is full or has waiters already (they go first)."""
        if len(admission.slots) == 1:  # nothing to roll back if it is full
            (bucket, limit), = admission.slots
            in_use = self._take_slot(bucket, limit, state.run_id, state.workflow_id, now,
                                     behind_waiters=True)
            if in_use is not None:
                admission.mark_waiting(state, bucket, in_use, limit)
            return in_use is None
        try:
            with transaction.atomic(using=self.using):
                for bucket, limit in admission.slots:
                    in_use = self._take_slot(bucket, limit, state.run_id, state.workflow_id, now,
                                             behind_waiters=True)
                    if in_use is not None:
                        admission.mark_waiting(state, bucket, in_use, limit)
                        raise _Full()
        except _Full:
            return False
        return True

    def _take_slot(self, bucket: Bucket, limit: int, run_id: str, workflow_id: str,
                   now: datetime, *, behind_waiters: bool = False) -> int | None:
        """Insert the lowest free slot of ``bucket`` for the run: ``None`` once it holds one,
        else how many slots are in use (full, or ``behind_waiters`` and runs wait already)."""
        rows = self._slots.filter(**_bucket_filter(bucket))
        if behind_waiters and self._waiters.filter(**_bucket_filter(bucket)).exists():
            return rows.count()
        for _ in range(_ATTEMPTS):
            used = set(rows.values_list("slot", flat=True))
            if len(used) >= limit:
                return len(used)
            number = next(n for n in range(limit) if n not in used)
            try:
                with transaction.atomic(using=self.using):
                    self._slots.bulk_create([models.ConcurrencySlot(
                        **_bucket_filter(bucket), slot=number, slot_limit=limit, run_id=run_id,
                        workflow_id=workflow_id, taken_at=now)])
                return None
            except IntegrityError:
                continue  # a concurrent start took that number: read again
        return limit

    def _take_gcra(self, gate: Gcra, now: datetime, *, delay: bool) -> tuple[bool, datetime]:
        """Take one start from the GCRA bucket by compare-and-set: (taken, conforming time).
        Without ``delay`` a start that does not conform now is not taken.

        Raises:
            ConflictError: the bucket kept changing under ``_ATTEMPTS`` tries.
        """
        rows = self._buckets.filter(**_bucket_filter(gate.bucket))
        for _ in range(_ATTEMPTS):
            row = rows.values("tat", "version").first()
            start, tat = gcra(row["tat"] if row else None, now, gate.limit, gate.period)
            if start > now and not delay:
                return False, start
            if row is None:
                try:
                    with transaction.atomic(using=self.using):
                        self._buckets.bulk_create([models.FlowBucket(
                            **_bucket_filter(gate.bucket), tat=tat, version=1)])
                    return True, start
                except IntegrityError:
                    continue
            if rows.filter(version=row["version"]).update(tat=tat, version=F("version") + 1):
                return True, start
        raise ConflictError(f"flow bucket {gate.bucket} kept changing")

    # -- ends (inside the end write's transaction) ---------------------------------------------

    def _releasing(self, end: RunEnd | None, run_id: str, write: Any) -> Any:
        """``write()`` (a checkpoint); with ``end.release``, the run's slots and waiter rows are
        deleted in its transaction and the freed buckets put in ``end.freed``."""
        if end is None or not end.release:
            return write()
        with transaction.atomic(using=self.using):
            row = write()
            if row is not None:
                end.freed = self._release_run(run_id)
            return row

    def _release_run(self, run_id: str) -> list[Bucket]:
        """Delete the run's slots (or, holding none, its waiter rows): the buckets freed."""
        held = self._slots.filter(run_id=run_id)
        freed = sorted(set(held.values_list("workflow_type", "scope", "key")))
        if freed:
            held.delete()
        else:
            self._waiters.filter(run_id=run_id).delete()
        return freed

    # -- slots ---------------------------------------------------------------------------------

    @guarded("promote")
    def promote(self, buckets: list[Bucket], now: datetime, limit: int = 100
                ) -> list[tuple[str, str]]:
        """Per bucket, one short transaction per promotion until the bucket is full or has no
        waiter (at most ``limit`` in all)."""
        promoted: list[tuple[str, str]] = []
        for bucket in sorted(set(buckets)):
            if not self._waiters.filter(**_bucket_filter(bucket)).exists():
                continue  # the usual end: nobody waits (one read, no transaction)
            while len(promoted) < limit:
                with transaction.atomic(using=self.using):
                    outcome = self._promote_one(bucket, now)
                if outcome is None:
                    break
                promoted.append(outcome)
        return promoted

    def _promote_one(self, bucket: Bucket, now: datetime) -> tuple[str, str] | None:
        """Promote the first waiter of ``bucket`` that can have all its slots now: its
        (workflow id, queue); ``None`` when the bucket is full or nobody can be promoted."""
        waiting = self._waiters.filter(**_bucket_filter(bucket)).order_by("order_at", "pk")
        if self._skip_locked():
            waiting = waiting.select_for_update(skip_locked=True)
        for waiter in list(waiting[:_LOOKAHEAD]):
            run = (self._runs.filter(pk=waiter.run_id, status=RUNNING)
                   .values("workflow_id", "queue", "wait_until").first())
            if run is None:  # ended or gone without its waiter rows: drop them
                self._waiters.filter(run_id=waiter.run_id).delete()
                continue
            rows = self._waiters.filter(run_id=waiter.run_id).order_by("pk")
            if self._skip_locked():
                # All of the run's waiter rows, or none: another promoter (of its other bucket)
                # holding one is promoting it; waiting for it could deadlock.
                total = rows.count()
                rows = list(rows.select_for_update(skip_locked=True))
                if len(rows) < total:
                    continue
            needs = sorted(((w.workflow_type, w.scope, w.key), w.slot_limit) for w in rows)
            blocked = self._grant(needs, waiter.run_id, run["workflow_id"], now)
            if blocked == bucket:
                return None  # this bucket is full: the rest wait
            if blocked is not None:
                continue  # held back by its other bucket
            self._waiters.filter(run_id=waiter.run_id).delete()
            wait = promoted_wait(run["wait_until"], now)
            self._runs.filter(pk=waiter.run_id, status=RUNNING).update(
                wake_seq=F("wake_seq") + 1, version=F("version") + 1, updated_at=now, **wait)
            return run["workflow_id"], run["queue"] or ""
        return None

    def _grant(self, needs: list[tuple[Bucket, int]], run_id: str, workflow_id: str,
               now: datetime) -> Bucket | None:
        """Take a slot of each bucket of ``needs`` for the run (all or none): the first bucket
        found full, or ``None`` once all are taken."""
        try:
            with transaction.atomic(using=self.using):
                for bucket, limit in needs:
                    if self._take_slot(bucket, limit, run_id, workflow_id, now) is not None:
                        raise _Full(bucket)
        except _Full as full:
            return full.bucket
        return None

    @guarded("release_orphans")
    def release_orphans(self, now: datetime, limit: int = 1000) -> list[Bucket]:
        """One anti-join of slots (then waiters) against the open runs, then their deletes."""
        open_run = self._runs.filter(pk=OuterRef("run_id"), status=RUNNING)
        freed: set[Bucket] = set()
        orphans = (self._slots.filter(~Exists(open_run))
                   .values_list("pk", "workflow_type", "scope", "key")[:limit])
        rows = list(orphans)
        if rows:
            self._slots.filter(pk__in=[r[0] for r in rows]).delete()
            freed.update(r[1:] for r in rows)
        stale = list(self._waiters.filter(~Exists(open_run)).values_list("pk", flat=True)[:limit])
        if stale:
            self._waiters.filter(pk__in=stale).delete()
        return sorted(freed)

    @guarded("waiting_buckets")
    def waiting_buckets(self, limit: int = 1000) -> list[Bucket]:
        """One ``DISTINCT`` read of the waiters' buckets."""
        rows = (self._waiters.order_by("workflow_type", "scope", "key")
                .values_list("workflow_type", "scope", "key").distinct())
        return [tuple(row) for row in rows[:limit]]

    @guarded("flow_usage")
    def flow_usage(self, workflow_type: str | None = None) -> list[dict[str, Any]]:
        """Two grouped reads: slots in use, and waiters, per bucket."""
        slots, waiters = self._slots.all(), self._waiters.all()
        if workflow_type is not None:
            slots, waiters = (slots.filter(workflow_type=workflow_type),
                              waiters.filter(workflow_type=workflow_type))
        usage: dict[Bucket, dict[str, Any]] = {}
        fields = ("workflow_type", "scope", "key")
        for row in slots.order_by().values(*fields).annotate(n=Count("pk"), limit=Max("slot_limit")):
            usage[(row["workflow_type"], row["scope"], row["key"])] = {
                **{f: row[f] for f in fields}, "in_use": row["n"], "limit": row["limit"],
                "waiting": 0}
        for row in waiters.order_by().values(*fields).annotate(n=Count("pk"),
                                                              limit=Max("slot_limit")):
            entry = usage.setdefault((row["workflow_type"], row["scope"], row["key"]), {
                **{f: row[f] for f in fields}, "in_use": 0, "limit": row["limit"], "waiting": 0})
            entry["waiting"] = row["n"]
        return [usage[b] for b in sorted(usage)]

    # -- the ledger and event groups ------------------------------------------------------------

    @guarded("get_delivery")
    def get_delivery(self, event_id: str, workflow_type: str) -> dict[str, str] | None:
        """One read of the ledger row."""
        return (self._deliveries.filter(event_id=event_id, workflow_type=workflow_type)
                .values("workflow_id", "run_id", "outcome", "reason", "group").first())

    def _add_outcome(self, event_id: str, **outcome: list) -> None:
        """Merge ``outcome`` into the event's, under its row lock (in the caller's transaction)."""
        row = (self._event_rows.select_for_update().filter(pk=event_id)
               .values("outcome").first())
        if row is not None:
            self._event_rows.filter(pk=event_id).update(
                outcome=merge_outcome(row["outcome"], {**empty_outcome(), **outcome}))

    @guarded("group_event")
    def group_event(self, event: Event, received_at: datetime, workflow_type: str, kind: str,
                    key: str, *, period: float, timeout: float | None, max_size: int
                    ) -> dict[str, Any]:
        """The ledger row first (its unique key makes a second call a read), then the open
        group locked (or created), updated and fenced by its version, in one transaction."""
        try:
            with transaction.atomic(using=self.using):
                self._deliveries.bulk_create([models.EventDelivery(
                    event_id=event.id, workflow_type=workflow_type, delivered_at=received_at,
                    outcome="debounced" if kind == "debounce" else "batched")])
                return self._join_group(event, received_at, workflow_type, kind, key,
                                        period=period, timeout=timeout, max_size=max_size)
        except IntegrityError:
            known = self.get_delivery(event.id, workflow_type)
            if known is None:
                raise
            due = (self._groups.filter(pk=known["group"]).values_list("due_at", flat=True)
                   .first())
            return {"outcome": known["outcome"], "group": known["group"], "due_at": due,
                    "reason": known["reason"]}

    def _open_group(self, workflow_type: str, kind: str, key: str, received_at: datetime,
                    period: float) -> models.EventGroup:
        """The open group of (type, key), locked; one past due is closed and a new one opened."""
        groups = self._groups.filter(workflow_type=workflow_type, key=key, closed=False)
        for _ in range(_ATTEMPTS):
            group = groups.select_for_update().first()
            if group is not None and group.due_at <= received_at:
                group.closed = True
                group.version += 1
                group.save(update_fields=["closed", "version"])
                group = None
            if group is not None:
                return group
            group = models.EventGroup(id=uuid.uuid4().hex, workflow_type=workflow_type,
                                      kind=kind, key=key, opened_at=received_at,
                                      due_at=received_at + timedelta(seconds=period))
            try:
                with transaction.atomic(using=self.using):
                    group.save(force_insert=True, using=self.using)
                return group
            except IntegrityError:
                continue  # another sender opened it first: lock that one
        raise ConflictError(f"the {kind} group of {workflow_type!r} key {key!r} kept changing")

    def _join_group(self, event: Event, received_at: datetime, workflow_type: str, kind: str,
                    key: str, *, period: float, timeout: float | None, max_size: int
                    ) -> dict[str, Any]:
        group = self._open_group(workflow_type, kind, key, received_at, period)
        outcome, reason = ("debounced" if kind == "debounce" else "batched"), ""
        group.size += 1
        group.version += 1
        if kind == "debounce":
            group.due_at = debounce_due(group.opened_at, received_at, period, timeout)
            if group.event_ts is None or event.ts >= group.event_ts:
                if group.event_id:
                    self._supersede(group.event_id, workflow_type, event.id)
                group.event_id, group.event_ts = event.id, event.ts
            else:
                outcome = "skipped"
                reason = (f"debounce: event {group.event_id!r} of the same burst is newer (its "
                          f"ts is later)")
        elif group.size >= max_size:
            group.closed = True
        group.save(using=self.using)
        self._deliveries.filter(event_id=event.id, workflow_type=workflow_type).update(
            outcome=outcome, reason=reason, group=group.id)
        if reason:
            self._add_outcome(event.id, skipped=[_skip(workflow_type, reason)])
        return {"outcome": outcome, "group": group.id,
                "due_at": received_at if group.closed else group.due_at, "reason": reason}

    def _supersede(self, old_event: str, workflow_type: str, new_event: str) -> None:
        reason = f"debounce: superseded by the newer event {new_event!r}"
        self._deliveries.filter(event_id=old_event, workflow_type=workflow_type).update(
            outcome="skipped", reason=reason)
        self._add_outcome(old_event, skipped=[_skip(workflow_type, reason)])

    @guarded("due_groups")
    def due_groups(self, now: datetime, limit: int = 100) -> list[dict[str, Any]]:
        """One read of the due groups, then one of each group's events."""
        if limit <= 0:
            return []
        groups = list(self._groups.filter(Q(closed=True) | Q(due_at__lte=now))
                      .order_by("due_at", "id")[:limit])
        described = []
        for group in groups:
            if group.kind == "debounce":
                rows = self._event_rows.filter(pk=group.event_id)
            else:
                ids = self._deliveries.filter(group=group.id, workflow_type=group.workflow_type)
                rows = self._event_rows.filter(pk__in=ids.values("event_id"))
            events = [Event(r.name, r.data, r.id, r.ts) for r in rows.order_by("received_at", "id")]
            described.append({"id": group.id, "workflow_type": group.workflow_type,
                              "kind": group.kind, "key": group.key, "version": group.version,
                              "events": events})
        return described

    @guarded("next_group_due")
    def next_group_due(self) -> datetime | None:
        """One read of the soonest due time."""
        return self._groups.order_by("due_at").values_list("due_at", flat=True).first()

    @guarded("fire_group")
    def fire_group(self, group: dict[str, Any], state: WorkflowState, *,
                   waits: list[EventWait] = (), admission: Admission | None = None) -> bool:
        """The group's delete fenced on its version, the run (admitted, with its waits) and the
        ledger rows naming it, in one transaction.

        Raises:
            WorkflowAlreadyExistsError: ``state``'s id has an open run (nothing was written).
        """
        check_history(state)
        with transaction.atomic(using=self.using):
            if not self._groups.filter(pk=group["id"], version=group["version"]).delete()[0]:
                return False
            self._start_run(state, waits, admission)
            members = self._deliveries.filter(group=group["id"],
                                              workflow_type=group["workflow_type"]
                                              ).exclude(outcome="skipped")
            event_ids = list(members.values_list("event_id", flat=True))
            members.update(outcome="started", workflow_id=state.workflow_id, run_id=state.run_id)
            for event_id in event_ids:
                self._add_outcome(event_id, started=[state.workflow_id])
        return True

    def _start_run(self, state: WorkflowState, waits: list[EventWait],
                   admission: Admission | None) -> None:
        """Admit and store the new run with its waits (inside the caller's transaction)."""
        from .events import _wait_row

        if admission is not None:
            self._admit(state, admission)
        self._insert_run(state)
        if waits:
            self._event_waits.bulk_create([_wait_row(w) for w in waits])


class _Full(Exception):
    """A bucket had no free slot (rolls back the slots taken so far)."""

    def __init__(self, bucket: Bucket | None = None) -> None:
        super().__init__()
        self.bucket = bucket

