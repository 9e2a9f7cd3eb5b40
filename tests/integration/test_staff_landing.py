"""Staff sign in to the console, not to the borrower's (empty) loan page; the
console's own records are visible, and only visible, in admin."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from django.test import Client

from repayments.models import Role
from repayments.services.users import roles_ensure, staff_create

pytestmark = pytest.mark.django_db
NOW = datetime(2026, 11, 30, 2, 0, tzinfo=UTC)


@pytest.fixture
def agent_client() -> Client:
    roles_ensure()
    staff_create(
        username="agent1",
        password="s3cure-Pass-91",
        role=Role.SUPPORT_AGENT,
        full_name="A",
        now=NOW,
    )
    return Client()


def test_an_agent_signing_in_lands_on_the_console(agent_client: Client) -> None:
    response = agent_client.post("/login/", {"username": "agent1", "password": "s3cure-Pass-91"})
    assert response.status_code == 302
    assert response["Location"] == "/support/"
    assert agent_client.get("/")["Location"] == "/support/"


def test_a_visitor_still_sees_the_welcome_page() -> None:
    assert Client().get("/").status_code == 200


@pytest.mark.parametrize("model", ["refundrequest", "supportnote"])
def test_console_records_are_read_only_in_admin(admin_client: Client, model: str) -> None:
    assert admin_client.get(f"/admin/repayments/{model}/").status_code == 200
    assert admin_client.get(f"/admin/repayments/{model}/add/").status_code == 403
