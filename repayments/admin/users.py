"""Users and roles. Roles are auth groups; every change to either is audited.

Users are deactivated, never deleted: audit entries keep pointing at their actor.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin
from django.contrib.auth.admin import GroupAdmin as BaseGroupAdmin
from django.contrib.auth.admin import UserAdmin as BaseUserAdmin
from django.contrib.auth.forms import UserCreationForm
from django.contrib.auth.models import Group
from django.db import transaction
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.utils.translation import gettext_lazy as _

from repayments.admin.base import AuditedAdmin, audit_admin_action
from repayments.admin.masking import masked_phone
from repayments.models import Role, User

STAFF_ROLES = [(role.value, role.label) for role in Role if role != Role.BORROWER]


class StaffCreationForm(UserCreationForm):
    """Staff are created here with their role; borrowers register themselves by phone."""

    role = forms.ChoiceField(label=_("role"), choices=STAFF_ROLES)

    class Meta:
        model = User
        fields = ("username", "full_name")


@admin.register(User)
class UserAdmin(AuditedAdmin, BaseUserAdmin):
    add_form = StaffCreationForm
    list_display = (
        "__str__",
        "full_name",
        "phone_masked",
        "roles",
        "is_staff",
        "is_active",
        "date_joined",
    )
    list_filter = ("is_staff", "is_active", "groups")
    search_fields = ("username", "full_name", "phone")
    ordering = ("-date_joined",)
    readonly_fields = ("phone_masked", "id_number_masked", "last_login", "date_joined")
    fieldsets = (
        (None, {"fields": ("username", "password")}),
        (_("Person"), {"fields": ("full_name", "phone_masked", "id_number_masked")}),
        (_("Access"), {"fields": ("is_active", "is_staff", "is_superuser", "groups")}),
        (_("Dates"), {"fields": ("last_login", "date_joined")}),
    )
    add_fieldsets = (
        (
            None,
            {
                "classes": ("wide",),
                "fields": ("username", "full_name", "role", "password1", "password2"),
            },
        ),
    )

    def save_model(self, request: HttpRequest, obj: Any, form: Any, change: bool) -> None:
        role = None if change else Role(form.cleaned_data["role"])
        if role is not None:
            obj.is_staff = True
            obj.is_superuser = role == Role.ADMIN  # as staff_create does
        super().save_model(request, obj, form, change)
        if role is not None:
            obj.groups.add(Group.objects.get_or_create(name=role.value)[0])

    def get_queryset(self, request: HttpRequest) -> QuerySet[User]:
        return super().get_queryset(request).prefetch_related("groups")

    @admin.display(description=_("mobile number"))
    def phone_masked(self, obj: User) -> str:
        return masked_phone(obj.phone)

    @admin.display(description=_("roles"))
    def roles(self, obj: User) -> str:
        return ", ".join(sorted(group.name for group in obj.groups.all()))

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def user_change_password(
        self, request: HttpRequest, id: str, form_url: str = ""
    ) -> HttpResponse:
        # Django's password view saves outside save_model; audit it in the same transaction.
        with transaction.atomic():
            response = super().user_change_password(request, id, form_url)
            if request.method == "POST" and response.status_code == 302:
                user = self.get_object(request, id)
                if user is not None:
                    audit_admin_action(
                        request,
                        action="password_changed",
                        obj=user,
                        data={"changes": {"password": {"to": "(changed)"}}},
                    )
        return response


if admin.site.is_registered(Group):
    admin.site.unregister(Group)


@admin.register(Group)
class RoleAdmin(AuditedAdmin, BaseGroupAdmin):
    """A role's permissions decide what its staff may see and do in this admin."""
