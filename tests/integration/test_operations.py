"""Health endpoints, demo data, admin pages and deploy settings."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.management import call_command
from django.test import Client, override_settings

from repayments.models import AuditEntry, Installment, Loan, LoanStatus, Payment, User
from repayments.services.audit import audit_verify

ROOT = Path(__file__).resolve().parents[2]


def test_healthz_is_up(client: Client) -> None:
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


@pytest.mark.django_db
def test_readyz_checks_database_and_broker(client: Client) -> None:
    response = client.get("/readyz")
    assert response.status_code == 200
    assert response.json()["checks"] == {"database": True, "broker": True}


@pytest.mark.django_db
def test_readyz_is_503_when_broker_is_unreachable(client: Client) -> None:
    from portal.celery import app

    original = app.conf.broker_url
    app.conf.update(broker_url="redis://127.0.0.1:1/0")
    try:
        response = client.get("/readyz")
    finally:
        app.conf.update(broker_url=original)
    assert response.status_code == 503
    assert response.json()["checks"]["broker"] is False


@pytest.mark.django_db
def test_seed_demo_is_idempotent() -> None:
    call_command("seed_demo")
    counts = [m.objects.count() for m in (User, Loan, Installment, Payment, AuditEntry)]
    call_command("seed_demo")
    assert [m.objects.count() for m in (User, Loan, Installment, Payment, AuditEntry)] == counts
    statuses = dict(Loan.objects.values_list("contract_number", "status"))
    assert statuses["AX-2025-000303"] == LoanStatus.SETTLED_EARLY
    assert Payment.objects.filter(status="processing").count() == 1
    assert audit_verify() is None
    for phone in ("13800138000", "13800138001", "13800138002"):
        assert User.objects.get(phone=phone).check_password("demo12345")


@pytest.mark.django_db
def test_demo_borrower_signs_in_with_phone_and_sees_only_own_loans(client: Client) -> None:
    call_command("seed_demo")
    response = client.post(
        "/login/", {"username": "13800138000", "password": "demo12345"}, follow=True
    )
    page = response.content.decode()
    assert "AX-2025-000101" in page
    assert "AX-2025-000202" not in page
    assert "AX-2025-000303" not in page


@pytest.mark.django_db
def test_wrong_password_gets_translated_error(client: Client) -> None:
    call_command("seed_demo")
    response = client.post(
        "/login/", {"username": "13800138000", "password": "nope"}, HTTP_ACCEPT_LANGUAGE="en"
    )
    assert response.status_code == 200
    assert "do not match" in response.content.decode()


@pytest.mark.django_db
def test_admin_pages_render_and_mask_phones(admin_client: Client) -> None:
    call_command("seed_demo")
    for path in (
        "/admin/repayments/user/",
        "/admin/repayments/loan/",
        "/admin/repayments/payment/",
        "/admin/repayments/paymentattempt/",
        "/admin/repayments/paymentevent/",
        "/admin/repayments/allocation/",
        "/admin/repayments/settlementquote/",
        "/admin/repayments/loanproduct/",
        "/admin/repayments/boundcard/",
        "/admin/repayments/auditentry/",
        f"/admin/repayments/loan/{Loan.objects.earliest('pk').pk}/change/",
        f"/admin/repayments/payment/{Payment.objects.earliest('pk').pk}/change/",
    ):
        response = admin_client.get(path)
        assert response.status_code == 200, path
    users_page = admin_client.get("/admin/repayments/user/").content.decode()
    assert "138****8000" in users_page
    assert "13800138000" not in users_page


@pytest.mark.django_db
def test_audit_log_is_read_only_in_admin(admin_client: Client) -> None:
    call_command("seed_demo")
    entry = AuditEntry.objects.earliest("pk")
    response = admin_client.post(
        f"/admin/repayments/auditentry/{entry.pk}/delete/", {"post": "yes"}
    )
    assert response.status_code == 403
    assert AuditEntry.objects.filter(pk=entry.pk).exists()


@pytest.mark.django_db
@override_settings(AXES_FAILURE_LIMIT=3)
def test_lockout_is_per_user_and_ip(client: Client) -> None:
    call_command("seed_demo")
    for _ in range(3):
        client.post(
            "/login/", {"username": "13800138000", "password": "wrong"}, REMOTE_ADDR="10.0.0.1"
        )
    locked = client.post(
        "/login/", {"username": "13800138000", "password": "demo12345"}, REMOTE_ADDR="10.0.0.1"
    )
    assert locked.status_code == 429
    other_ip = client.post(
        "/login/", {"username": "13800138000", "password": "demo12345"}, REMOTE_ADDR="10.0.0.2"
    )
    assert other_ip.status_code == 302


def _run_settings(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    clean = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("DJANGO_", "DATABASE_URL", "REDIS_URL", "CACHE_REDIS_URL"))
    }
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_malformed_environment_variable_is_named() -> None:
    result = _run_settings({"DJANGO_DEBUG": "maybe"}, "check")
    assert result.returncode != 0
    assert "DJANGO_DEBUG must be true or false (got 'maybe')" in result.stderr


def test_a_separate_cache_redis_is_checked_like_the_broker_url() -> None:
    env = {"DJANGO_DEBUG": "true", "REDIS_URL": "redis://127.0.0.1:6379/15"}
    result = _run_settings({**env, "CACHE_REDIS_URL": "http://cache:6379/0"}, "check")
    assert result.returncode != 0
    assert "CACHE_REDIS_URL must start with one of redis://, rediss://" in result.stderr
    shown = _run_settings(
        {**env, "CACHE_REDIS_URL": "redis://127.0.0.1:6379/14"},
        "shell",
        "-c",
        "from django.conf import settings as s; "
        "print(s.CACHES['default']['LOCATION'], s.CELERY_BROKER_URL)",
    )
    last_line = shown.stdout.strip().splitlines()[-1]
    assert last_line.split() == ["redis://127.0.0.1:6379/14", "redis://127.0.0.1:6379/15"]


def test_missing_secret_key_without_debug_is_refused(tmp_path: Path) -> None:
    result = _run_settings({"ANXIN_VAR_DIR": str(tmp_path)}, "check")
    assert result.returncode != 0
    assert "DJANGO_SECRET_KEY is required" in result.stderr


def test_deploy_check_is_clean_with_production_settings(tmp_path: Path) -> None:
    env = {
        "DJANGO_SECRET_KEY": "x" * 20 + "-production-like-secret-key-for-the-deploy-check-0123",
        "DJANGO_ALLOWED_HOSTS": "repay.example.com",
        "ANXIN_VAR_DIR": str(tmp_path),
    }
    result = _run_settings(env, "check", "--deploy", "--fail-level", "WARNING")
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.django_db
def test_pages_speak_chinese_by_default_and_english_on_request(client: Client) -> None:
    call_command("seed_demo")
    client.post("/login/", {"username": "13800138000", "password": "demo12345"})
    assert "我的车贷" in client.get("/").content.decode()
    assert "My car loans" in client.get("/", HTTP_ACCEPT_LANGUAGE="en").content.decode()


@pytest.mark.django_db
def test_borrower_home_query_count_does_not_grow_with_loans(
    client: Client, django_assert_max_num_queries
) -> None:
    call_command("seed_demo")
    client.post("/login/", {"username": "13800138000", "password": "demo12345"})
    # Session, user, and one query for all loans with their totals.
    with django_assert_max_num_queries(6):
        assert client.get("/").status_code == 200


@pytest.mark.django_db
def test_models_and_migrations_agree() -> None:
    call_command("makemigrations", "--check", "--dry-run", verbosity=0)
