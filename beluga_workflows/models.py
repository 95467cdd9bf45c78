"""The tables of the ``django`` store: runs, their history events and their signal inboxes, and
the events of API.md §8.

One ``WorkflowState`` row per workflow id holds its latest run (starting a new run of an ended id
replaces the old one, as the store contract says). ``HistoryEvent`` rows are only ever appended,
one per event, numbered from 1 within their run. ``PendingSignal`` rows are the durable inbox: a
signal waits there until the run consumes it, and its auto-increment ``id`` is its FIFO position.

``Event`` rows are the accepted events (the source of truth, keyed by their idempotency id; an
outbox: ``fanned_out_at`` is NULL until the fan-out is done). ``EventDelivery`` is the trigger
ledger: unique on (event, workflow type), written with the run it starts. ``EventWait`` rows are
what open runs wait for (a ``wait_for_event``, or a ``cancel_on``), found by the sender through
(name, match paths, match key) and deleted with the write that ends the wait or the run.

The indexes serve the reads the app makes (lists newest first by status or type, due runs) and
leave out the columns every checkpoint rewrites (``updated_at``, ``version``, the lease expiry), so
PostgreSQL can update a run in place (HOT) without touching any index on the hot path.

Flow control (API.md §9, ``engine/flow.py``): ``ConcurrencySlot`` rows are the slots in use,
unique per (workflow type, scope, key, slot number) with the number checked below the limit, so
the database itself refuses a run over the limit; ``ConcurrencyWaiter`` rows are the runs waiting
for slots; ``FlowBucket`` rows the GCRA state of throttles and rate limits (updated by
compare-and-set on ``version``); ``EventGroup`` rows the open debounce and batch groups, whose
events are their ``EventDelivery`` rows.
"""

from __future__ import annotations

from django.db import models

from .engine.schedules import OVERLAP_POLICIES
from .engine.types import EventType, WorkflowStatus

__all__ = ["ConcurrencySlot", "ConcurrencyWaiter", "Event", "EventDelivery", "EventGroup",
           "EventWait", "FlowBucket", "HistoryEvent", "PendingSignal", "Schedule", "WorkflowState"]

STATUS_CHOICES = [(s.value, s.value.replace("_", " ")) for s in WorkflowStatus]
EVENT_TYPE_CHOICES = [(t.value, t.value.replace("_", " ")) for t in EventType]


