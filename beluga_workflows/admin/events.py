"""The admin's event pages: the accepted events (search by name or id) and what one did.

Both live at ``events/`` (one event is ``events/?event=<id>``), so no event id can be read as a
workflow's URL (``<id>/change/``) or the other way round. The list reads ``store.list_events`` a page at a time; an id typed into the search box that is
an event's id leads straight to that event. An event's page shows its data and its outcome: the
runs it started, woke and canceled (each a link to the run's page), the triggers it skipped,
with why (a ``where`` false, a rate limit reached, a newer event of a debounce burst), and the
debounce or batch groups holding it until their run starts. The list counts the skips of each
event, so a skipped one shows at a glance.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect

from ..engine.errors import WorkflowError
from ..engine.registry import triggered_by
from .base import WorkflowAdminBase
from .forms import SendEventForm

if TYPE_CHECKING:
    from ..stores.base import WorkflowStore

__all__ = ["EventPages", "StoredEvents"]

EVENTS_PER_PAGE = 50


@dataclass
class StoredEvents:
    """The store's events (of ``name``, if given) as ``Paginator`` counts and slices them."""

    store: WorkflowStore
    name: str | None = None

    def count(self) -> int:
        """How many events there are (one ``count_events``)."""
        return self.store.count_events(name=self.name)

    def __len__(self) -> int:
        return self.count()

    def __getitem__(self, index: slice) -> list[Any]:
        start = index.start or 0
        return self.store.list_events(name=self.name, offset=start, limit=index.stop - start)


class EventPages(WorkflowAdminBase):
    """The "Events" list and each event's page, of ``WorkflowStateAdmin``."""

    def event_url(self, event_id: str) -> str:
        """The admin page of one event."""
        return f"{self.url('events')}?{urlencode({'event': event_id})}"

    def events_view(self, request: HttpRequest) -> HttpResponse:
        """The "Events" list, newest first; ``?q=`` is an event name, or an event's id (which
        opens that event); ``?event=<id>`` is that event's page. A user who may start workflows
        gets a form to send an event (a POST here sends it and opens its page).

        Raises:
            PermissionDenied: the user may not view runs, or POSTs without the start permission.
            Http404: ``?event=`` names no event.
        """
        self.require_view(request)
        if not self.store.supports_events:
            return self.render(request, "events.html", "Events", rows=[], form=None, query="",
                               unsupported=type(self.store).__name__)
        if "event" in request.GET:
            return self.event_view(request, request.GET["event"])
        form = None
        if self.has_add_permission(request):  # start_workflow: an event may start runs
            form = SendEventForm(request.POST if request.method == "POST" else None)
            if form.is_bound and form.is_valid():
                sent = self._send(request, form)
                if sent is not None:
                    return sent
        elif request.method == "POST":
            raise PermissionDenied
        query = request.GET.get("q", "").strip()
        if query and self.store.get_event(query) is not None:
            return HttpResponseRedirect(self.event_url(query))
        pages = self.paginate(request, StoredEvents(self.store, query or None), EVENTS_PER_PAGE)
        rows = [self._row(record) for record in pages["page"].object_list]
        return self.render(request, "events.html", "Events", rows=rows, query=query, form=form,
                           **pages)

    def _send(self, request: HttpRequest, form: SendEventForm) -> HttpResponse | None:
        """Send the form's event and go to its page; ``None`` (the error on the form) if refused."""
        from ..engine.events import Event

        data = form.cleaned_data
        try:
            result = self.executor.send_event(Event(name=data["name"], data=data["data"],
                                                    id=data["event_id"] or None))
        except WorkflowError as exc:
            form.add_error(None, str(exc))
            return None
        if result.duplicate:
            messages.warning(request, f"An event with id “{result.event_id}” was accepted "
                                      f"before: nothing was sent again.")
        else:
            messages.success(request, f"Sent event “{data['name']}”: it starts "
                                      f"{len(result.started)} run(s).")
            for skip in result.skipped:
                messages.warning(request, f"Skipped by {skip.get('workflow_type')}: "
                                          f"{skip.get('reason')}.")
            for held in result.deferred:
                messages.info(request, f"Workflow {held.get('workflow_type')}: "
                                       f"{held.get('reason')}; its run starts later.")
        return HttpResponseRedirect(self.event_url(result.event_id))

    def event_view(self, request: HttpRequest, event_id: str) -> HttpResponse:
        """One event: its data, when it was accepted, and its outcome with links to the runs.

        Raises:
            PermissionDenied: the user may not view runs (403).
            Http404: no event has that id.
        """
        self.require_view(request)
        record = self.store.get_event(event_id) if 0 < len(event_id) <= 255 else None
        if record is None:
            raise Http404(f"no event with id {event_id!r}")
        row = self._row(record)
        groups = [("Started", row["started"], "started"), ("Woke", row["woken"], "woken"),
                  ("Canceled", row["canceled"], "canceled")]
        return self.render(request, "event.html", f"Event {record.event.name}", row=row,
                           event=record.event, record=record, outcome_groups=groups,
                           held=self._held(record), events_url=self.url("events"))

    def _held(self, record: Any) -> list[dict[str, str]]:
        """The debounce and batch groups holding the event, whose run has not started yet (one
        ``get_delivery`` per such workflow it triggers): ``{"workflow_type", "kind", "url"}``."""
        if not self.store.supports_flow_control:
            return []
        held = []
        for definition in triggered_by(record.event.name):
            if definition.flow is None or not definition.flow.groups_events:
                continue
            delivery = self.store.get_delivery(record.event.id, definition.name)
            if delivery is not None and delivery["outcome"] in ("debounced", "batched"):
                held.append({"workflow_type": definition.name,
                             "kind": "debounce" if definition.flow.debounce else "batch",
                             "url": self._type_url(definition.name)})
        return held

    def _type_url(self, workflow_type: Any) -> str:
        """The run list of one workflow type (``""`` for a skip that names none)."""
        if not isinstance(workflow_type, str) or not workflow_type:
            return ""
        return f"{self.url('changelist')}?{urlencode({'type': workflow_type})}"

    def _row(self, record: Any) -> dict[str, Any]:
        outcome = record.outcome or {}

        def runs(key: str) -> list[dict[str, str]]:
            return [{"id": wf, "url": self.url("change", wf)} for wf in outcome.get(key) or []]

        return {"record": record, "event": record.event, "url": self.event_url(record.event.id),
                "started": runs("started"), "woken": runs("woken"), "canceled": runs("canceled"),
                "skipped": [{**skip, "url": self._type_url(skip.get("workflow_type"))}
                            for skip in outcome.get("skipped") or []],
                "pending": record.fanned_out_at is None}
