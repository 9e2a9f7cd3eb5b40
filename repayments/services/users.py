"""Creating borrowers and staff, and the role groups they belong to."""

from __future__ import annotations

from datetime import datetime

from django.contrib.auth.models import Group, Permission
from django.contrib.auth.password_validation import validate_password
from django.db import transaction

from repayments.domain.identity import mask_id_number, normalise_phone, validate_id_number
from repayments.models import Role, User
from repayments.services.audit import audit_append

# What each staff role may do in Django admin, by model; borrowers get nothing there.
ROLE_PERMISSIONS: dict[Role, list[str]] = {
    Role.BORROWER: [],
    Role.SUPPORT_AGENT: [
        "view_user",
        "view_loan",
        "view_installment",
        "view_payment",
        "view_paymentattempt",
        "view_paymentevent",
        "view_allocation",
        "view_settlementquote",
        # The support console (/support/): read, query, resend, resolve, request refunds.
        "use_support_console",
        "act_in_support_console",
    ],
    Role.SUPPORT_SUPERVISOR: [
        "view_user",
        "view_loan",
        "view_installment",
        "view_payment",
        "view_paymentattempt",
        "view_paymentevent",
        "view_allocation",
        "view_settlementquote",
        "view_auditentry",
        "view_loanproduct",
        # Evidence a supervisor checks before approving a refund or a correction.
        "view_inboundcallbackrecord",
        "view_reconciliationrun",
        "view_discrepancy",
        "view_debitbatch",
        "view_channelsetting",
        "view_riskrules",
        # The support console, plus the checker's side: approve refunds, correct reviews.
        "use_support_console",
        "act_in_support_console",
        "approve_refundrequest",
        "correct_attempt_review",
    ],
    Role.ADMIN: [],  # admins are superusers
}


def roles_ensure() -> None:
    """Create the role groups and give them their permissions (idempotent)."""
    for role, codenames in ROLE_PERMISSIONS.items():
        group, _ = Group.objects.get_or_create(name=role.value)
        perms = Permission.objects.filter(
            content_type__app_label="repayments", codename__in=codenames
        )
        group.permissions.set(perms)


def borrower_register(
    *, phone: str, password: str, full_name: str, id_number: str, now: datetime
) -> User:
    """Create a borrower who signs in with ``phone``; only the masked ID is kept.

    :raises InvalidIdentity: for a malformed phone or ID number.
    :raises django.core.exceptions.ValidationError: for a weak password.
    """
    phone = normalise_phone(phone)
    masked_id = mask_id_number(validate_id_number(id_number))
    user = User(phone=phone, full_name=full_name, id_number_masked=masked_id, date_joined=now)
    validate_password(password, user)
    user.set_password(password)
    with transaction.atomic():
        user.full_clean()
        user.save()
        user.groups.add(Group.objects.get_or_create(name=Role.BORROWER.value)[0])
        audit_append(action="borrower.registered", object_type="user", object_id=user.pk, now=now)
    return user


def staff_create(
    *, username: str, password: str, role: Role, full_name: str, now: datetime
) -> User:
    """Create a staff member with ``role``; admins are superusers."""
    user = User(
        username=username,
        full_name=full_name,
        is_staff=True,
        is_superuser=role == Role.ADMIN,
        date_joined=now,
    )
    validate_password(password, user)
    user.set_password(password)
    with transaction.atomic():
        user.full_clean()
        user.save()
        user.groups.add(Group.objects.get_or_create(name=role.value)[0])
        audit_append(
            action="staff.created",
            object_type="user",
            object_id=user.pk,
            now=now,
            data={"role": role.value},
        )
    return user