class WorkflowState(models.Model):
    """A workflow run: identity, status, payloads, timestamps, lease and what it waits for."""

    run_id = models.CharField("run id", max_length=64, primary_key=True)
    # One row per workflow id (the latest run); this also makes a second open run impossible.
    workflow_id = models.CharField("workflow id", max_length=255, unique=True)
    workflow_type = models.CharField("workflow type", max_length=255)
    status = models.CharField(max_length=16, choices=STATUS_CHOICES,
                              default=WorkflowStatus.RUNNING.value)
    input = models.JSONField(null=True, blank=True)
    result = models.JSONField(null=True, blank=True)
    error = models.JSONField(null=True, blank=True)
    created_at = models.DateTimeField("started")
    updated_at = models.DateTimeField("updated")
    ended_at = models.DateTimeField("ended", null=True, blank=True)
    deadline = models.DateTimeField(null=True, blank=True)
    queue = models.CharField(max_length=255, blank=True, default="")
    lease_owner = models.CharField(max_length=255, blank=True, default="")
    lease_expires_at = models.DateTimeField(null=True, blank=True)
    # Bumped by every write of the run.
    version = models.BigIntegerField(default=0)
    # Bumped by every signal and cancel: a worker may only suspend a run whose wake_seq it saw.
    wake_seq = models.BigIntegerField(default=0)
    # When a worker should next pick the run up; NULL while it waits for a signal without timeout.
    wake_at = models.DateTimeField(null=True, blank=True)
    wait_kind = models.CharField(max_length=32, blank=True, default="")
    wait_name = models.TextField(blank=True, default="")
    wait_until = models.DateTimeField(null=True, blank=True)
    cancel_requested = models.BooleanField(default=False)
    # The ``seq`` of the run's last history event: appends are fenced on it (no gaps, no rewrites).
    last_event_id = models.IntegerField(default=0)
    # The workflow id of the run that started this one as a child ('' for other runs).
    parent_id = models.CharField("parent workflow id", max_length=255, blank=True, default="")

    class Meta:
        verbose_name = "workflow run"
        verbose_name_plural = "workflow runs"
        indexes = [
            models.Index(fields=["-created_at", "-run_id"], name="beluga_wf_newest_idx"),
            models.Index(fields=["status", "-created_at", "-run_id"],
                         name="beluga_wf_status_newest_idx"),
            models.Index(fields=["workflow_type", "-created_at", "-run_id"],
                         name="beluga_wf_type_newest_idx"),
            # due(): open runs whose wake_at passed; a run whose worker died keeps its wake_at,
            # so runs with expired leases are found through this index too.
            models.Index(fields=["status", "wake_at"], name="beluga_wf_due_idx"),
            # The children of a run (list filter, child counts); runs without a parent are
            # most runs and stay out of it.
            models.Index(fields=["parent_id", "-created_at", "-run_id"],
                         condition=~models.Q(parent_id=""), name="beluga_wf_children_idx"),
            # Retention: ended runs, oldest end first (purge_ended). Written once, at the end,
            # in the write that already moves the run in the status index.
            models.Index(fields=["ended_at", "run_id"], condition=~models.Q(status="running"),
                         name="beluga_wf_ended_idx"),
        ]
        permissions = [
            ("start_workflow", "Can start workflows"),
            ("signal_workflow", "Can signal workflows"),
            ("cancel_workflow", "Can cancel workflows"),
        ]

    def __str__(self) -> str:
        return f"{self.workflow_id} ({self.status})"


class HistoryEvent(models.Model):
    """One recorded event of a run; ``seq`` is its 1-based position in the run's history."""

    # The (run, seq) unique constraint indexes the foreign key too. No database constraint: its
    # check costs a lookup per inserted event, and every insert already names a run it has just
    # locked (the checkpoint statement inserts only when its fenced UPDATE of the run matched).
    # Deleting a run through the ORM still deletes its events (Django cascades).
    run = models.ForeignKey(WorkflowState, on_delete=models.CASCADE, related_name="events",
                            db_index=False, db_constraint=False)
    seq = models.PositiveIntegerField("sequence number")
    type = models.CharField(max_length=32, choices=EVENT_TYPE_CHOICES)
    timestamp = models.DateTimeField()
    activity_name = models.TextField(blank=True, default="")
    input = models.JSONField(null=True, blank=True)
    result = models.JSONField(null=True, blank=True)
    error = models.JSONField(null=True, blank=True)
    signal_name = models.TextField(blank=True, default="")
    signal_payload = models.JSONField(null=True, blank=True)
    duration = models.FloatField(null=True, blank=True, help_text="seconds")
    # The workflow-code operation the event belongs to (0: workflow-level events).
    op = models.IntegerField(default=0)
    attempt = models.IntegerField(default=0)
    fire_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name = "history event"
        verbose_name_plural = "history events"
        constraints = [
            models.UniqueConstraint(fields=["run", "seq"], name="beluga_wf_event_seq_uniq"),
        ]

    def __str__(self) -> str:
        return f"{self.run_id} #{self.seq} {self.type}"


class PendingSignal(models.Model):
    """A signal accepted for a run and not consumed yet (consuming it deletes the row)."""

    run = models.ForeignKey(WorkflowState, on_delete=models.CASCADE, related_name="signals",
                            db_index=False)
    name = models.CharField(max_length=255)
    payload = models.JSONField(null=True, blank=True)
    sent_at = models.DateTimeField()
    sender_id = models.TextField(blank=True, default="")

    class Meta:
        verbose_name = "pending signal"
        verbose_name_plural = "pending signals"
        indexes = [models.Index(fields=["run", "id"], name="beluga_wf_inbox_idx")]

    def __str__(self) -> str:
        return f"{self.name} -> {self.run_id}"


