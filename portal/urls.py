"""Root URLs."""

from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path

from portal.views import callbacks, health, notices, pages, pay, receipts, record
from portal.views import disputes as dispute_views
from portal.views import password_reset as password_reset_views
from portal.views import receipt as receipt_views
from portal.views import schedule as schedule_views
from portal.views import settlement as settlement_views

admin.site.site_header = "安心还款 Anxin Repay"
admin.site.site_title = "Anxin Repay admin"

urlpatterns = [
    path("", pages.home, name="home"),
    path("login/", pages.SignInView.as_view(), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("password-reset/", password_reset_views.password_reset, name="password-reset"),
    path(
        "password-reset/verify/",
        password_reset_views.password_reset_verify,
        name="password-reset-verify",
    ),
    path("record/", record.record, name="record"),
    path("record/<uuid:public_id>/", record.payment_detail, name="payment-detail"),
    path("record/<uuid:public_id>/row/", record.record_row, name="record-row"),
    path("record/<uuid:public_id>/fallback/", pay.pay_fallback, name="payment-fallback"),
    path("record/<uuid:public_id>/receipt/", receipt_views.receipt_page, name="receipt"),
    path("record/<uuid:public_id>/receipt.pdf", receipt_views.receipt_pdf, name="receipt-pdf"),
    path("loans/<int:loan_id>/pay/", pay.pay, name="pay"),
    path("loans/<int:loan_id>/pay/confirm/", pay.pay_confirm, name="pay-confirm"),
    path("loans/<int:loan_id>/schedule/", schedule_views.schedule, name="schedule"),
    path("loans/<int:loan_id>/settlement/", settlement_views.settlement, name="settlement"),
    path(
        "loans/<int:loan_id>/settlement/<uuid:quote_id>/",
        settlement_views.settlement_quote,
        name="settlement-quote",
    ),
    path(
        "loans/<int:loan_id>/settlement/<uuid:quote_id>/pay/",
        settlement_views.settlement_pay,
        name="settlement-pay",
    ),
    path("notices/", notices.notices, name="notices"),
    path("disputes/", dispute_views.dispute_list, name="disputes"),
    path("disputes/new/", dispute_views.dispute_new, name="dispute-new"),
    path("disputes/<uuid:public_id>/", dispute_views.dispute_detail, name="dispute-detail"),
    path(
        "disputes/<uuid:public_id>/screenshot/",
        dispute_views.dispute_screenshot,
        name="dispute-screenshot",
    ),
    path("support/", include("portal.views.support.urls")),
    path("api/", include("repayments.api.urls")),
    path("callbacks/<str:channel>/", callbacks.channel_callback, name="channel-callback"),
    path(
        "notifications/receipts/aliyun/",
        receipts.aliyun_sms_receipts,
        name="aliyun-sms-receipts",
    ),
    path("healthz", health.healthz, name="healthz"),
    path("readyz", health.readyz, name="readyz"),
    path("i18n/", include("django.conf.urls.i18n")),
    path("admin/", admin.site.urls),
    path("", include("django_prometheus.urls")),
]
