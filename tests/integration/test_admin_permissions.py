"""Who reaches which admin page: borrowers never, agents read-only, admins everything."""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from typing import Any

import pytest
from django.test import Client
from django.utils import timezone

from repayments.models import (
    DebitBatch,
    InboundCallbackRecord,
    Loan,
    LoanProduct,
    PaymentAttempt,
    Role,
    User,
)
from repayments.services.users import roles_ensure, staff_create
from tests.integration.helpers import open_attempt

pytestmark = pytest.mark.django_db

LOGIN = "/admin/login/"
# GET of each page by role: 200 shown, 403 refused, "login" redirected to the admin login.
MATRIX: dict[str, dict[str, int | str]] = {
    "/admin/": {"agent": 200, "supervisor": 200, "admin": 200, "borrower": "login"},
    "/admin/repayments/loan/": {"agent": 200, "supervisor": 200, "admin": 200, "borrower": "login"},
    "/admin/repayments/payment/": {
        "agent": 200,
        "supervisor": 200,
        "admin": 200,
        "borrower": "login",
    },
    "/admin/repayments/auditentry/": {
        "agent": 403,
        "supervisor": 200,
        "admin": 200,
        "borrower": "login",
    },
    "/admin/repayments/loanproduct/": {
        "agent": 403,
        "supervisor": 200,
        "admin": 200,
        "borrower": "login",
    },
    "/admin/repayments/channelsetting/": {
        "agent": 403,
        "supervisor": 200,
        "admin": 200,
        "borrower": "login",
    },
    "/admin/repayments/inboundcallbackrecord/": {
        "agent": 403,
        "supervisor": 200,
        "admin": 200,
        "borrower": "login",
    },
    "/admin/repayments/debitbatch/": {
        "agent": 403,
        "supervisor": 200,
        "admin": 200,
        "borrower": "login",
    },
    "/admin/auth/group/": {"agent": 403, "supervisor": 403, "admin": 200, "borrower": "login"},
    "/admin/notifications/noticetemplate/": {
        "agent": 403,
        "supervisor": 403,
        "admin": 200,
        "borrower": "login",
    },
}


@pytest.fixture
def login_as(client: Client, make_borrower: Callable[..., User]) -> Callable[[str], Client]:
    roles_ensure()
    now = timezone.now()
    staff_roles = {
        "agent": Role.SUPPORT_AGENT,
        "supervisor": Role.SUPPORT_SUPERVISOR,
        "admin": Role.ADMIN,
    }

    def login(who: str) -> Client:
        if who == "borrower":
            user = make_borrower()
        else:
            user = staff_create(
                username=f"{who}1",
                password="Staff-pass-0123",
                role=staff_roles[who],
                full_name=who,
                now=now,
            )
        client.force_login(user)
        return client

    return login


@pytest.mark.parametrize("who", ["agent", "supervisor", "admin", "borrower"])
def test_admin_pages_by_role(login_as: Callable[[str], Client], who: str) -> None:
    client = login_as(who)
    seen: dict[str, int | str] = {}
    for path in MATRIX:
        response = client.get(path)
        if response.status_code == 302:
            assert response["Location"].startswith(f"{LOGIN}?next="), path
            seen[path] = "login"
        else:
            seen[path] = response.status_code
    assert seen == {path: expected[who] for path, expected in MATRIX.items()}


def test_anonymous_is_sent_to_the_admin_login(client: Client) -> None:
    response = client.get("/admin/repayments/loan/")
    assert response.status_code == 302
    assert response["Location"] == f"{LOGIN}?next=/admin/repayments/loan/"


def test_agent_sees_a_loan_but_cannot_change_it(
    login_as: Callable[[str], Client], make_loan: Callable[..., Loan]
) -> None:
    loan = make_loan()
    client = login_as("agent")
    page = client.get(f"/admin/repayments/loan/{loan.pk}/change/")
    assert page.status_code == 200
    assert 'name="_save"' not in page.content.decode()
    refused = client.post(f"/admin/repayments/loan/{loan.pk}/change/", {"vehicle": "Forged"})
    assert refused.status_code == 403
    loan.refresh_from_db()
    assert loan.vehicle == "Test vehicle"


def test_supervisor_reads_products_but_cannot_change_them(
    login_as: Callable[[str], Client], make_product: Callable[..., LoanProduct]
) -> None:
    product = make_product()
    client = login_as("supervisor")
    assert client.get(f"/admin/repayments/loanproduct/{product.pk}/change/").status_code == 200
    refused = client.post(f"/admin/repayments/loanproduct/{product.pk}/change/", {"name": "Forged"})
    assert refused.status_code == 403
    product.refresh_from_db()
    assert product.name == "Test car loan"


def test_replay_is_offered_to_admins_only(login_as: Callable[[str], Client]) -> None:
    InboundCallbackRecord.objects.create(
        channel="alipay", body=b"x=1", received_at=timezone.now(), status="quarantined"
    )
    supervisor_page = login_as("supervisor").get("/admin/repayments/inboundcallbackrecord/")
    admin_page = login_as("admin").get("/admin/repayments/inboundcallbackrecord/")
    assert 'value="replay"' not in supervisor_page.content.decode()
    assert 'value="replay"' in admin_page.content.decode()


@pytest.mark.parametrize(
    "path",
    [
        "/admin/repayments/auditentry/",
        "/admin/repayments/paymentevent/",
        "/admin/repayments/inboundcallbackrecord/",
        "/admin/repayments/allocation/",
        "/admin/repayments/debitbatch/",
    ],
)
def test_ledgers_have_no_add_or_bulk_delete_even_for_superusers(
    admin_client: Client, path: str
) -> None:
    page: Any = admin_client.get(path)
    html = page.content.decode()
    assert page.status_code == 200
    assert 'value="delete_selected"' not in html
    assert f'href="{path}add/"' not in html
    assert admin_client.get(f"{path}add/").status_code == 403


def test_a_debit_batch_page_counts_its_lines_by_status(
    admin_client: Client, make_loan: Callable[..., Any]
) -> None:
    when = timezone.now()
    _, attempt = open_attempt(make_loan(), "100.00", when)
    batch = DebitBatch.objects.create(
        channel="unionpay",
        batch_no="0001",
        placed_on=timezone.localdate(when),
        placed_at=when,
        sent_at=when,
        line_count=1,
        total_amount=Decimal("100.00"),
    )
    PaymentAttempt.objects.filter(pk=attempt.pk).update(debit_batch=batch)
    page = admin_client.get(
        f"/admin/repayments/debitbatch/{batch.pk}/change/", HTTP_ACCEPT_LANGUAGE="en"
    )
    assert page.status_code == 200
    assert "Submitting: 1" in page.content.decode()
