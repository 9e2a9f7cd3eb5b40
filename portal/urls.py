"""Root URLs."""

from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path

from portal.views import callbacks, health, pages

admin.site.site_header = "安心还款 Anxin Repay"
admin.site.site_title = "Anxin Repay admin"

urlpatterns = [
    path("", pages.home, name="home"),
    path("login/", pages.SignInView.as_view(), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("callbacks/<str:channel>/", callbacks.channel_callback, name="channel-callback"),
    path("healthz", health.healthz, name="healthz"),
    path("readyz", health.readyz, name="readyz"),
    path("i18n/", include("django.conf.urls.i18n")),
    path("admin/", admin.site.urls),
    path("", include("django_prometheus.urls")),
]
