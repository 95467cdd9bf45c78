"""Who may read workflows and who may steer them through the API.

Reads (list, detail, history, query, human tasks) check the classes of
``BELUGA_WORKFLOWS["API_READ_PERMISSION_CLASSES"]``; writes (start, signal, cancel, answering a
human task) those of ``BELUGA_WORKFLOWS["API_WRITE_PERMISSION_CLASSES"]``. Both are lists of dotted paths to DRF
permission classes, all of which must allow the request. The defaults: any authenticated user
reads, staff users write.
"""

from __future__ import annotations

from rest_framework.permissions import SAFE_METHODS, BasePermission

from ..conf import workflow_settings

__all__ = ["HasWorkflowModelPermission", "permissions_for"]


def _load(setting: str) -> list[BasePermission]:
    return [cls() for cls in workflow_settings.imported(setting)]


def permissions_for(method: str) -> list[BasePermission]:
    """The permission objects that must all allow a request with this HTTP method."""
    if method in SAFE_METHODS:
        return _load("API_READ_PERMISSION_CLASSES")
    return _load("API_WRITE_PERMISSION_CLASSES")


class HasWorkflowModelPermission(BasePermission):
    """Writes need the admin's model permission for the action.

    ``beluga_workflows.start_workflow``, ``signal_workflow`` (also to answer a human task) or
    ``cancel_workflow``, so the API and the admin grant the same people the same actions. Reads are allowed to anyone the
    other classes let in. Use it in ``API_WRITE_PERMISSION_CLASSES`` instead of ``IsAdminUser``.
    """

    message = "You do not have the permission to {action} workflows."

    def has_permission(self, request, view) -> bool:
        """Allow any read; allow a write only to an authenticated user holding
        ``beluga_workflows.<action>_workflow`` for the view's ``workflow_action`` (a view without
        one is refused). A refusal's message names the action.
        """
        if request.method in SAFE_METHODS:
            return True
        action = getattr(view, "workflow_action", None)
        if not action:
            return False
        self.message = HasWorkflowModelPermission.message.format(action=action)
        user = request.user
        return bool(user and user.is_authenticated
                    and user.has_perm(f"beluga_workflows.{action}_workflow"))
