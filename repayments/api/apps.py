"""The API is an app only so that its messages ship with it (``locale/``)."""

from __future__ import annotations

from django.apps import AppConfig


class ApiConfig(AppConfig):
    name = "repayments.api"
    label = "repayments_api"
    verbose_name = "Anxin Repay API"
