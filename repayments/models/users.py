"""People: borrowers log in with a mainland mobile number, staff with a username."""

from __future__ import annotations

from typing import Any, ClassVar

from django.contrib.auth.models import AbstractBaseUser, BaseUserManager, PermissionsMixin
from django.core.validators import RegexValidator
from django.db import models
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from repayments.domain.identity import MAINLAND_MOBILE, mask_phone


class Role(models.TextChoices):
    """Roles are auth groups with these names; permissions hang off the groups."""

    BORROWER = "borrower", _("Borrower")
    SUPPORT_AGENT = "support_agent", _("Support agent")
    SUPPORT_SUPERVISOR = "support_supervisor", _("Support supervisor")
    ADMIN = "admin", _("Administrator")


class UserManager(BaseUserManager["User"]):
    """Used by ``createsuperuser``; borrowers are created by ``borrower_register``."""

    def create_user(self, username: str, password: str | None = None, **extra: Any) -> User:
        user = self.model(username=username, **extra)
        user.set_password(password)
        user.save(using=self._db)
        return user

    def create_superuser(self, username: str, password: str | None = None, **extra: Any) -> User:
        extra.update(is_staff=True, is_superuser=True)
        return self.create_user(username, password, **extra)


class User(AbstractBaseUser, PermissionsMixin):
    username = models.CharField(
        _("username"),
        max_length=150,
        unique=True,
        null=True,
        blank=True,
        help_text=_("Staff sign in with this; borrowers use their phone number."),
        validators=[RegexValidator(r"^[a-zA-Z][\w.@+-]*$", _("Start with a letter."))],
    )
    phone = models.CharField(
        _("mobile number"),
        max_length=11,
        unique=True,
        null=True,
        blank=True,
        validators=[
            RegexValidator(MAINLAND_MOBILE, _("Enter an 11-digit mainland mobile number."))
        ],
    )
    full_name = models.CharField(_("full name"), max_length=100, blank=True)
    id_number_masked = models.CharField(
        _("ID number (masked)"), max_length=18, blank=True, help_text=_("Only the masked form.")
    )
    is_staff = models.BooleanField(_("staff status"), default=False)
    is_active = models.BooleanField(_("active"), default=True)
    date_joined = models.DateTimeField(_("date joined"), default=timezone.now)

    objects: ClassVar[UserManager] = UserManager()

    USERNAME_FIELD = "username"
    REQUIRED_FIELDS: ClassVar[list[str]] = []

    class Meta:
        verbose_name = _("user")
        verbose_name_plural = _("users")
        constraints = [
            models.CheckConstraint(
                condition=Q(username__isnull=False) | Q(phone__isnull=False),
                name="user_has_login",
                violation_error_message=_("A user needs a username or a mobile number."),
            )
        ]

    def __str__(self) -> str:
        return self.username or mask_phone(self.phone or "")

    @property
    def masked_phone(self) -> str:
        return mask_phone(self.phone) if self.phone else ""

    def has_role(self, role: Role) -> bool:
        return self.groups.filter(name=role.value).exists()
