"""Admin building blocks: ledgers nobody edits, and settings whose edits are audited."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Any

from django.contrib import admin
from django.db import models, transaction
from django.db.models import QuerySet
from django.forms import BaseForm
from django.http import HttpRequest
from django.utils import timezone

from repayments.admin.masking import masked_phone
from repayments.models import User
from repayments.services.audit import audit_append

# Field values that never go into the audit log as they are.
SECRET_FIELDS = frozenset({"password", "card_token"})
PHONE_FIELDS = frozenset({"phone"})
CHANGED = "(changed)"


class ReadOnlyAdmin(admin.ModelAdmin):
    """History and ledgers: visible to those allowed, editable by nobody, superusers included.

    Without delete permission Django also drops the bulk "delete selected" action.
    """

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class ReadOnlyInline(admin.TabularInline):
    extra = 0
    can_delete = False

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


def describe_value(value: Any) -> Any:
    """A JSON-safe, readable form of a form value for the audit log."""
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, models.Model):
        return str(value)
    if isinstance(value, QuerySet | list | tuple | set | frozenset):
        return sorted(str(describe_value(item)) for item in value)
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, dict):
        return {str(k): describe_value(v) for k, v in value.items()}
    return str(value)


def _shown(field: str, value: Any) -> Any:
    if field in SECRET_FIELDS or "password" in field:  # also password1/password2 on add
        return CHANGED
    if field in PHONE_FIELDS:
        return masked_phone(value)
    return describe_value(value)


def describe_changes(form: BaseForm, *, change: bool) -> dict[str, dict[str, Any]]:
    """``{field: {"from": old, "to": new}}`` for every field the form changed."""
    changes: dict[str, dict[str, Any]] = {}
    for field in form.changed_data:
        entry = {"to": _shown(field, form.cleaned_data.get(field))}
        if change:
            entry["from"] = _shown(field, form.initial.get(field))
        changes[field] = entry
    return changes


def acting_user(request: HttpRequest) -> User | None:
    return request.user if isinstance(request.user, User) else None


def audit_admin_action(
    request: HttpRequest, *, action: str, obj: models.Model, data: dict[str, Any]
) -> None:
    """One audit entry for one staff action in the admin, named after the model."""
    name = obj._meta.model_name
    audit_append(
        action=f"{name}.{action}",
        object_type=str(name),
        object_id=obj.pk,
        now=timezone.now(),
        actor=acting_user(request),
        data={"via": "admin", **data},
    )


class AuditedAdmin(admin.ModelAdmin):
    """Settings edited here leave an audit entry naming who changed what, from what to what.

    The admin runs saves and deletes inside a transaction, so the entry commits
    or rolls back with the change it records.
    """

    def save_model(self, request: HttpRequest, obj: Any, form: Any, change: bool) -> None:
        # Read the differences before saving: afterwards the form's initial data is stale.
        changes = describe_changes(form, change=change)
        super().save_model(request, obj, form, change)
        action = "changed" if change else "created"
        audit_admin_action(request, action=action, obj=obj, data={"changes": changes})

    def delete_model(self, request: HttpRequest, obj: Any) -> None:
        audit_admin_action(request, action="deleted", obj=obj, data={"was": str(obj)})
        super().delete_model(request, obj)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> None:
        # The bulk action is not wrapped in a transaction by Django; make it all-or-nothing.
        with transaction.atomic():
            for obj in queryset:
                audit_admin_action(request, action="deleted", obj=obj, data={"was": str(obj)})
            super().delete_queryset(request, queryset)
