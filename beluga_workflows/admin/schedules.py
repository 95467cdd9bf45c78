"""The admin's Schedules: list, add, edit, delete, pause, resume and "trigger now".

A real ``ModelAdmin`` of the ``Schedule`` table (in the store's database: see
``beluga_workflows.schedules.rows``), whose writes all go through ``beluga_workflows.schedules``,
so the admin refuses what the API and code refuse, with the same sentences, as form errors. The
list shows each schedule's timetable, its next and last fire times in its own time zone, and its
last outcome with a link to the run; its actions pause, resume and trigger the selected ones. A
schedule's page has Pause / Resume and Trigger now buttons and a link to its runs.

Schedules declared in code (``@workflow(schedule=...)``) are synced into the table whenever the
list is shown; their timetable, input and policies are the code's and read-only here, and they
cannot be deleted while the code declares them (pausing them can be done here).

Permissions: viewing needs ``view_schedule`` (or ``change_schedule``); adding, editing, pausing,
resuming and triggering also need ``beluga_workflows.start_workflow`` (a schedule starts runs),
as the API's writes do; deleting needs ``delete_schedule``.
"""

from __future__ import annotations

import json
import zoneinfo
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.utils import quote, unquote
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import URLPattern, path, reverse
from django.utils.html import format_html

from ..engine.errors import WorkflowError
from ..engine.registry import registered_workflows
from ..models import Schedule
from ..runtimes import get_executor
from ..schedules import (
    EDITABLE_FIELDS,
    InvalidScheduleError,
    check_fields,
    check_schedule_id,
    create_schedule,
    delete_schedule,
    pause_schedule,
    resume_schedule,
    schedules_database,
    sync_declared_schedules,
    trigger_schedule,
    update_schedule,
)
from .forms import JSONInputField

__all__ = ["ScheduleAdmin", "ScheduleForm"]

# What the code owns in a schedule declared with @workflow(schedule=...).
CODE_FIELDS = ("workflow_type", "cron", "timezone", "input", "overlap", "catch_up")


def _zones() -> list[tuple[str, str]]:
    names = sorted(zoneinfo.available_timezones() - {"UTC"})
    return [("UTC", "UTC"), *((name, name) for name in names)]


class ScheduleForm(forms.ModelForm):
    """A schedule's fields, checked by ``beluga_workflows.schedules.check_fields`` (and the id by
    ``check_schedule_id``), whose errors land on the field they name."""

    id = forms.CharField(label="Id", max_length=100, help_text=(
        "A slug (letters, digits, _ and -). Its runs are named after it and their tick, e.g. "
        "nightly@20250330T010000Z."))
    workflow_type = forms.ChoiceField(label="Workflow type")
    timezone = forms.ChoiceField(label="Time zone", initial="UTC", help_text=(
        "The wall clock the cron expression reads (daylight saving included)."), error_messages={
        "invalid_choice": "Unknown time zone “%(value)s”: choose an IANA time zone such as UTC "
                          "or Europe/Berlin."})
    input = JSONInputField(label="Input (JSON)", what="schedule input",
                           help_text="The input of every run; empty: null.")

    class Meta:
        model = Schedule
        fields = ["id", "workflow_type", "cron", "timezone", "input", "overlap", "catch_up",
                  "paused"]
        widgets = {"cron": forms.TextInput(attrs={"class": "vTextField",
                                                  "placeholder": "0 3 * * *"})}

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        types = registered_workflows()
        current = self.instance.workflow_type if self.instance.pk else ""
        if current and current not in types:
            types = [current, *types]
        if "workflow_type" in self.fields:
            self.fields["workflow_type"].choices = [("", "---------"), *((t, t) for t in types)]
        if "timezone" in self.fields:
            self.fields["timezone"].choices = _zones()
        if self.instance.pk and not self.is_bound and self.instance.input is not None:
            # Shown as JSON text (the field shows text as it is: a re-shown bad input).
            self.initial["input"] = json.dumps(self.instance.input, indent=2, ensure_ascii=False)

    def clean(self) -> dict[str, Any]:
        """Check the schedule as ``create_schedule`` / ``update_schedule`` will, putting each
        refusal on its field."""
        data = super().clean()
        if not self.instance.pk and "id" in self.fields and "id" in data:
            try:
                check_schedule_id(data["id"])
                database = schedules_database(get_executor().store)
                if Schedule.objects.using(database).filter(pk=data["id"]).exists():
                    self.add_error("id", f"A schedule with the id “{data['id']}” exists.")
            except InvalidScheduleError as exc:
                self.add_error("id", exc.message)
        if self.instance.declared or self.errors:
            return data
        values = {name: data.get(name, getattr(self.instance, name)) for name in CODE_FIELDS}
        try:
            data.update(check_fields(**values,
                                     max_payload_bytes=get_executor().max_payload_bytes))
        except InvalidScheduleError as exc:
            self.add_error(exc.field if exc.field in self.fields else None, exc.message)
        return data


