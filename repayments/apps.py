from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class RepaymentsConfig(AppConfig):
    name = "repayments"
    verbose_name = _("Repayments")

    def ready(self) -> None:
        from repayments.metrics import register_collector
        from repayments.services.payment_notices import payment_notices_register
        from repayments.services.reminders import reminders_register

        register_collector()
        payment_notices_register()
        reminders_register()
