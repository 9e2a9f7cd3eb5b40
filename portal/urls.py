"""Root URLs."""

from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path

from portal.views import callbacks, health, notices, pages, pay, receipts, record

admin.site.site_header = "安心还款 Anxin Repay"
admin.site.site_title = "Anxin Repay admin"

urlpatterns = [
    path("", pages.home, name="home"),
    path("login/", pages.SignInView.as_view(), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("record/", record.record, name="record"),
    path("record/<uuid:public_id>/", record.payment_detail, name="payment-detail"),
    path("record/<uuid:public_id>/row/", record.record_row, name="record-row"),
    path("record/<uuid:public_id>/fallback/", pay.pay_fallback, name="payment-fallback"),
    path("loans/<int:loan_id>/pay/", pay.pay, name="pay"),
    path("loans/<int:loan_id>/pay/confirm/", pay.pay_confirm, name="pay-confirm"),
    path("notices/", notices.notices, name="notices"),
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
