"""Django admin for operations, one module per area.

Money and history are read-only here, superusers included: they change only
through services. Settings (products, channels, templates, users and roles)
are editable, and every edit leaves an audit entry with the actor and the
values before and after.
"""

from __future__ import annotations

from typing import Any

from django.db import models
from django.http import HttpRequest

from notifications.admin import register_change_recorder
from repayments.admin import (
    audit,
    callbacks,
    channels,
    disputes,
    loans,
    payments,
    reconciliation,
    support,
    users,
)
from repayments.admin.base import audit_admin_action, describe_changes


def _record_notification_change(
    request: HttpRequest, obj: models.Model, action: str, form: Any
) -> None:
    data: dict[str, Any] = {"was": str(obj)} if form is None else {}
    if form is not None:
        data["changes"] = describe_changes(form, change=action == "changed")
    audit_admin_action(request, action=action, obj=obj, data=data)


register_change_recorder(_record_notification_change)

__all__ = [
    "audit",
    "callbacks",
    "channels",
    "disputes",
    "loans",
    "payments",
    "reconciliation",
    "support",
    "users",
]