class Event(models.Model):
    """An accepted event: its idempotency id, name, data and time, and what its fan-out did."""

    id = models.CharField(max_length=255, primary_key=True)
    name = models.CharField(max_length=255)
    data = models.JSONField(default=dict, blank=True)
    ts = models.DateTimeField("time")
    received_at = models.DateTimeField("received")
    # NULL until the fan-out (triggers, waits, cancels) is done: the outbox the sweep finishes.
    fanned_out_at = models.DateTimeField("fanned out", null=True, blank=True)
    # The runs its triggers start, decided when it was accepted: [{"workflow_type", "workflow_id"}].
    triggers = models.JSONField(default=list, blank=True)
    # {"started": [ids], "woken": [ids], "canceled": [ids], "skipped": [{"workflow_type", "reason"}]}
    outcome = models.JSONField(default=dict, blank=True)

    class Meta:
        verbose_name = "event"
        verbose_name_plural = "events"
        indexes = [
            # list_events newest first; find_events (name, since) oldest first.
            models.Index(fields=["-received_at", "-id"], name="beluga_ev_newest_idx"),
            models.Index(fields=["name", "received_at", "id"], name="beluga_ev_name_idx"),
            # unfanned_events: only the (few) rows not fanned out yet.
            models.Index(fields=["received_at"], condition=models.Q(fanned_out_at__isnull=True),
                         name="beluga_ev_outbox_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.id})"


class EventDelivery(models.Model):
    """The ledger of triggers: the run that one event started for one workflow type, once."""

    event = models.ForeignKey(Event, on_delete=models.CASCADE, related_name="deliveries",
                              db_index=False)
    workflow_type = models.CharField(max_length=255)
    # Plain values, not a key: the ledger outlives the run (an ended run may be replaced).
    workflow_id = models.CharField(max_length=255, blank=True, default="")
    run_id = models.CharField(max_length=64, blank=True, default="")
    delivered_at = models.DateTimeField()
    # "started" (the run above), "skipped" (``reason`` says why), "debounced" / "batched" (held
    # in the event group ``group``; "started" once the group fires with this event in it).
    outcome = models.CharField(max_length=16, default="started")
    reason = models.TextField(blank=True, default="")
    group = models.CharField(max_length=64, blank=True, default="", db_index=True)

    class Meta:
        verbose_name = "event delivery"
        verbose_name_plural = "event deliveries"
        constraints = [
            models.UniqueConstraint(fields=["event", "workflow_type"],
                                    name="beluga_ev_delivery_uniq"),
        ]

    def __str__(self) -> str:
        return f"{self.event_id} -> {self.workflow_type}"


class EventWait(models.Model):
    """What an open run waits for: a ``wait_for_event`` (``op`` > 0) or a ``cancel_on`` (``op`` <= 0).

    ``match_paths`` are the match's dotted paths, sorted, one a line; ``match_key`` a SHA-256 of
    the values at them (both empty without a match). ``anchor``: events received before it do not
    count (``NULL`` for a cancel).
    """

    # As for history events: no database constraint; deleting a run through the ORM deletes them.
    run = models.ForeignKey(WorkflowState, on_delete=models.CASCADE, related_name="event_waits",
                            db_index=False, db_constraint=False)
    workflow_id = models.CharField(max_length=255)
    op = models.IntegerField()
    name = models.CharField(max_length=255)
    match_paths = models.TextField(blank=True, default="")
    match_key = models.CharField(max_length=64, blank=True, default="")
    match = models.JSONField(default=list, blank=True)
    where = models.TextField(blank=True, default="")
    anchor = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name = "event wait"
        verbose_name_plural = "event waits"
        constraints = [
            # Also the index of deletion by run.
            models.UniqueConstraint(fields=["run", "op"], name="beluga_ev_wait_uniq"),
        ]
        indexes = [
            models.Index(fields=["name", "match_paths", "match_key"], name="beluga_ev_wait_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.run_id} #{self.op} waits for {self.name}"


class ConcurrencySlot(models.Model):
    """A concurrency slot in use: slot ``slot`` (``0 <= slot < slot_limit``) of a key, held by a run."""

    workflow_type = models.CharField(max_length=255)
    # "concurrency:0" / "concurrency:1": which of the workflow's Concurrency entries.
    scope = models.CharField(max_length=32)
    key = models.CharField(max_length=255)
    slot = models.IntegerField()
    slot_limit = models.IntegerField("limit")
    # As for history events: no database constraint; deleting a run deletes its slots (ORM).
    run = models.ForeignKey(WorkflowState, on_delete=models.CASCADE, related_name="slots",
                            db_constraint=False)
    workflow_id = models.CharField(max_length=255)
    taken_at = models.DateTimeField()

    class Meta:
        verbose_name = "concurrency slot"
        verbose_name_plural = "concurrency slots"
        constraints = [
            models.UniqueConstraint(fields=["workflow_type", "scope", "key", "slot"],
                                    name="beluga_flow_slot_uniq"),
            models.CheckConstraint(condition=models.Q(slot__gte=0, slot__lt=models.F("slot_limit")),
                                   name="beluga_flow_slot_in_limit"),
        ]

    def __str__(self) -> str:
        return f"{self.workflow_type} {self.key!r} #{self.slot} -> {self.workflow_id}"


class ConcurrencyWaiter(models.Model):
    """A run waiting for a slot of one key; promoted in ``order_at`` order (start minus priority)."""

    workflow_type = models.CharField(max_length=255)
    scope = models.CharField(max_length=32)
    key = models.CharField(max_length=255)
    slot_limit = models.IntegerField("limit")
    order_at = models.DateTimeField()
    run = models.ForeignKey(WorkflowState, on_delete=models.CASCADE, related_name="waits_for_slots",
                            db_constraint=False)
    workflow_id = models.CharField(max_length=255)

    class Meta:
        verbose_name = "concurrency waiter"
        verbose_name_plural = "concurrency waiters"
        constraints = [
            models.UniqueConstraint(fields=["run", "scope"], name="beluga_flow_waiter_uniq"),
        ]
        indexes = [
            models.Index(fields=["workflow_type", "scope", "key", "order_at"],
                         name="beluga_flow_waiter_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.workflow_id} waits for {self.workflow_type} {self.key!r}"


class FlowBucket(models.Model):
    """The GCRA state of one throttle or rate-limit key: its theoretical arrival time."""

    workflow_type = models.CharField(max_length=255)
    scope = models.CharField(max_length=32)
    key = models.CharField(max_length=255)
    tat = models.DateTimeField("theoretical arrival time")
    version = models.BigIntegerField(default=0)

    class Meta:
        verbose_name = "flow bucket"
        verbose_name_plural = "flow buckets"
        constraints = [
            models.UniqueConstraint(fields=["workflow_type", "scope", "key"],
                                    name="beluga_flow_bucket_uniq"),
        ]

    def __str__(self) -> str:
        return f"{self.workflow_type} {self.scope} {self.key!r}"


class EventGroup(models.Model):
    """An open debounce or batch group of one key: the events it holds are the ``EventDelivery``
    rows naming it; it fires (one run) at ``due_at``, or at once when ``closed``."""

    id = models.CharField(max_length=64, primary_key=True)
    workflow_type = models.CharField(max_length=255)
    kind = models.CharField(max_length=16)  # "debounce" / "batch"
    key = models.CharField(max_length=255)
    opened_at = models.DateTimeField()
    due_at = models.DateTimeField()
    size = models.IntegerField(default=0)
    # Full, or past due when an event came: fires as soon as a worker gets to it.
    closed = models.BooleanField(default=False)
    # Debounce: the newest event (by ts) so far.
    event_id = models.CharField(max_length=255, blank=True, default="")
    event_ts = models.DateTimeField(null=True, blank=True)
    version = models.BigIntegerField(default=0)

    class Meta:
        verbose_name = "event group"
        verbose_name_plural = "event groups"
        constraints = [
            models.UniqueConstraint(fields=["workflow_type", "key"], condition=models.Q(closed=False),
                                    name="beluga_flow_group_open_uniq"),
        ]
        indexes = [models.Index(fields=["due_at"], name="beluga_flow_group_due_idx")]

    def __str__(self) -> str:
        return f"{self.kind} {self.workflow_type} {self.key!r} ({self.size})"


OVERLAP_CHOICES = [(p, p.replace("_", " ")) for p in OVERLAP_POLICIES]


class Schedule(models.Model):
    """A cron schedule of one workflow type: its timetable, the input of its runs and its state.

    ``declared`` rows come from ``@workflow(schedule=...)`` (their id is the workflow type, then
    ``"<type>#2"``...): the code owns their timetable, input, overlap and catch-up, and a row whose
    declaration was removed from the code gets ``undeclared_at`` and stops firing. The others were
    made in the admin or the API. ``next_fire_at`` is NULL while the schedule is paused or stopped.
    """

    id = models.CharField("id", max_length=200, primary_key=True)
    workflow_type = models.CharField("workflow type", max_length=255)
    cron = models.CharField(max_length=255, help_text=(
        "5 fields (minute hour day-of-month month day-of-week), or 6 with a leading seconds "
        "field; or @hourly, @daily, @weekly, @monthly, @yearly."))
    timezone = models.CharField("time zone", max_length=64, default="UTC",
                                help_text="The IANA time zone the cron expression reads, e.g. "
                                          "Europe/Berlin.")
    input = models.JSONField(null=True, blank=True, help_text="The input of every run (JSON).")
    overlap = models.CharField(max_length=16, choices=OVERLAP_CHOICES, default="skip", help_text=(
        "When a tick comes while the previous run is still open: skip the tick, allow a second "
        "run, or cancel the previous run."))
    catch_up = models.BooleanField("catch up", default=False, help_text=(
        "Run the ticks missed while nothing fired (an outage) late, one by one; otherwise they "
        "are skipped."))
    paused = models.BooleanField(default=False)
    declared = models.BooleanField("declared in code", default=False, editable=False)
    # When a sync found the declaration gone from the code (declared rows only; NULL: present).
    undeclared_at = models.DateTimeField("removed from code", null=True, blank=True,
                                         editable=False)
    next_fire_at = models.DateTimeField("next fire", null=True, blank=True, editable=False)
    # The last tick handled (fired, skipped or failed) and what came of it.
    last_fire_at = models.DateTimeField("last fire", null=True, blank=True, editable=False)
    last_workflow_id = models.CharField("last run", max_length=255, blank=True, default="",
                                        editable=False)
    last_outcome = models.CharField("last outcome", max_length=16, blank=True, default="",
                                    editable=False)
    last_note = models.TextField(blank=True, default="", editable=False)
    created_at = models.DateTimeField("created", editable=False)
    updated_at = models.DateTimeField("updated", editable=False)
    # Bumped by every change of the timetable or its next tick: the compare-and-set fence.
    version = models.BigIntegerField(default=0, editable=False)

    class Meta:
        verbose_name = "schedule"
        verbose_name_plural = "schedules"
        ordering = ["id"]
        indexes = [
            # The sweep's due() read: only the rows that fire.
            models.Index(fields=["next_fire_at"], condition=models.Q(next_fire_at__isnull=False),
                         name="beluga_schedule_due_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.id} ({self.cron} {self.timezone})"