class ScheduleAdmin(admin.ModelAdmin):
    """The Schedules pages (see the module's docstring)."""

    form = ScheduleForm
    change_list_template = "admin/beluga_workflows/schedule/change_list.html"
    change_form_template = "admin/beluga_workflows/schedule/change_form.html"
    list_display = ("id", "workflow_type", "timetable", "state", "next_fire", "last_fire",
                    "outcome")
    list_display_links = ("id",)
    list_filter = ("paused", "declared", "overlap")
    search_fields = ("id", "workflow_type")
    actions = ["pause_selected", "resume_selected", "trigger_selected"]
    readonly_fields = ("origin", "next_fire", "last_fire", "outcome", "last_note", "runs",
                       "created_at", "updated_at")

    # -- the table, in the store's database -----------------------------------------------------

    @property
    def executor(self) -> Any:
        return get_executor()

    @property
    def database(self) -> str:
        return schedules_database(self.executor.store)

    def get_queryset(self, request: HttpRequest):
        return super().get_queryset(request).using(self.database)

    def changelist_view(self, request: HttpRequest, extra_context: dict | None = None
                        ) -> HttpResponse:
        """The list, after syncing the schedules declared in code into the table."""
        try:
            sync_declared_schedules(self.executor.store, self.executor.clock.now())
        except WorkflowError as exc:  # the list still shows what the table holds
            messages.warning(request, f"Declared schedules could not be synced: {exc}")
        extra = {"runs_url": reverse("admin:beluga_workflows_workflowstate_changelist"),
                 **(extra_context or {})}
        return super().changelist_view(request, extra)

    # -- permissions ------------------------------------------------------------------------------

    def _may_start(self, request: HttpRequest) -> bool:
        return request.user.has_perm("beluga_workflows.start_workflow")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return super().has_add_permission(request) and self._may_start(request)

    def has_change_permission(self, request: HttpRequest, obj: Schedule | None = None) -> bool:
        return super().has_change_permission(request, obj) and self._may_start(request)

    def has_delete_permission(self, request: HttpRequest, obj: Schedule | None = None) -> bool:
        if obj is not None and obj.declared and obj.undeclared_at is None:
            return False  # the code declares it: remove it there
        return super().has_delete_permission(request, obj)

    def has_steer_permission(self, request: HttpRequest) -> bool:
        """Pausing, resuming and triggering: ``start_workflow``."""
        return self._may_start(request)

    def get_readonly_fields(self, request: HttpRequest, obj: Schedule | None = None):
        fields = list(super().get_readonly_fields(request, obj))
        if obj is not None:
            fields.append("id")
            if obj.declared:
                fields.extend(CODE_FIELDS)
        return fields

    def get_fields(self, request: HttpRequest, obj: Schedule | None = None):
        fields = ["id", "workflow_type", "cron", "timezone", "input", "overlap", "catch_up",
                  "paused"]
        if obj is not None:
            fields += ["origin", "next_fire", "last_fire", "outcome", "last_note", "runs",
                       "created_at", "updated_at"]
        return fields

    # -- writes go through beluga_workflows.schedules ------------------------------------------

    def save_model(self, request: HttpRequest, obj: Schedule, form: ScheduleForm,
                   change: bool) -> None:
        data = form.cleaned_data
        if change:
            fields = ["paused"] if obj.declared else list(EDITABLE_FIELDS)
            saved = update_schedule(self.executor, obj.pk,
                                    **{name: data[name] for name in fields if name in data})
        else:
            saved = create_schedule(self.executor, data["id"],
                                    **{name: data[name] for name in EDITABLE_FIELDS})
        obj.__dict__.update(saved.__dict__)

    def delete_model(self, request: HttpRequest, obj: Schedule) -> None:
        delete_schedule(self.executor, obj.pk)

    def delete_queryset(self, request: HttpRequest, queryset) -> None:
        for obj in queryset:
            try:
                delete_schedule(self.executor, obj.pk)
            except WorkflowError as exc:
                messages.error(request, str(exc))

    # -- the columns and read-only fields ---------------------------------------------------------

    @admin.display(description="timetable")
    def timetable(self, obj: Schedule) -> str:
        zone = "" if obj.timezone == "UTC" else f" ({obj.timezone})"
        return format_html("<code>{}</code>{}", obj.cron, zone)

    @admin.display(description="state")
    def state(self, obj: Schedule) -> str:
        if obj.declared and obj.undeclared_at is not None:
            label, css = "removed from code", "beluga-canceled"
        elif obj.paused:
            label, css = "paused", "beluga-timed_out"
        elif obj.next_fire_at is None:
            label, css = "stopped", "beluga-failed"
        else:
            label, css = "active", "beluga-completed"
        origin = "in code" if obj.declared else ""
        return format_html('<span class="beluga-badge {}">{}</span><span class="quiet">{}</span>',
                           css, label, origin)

    @staticmethod
    def _when(obj: Schedule, moment: Any) -> str:
        """``moment`` on the schedule's wall clock (with its zone's abbreviation), and in UTC."""
        if moment is None:
            return "—"
        try:
            local = moment.astimezone(zoneinfo.ZoneInfo(obj.timezone))
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            local = moment
        utc = moment.astimezone(zoneinfo.ZoneInfo("UTC"))
        if local.utcoffset() == utc.utcoffset() and obj.timezone == "UTC":
            return format_html('<span class="beluga-when">{} UTC</span>',
                               f"{utc:%Y-%m-%d %H:%M:%S}")
        return format_html('<span class="beluga-when">{} {}<span class="quiet">{} UTC</span>'
                           '</span>', f"{local:%Y-%m-%d %H:%M:%S}", local.tzname() or "",
                           f"{utc:%Y-%m-%d %H:%M:%S}")

    @admin.display(description="next fire", ordering="next_fire_at")
    def next_fire(self, obj: Schedule) -> str:
        return self._when(obj, obj.next_fire_at)

    @admin.display(description="last fire", ordering="last_fire_at")
    def last_fire(self, obj: Schedule) -> str:
        return self._when(obj, obj.last_fire_at)

    def _run_url(self, workflow_id: str) -> str:
        return reverse("admin:beluga_workflows_workflowstate_change", args=(quote(workflow_id),))

    @admin.display(description="last outcome")
    def outcome(self, obj: Schedule) -> str:
        if not obj.last_outcome:
            return "—"
        if obj.last_workflow_id and obj.last_outcome in ("started", "skipped"):
            # The outcome links to the run; under it the run id's tick part (after "@").
            return format_html('<a href="{}" title="{}">{}</a><span class="quiet">{}</span>',
                               self._run_url(obj.last_workflow_id), obj.last_workflow_id,
                               obj.last_outcome, obj.last_workflow_id.rpartition("@")[2])
        return format_html('<span title="{}">{}</span>', obj.last_note, obj.last_outcome)

    @admin.display(description="origin")
    def origin(self, obj: Schedule) -> str:
        if not obj.declared:
            return "made in the admin or the API"
        if obj.undeclared_at is not None:
            return f"in code until {obj.undeclared_at:%Y-%m-%d %H:%M} UTC (removed since)"
        return format_html("in code: <code>@workflow(schedule=...)</code> of {}",
                           obj.workflow_type)

    @admin.display(description="runs")
    def runs(self, obj: Schedule) -> str:
        url = reverse("admin:beluga_workflows_workflowstate_changelist")
        return format_html('<a href="{}?q={}">runs of this schedule</a>', url,
                           quote(f"{obj.pk}@"))

    # -- pause, resume, trigger -------------------------------------------------------------------

    def get_urls(self) -> list[URLPattern]:
        info = self.opts.app_label, self.opts.model_name
        own = [path(f"<path:object_id>/{name}/", self.admin_site.admin_view(view),
                    name=f"{info[0]}_{info[1]}_{name}")
               for name, view in (("pause", self.pause_view), ("resume", self.resume_view),
                                  ("trigger", self.trigger_view))]
        return own + super().get_urls()

    def _steer(self, request: HttpRequest, object_id: str, act: Any, done: str
               ) -> HttpResponse:
        if request.method != "POST":
            return HttpResponseRedirect(reverse("admin:beluga_workflows_schedule_change",
                                                args=(object_id,)))
        if not self.has_steer_permission(request):
            raise PermissionDenied
        schedule_id = unquote(object_id)
        if not self.get_queryset(request).filter(pk=schedule_id).exists():
            raise Http404(f"no schedule with id {schedule_id!r}")
        try:
            message = done.format(id=schedule_id, outcome=act(schedule_id))
            messages.success(request, message)
        except WorkflowError as exc:
            messages.error(request, f"{schedule_id}: {exc}")
        return HttpResponseRedirect(reverse("admin:beluga_workflows_schedule_change",
                                            args=(object_id,)))

    def pause_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """POST: pause the schedule (``start_workflow``)."""
        return self._steer(request, object_id, lambda sid: pause_schedule(self.executor, sid),
                           "Paused “{id}”: no tick fires until it is resumed.")

    def resume_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """POST: resume the schedule from its next tick (``start_workflow``)."""
        return self._steer(request, object_id, lambda sid: resume_schedule(self.executor, sid),
                           "Resumed “{id}”.")

    def trigger_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """POST: start a run now (``start_workflow``); the timetable does not move."""
        return self._steer(request, object_id, lambda sid: self._trigger(sid), "{outcome}")

    def _trigger(self, schedule_id: str) -> str:
        fired = trigger_schedule(self.executor, schedule_id)
        if fired.outcome == "started":
            return f"Triggered “{schedule_id}”: started {fired.workflow_id}."
        return f"“{schedule_id}” not triggered: {fired.note} (its overlap is “skip”)."

    def render_change_form(self, request: HttpRequest, context: dict, add: bool = False,
                           change: bool = False, form_url: str = "", obj: Schedule | None = None
                           ) -> HttpResponse:
        if obj is not None:
            context.update({
                "can_steer": self.has_steer_permission(request),
                "pause_url": reverse("admin:beluga_workflows_schedule_pause", args=(quote(obj.pk),)),
                "resume_url": reverse("admin:beluga_workflows_schedule_resume",
                                      args=(quote(obj.pk),)),
                "trigger_url": reverse("admin:beluga_workflows_schedule_trigger",
                                       args=(quote(obj.pk),)),
            })
        return super().render_change_form(request, context, add, change, form_url, obj)

    # -- actions ----------------------------------------------------------------------------------

    def _act(self, request: HttpRequest, queryset, act: Any, verb: str) -> None:
        done = []
        for schedule_id in queryset.values_list("pk", flat=True):
            try:
                act(schedule_id)
                done.append(schedule_id)
            except WorkflowError as exc:
                messages.error(request, f"{schedule_id}: {exc}")
        if done:
            messages.success(request, f"{verb} {len(done)} schedule(s): {', '.join(done)}.")

    @admin.action(description="Pause selected schedules", permissions=["steer"])
    def pause_selected(self, request: HttpRequest, queryset) -> None:
        self._act(request, queryset, lambda sid: pause_schedule(self.executor, sid), "Paused")

    @admin.action(description="Resume selected schedules", permissions=["steer"])
    def resume_selected(self, request: HttpRequest, queryset) -> None:
        self._act(request, queryset, lambda sid: resume_schedule(self.executor, sid), "Resumed")

    @admin.action(description="Trigger selected schedules now", permissions=["steer"])
    def trigger_selected(self, request: HttpRequest, queryset) -> None:
        def trigger(sid: str) -> None:
            fired = trigger_schedule(self.executor, sid)
            if fired.outcome != "started":
                raise WorkflowError(f"not triggered: {fired.note}")

        self._act(request, queryset, trigger, "Triggered")

