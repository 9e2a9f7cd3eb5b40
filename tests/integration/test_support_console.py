"""The support console: who may reach each view and action (the permission matrix),
maker-checker refunds, search, and the one-view payment timeline."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.core.cache import cache
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.utils import timezone

from notifications.models import Notice, NoticeKind
from repayments.domain.states import AttemptStatus
from repayments.models import (
    AuditEntry,
    Dispute,
    DisputeCategory,
    Loan,
    Payment,
    PaymentAttempt,
    RefundRequest,
    RefundRequestStatus,
    Role,
    SupportNote,
    User,
)
from repayments.services import support
from repayments.services.disputes import dispute_open
from repayments.services.support import (
    NotAllowed,
    RefundAlreadyDecided,
    SelfApprovalRefused,
    refund_request_create,
    refund_request_decide,
)
from repayments.services.support_timeline import payment_timeline, support_search
from repayments.services.users import roles_ensure, staff_create
from tests.integration.fake_channel import FakeChannels
from tests.integration.helpers import open_attempt, report, retry_with_alipay

pytestmark = pytest.mark.django_db
PASSWORD = "demo12345-Test"
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 32


@dataclass
class World:
    borrower: User
    staff: dict[str, User]
    payment: Payment
    duplicate: PaymentAttempt
    review: PaymentAttempt
    dispute: Dispute
    channels: FakeChannels


@pytest.fixture
def world(make_loan: Callable[..., Loan], settings: Any, tmp_path: Path, monkeypatch: Any) -> World:
    """A paid payment with a duplicate charge, an open case with a screenshot, an
    attempt waiting for review, and one staff member of each role."""
    settings.MEDIA_ROOT = tmp_path / "media"
    cache.clear()
    roles_ensure()
    now = timezone.now() - timedelta(hours=1)
    staff = {
        name: staff_create(username=name, password=PASSWORD, role=role, full_name=name, now=now)
        for name, role in (
            ("agent", Role.SUPPORT_AGENT),
            ("agent2", Role.SUPPORT_AGENT),
            ("supervisor", Role.SUPPORT_SUPERVISOR),
            ("supervisor2", Role.SUPPORT_SUPERVISOR),
            ("admin", Role.ADMIN),
        )
    }
    loan = make_loan()
    payment, first = open_attempt(loan, "100.00", now)
    report(first, AttemptStatus.FAILED, now)
    second = retry_with_alipay(payment, now)
    report(second, AttemptStatus.SUCCEEDED, now)
    report(first, AttemptStatus.SUCCEEDED, now)  # the first charge arrives late: a duplicate
    PaymentAttempt.objects.filter(pk=first.pk).update(channel_trade_no="4200001234202601050001")
    first.refresh_from_db()
    dispute = dispute_open(
        borrower=loan.borrower,
        loan=loan,
        payment=payment,
        category=DisputeCategory.CHARGED_TWICE,
        description="I was charged twice",
        screenshot=SimpleUploadedFile("x.png", PNG),
        now=now,
    )
    _, review = open_attempt(make_loan(borrower=loan.borrower), "50.00", now)
    PaymentAttempt.objects.filter(pk=review.pk).update(needs_review=True)
    # Channel calls from console actions go to fakes, never to the network.
    channels = FakeChannels()
    for service in (
        support.support_query_channel,
        support.refund_request_decide,
        support.attempt_mark_reviewed,
    ):
        monkeypatch.setitem(service.__kwdefaults__, "channels", channels)
    return World(loan.borrower, staff, payment, first, review, dispute, channels)


# --- The permission matrix ------------------------------------------------------------
# Expected answer per role. "login": sent to sign in; "404": the console does not
# exist for you; "403": your role may not do this; "ok": served (GET 200) or done
# and redirected back into the console (POST 302, with an audit entry by you).
ROLES = ("anonymous", "borrower", "agent", "supervisor", "admin")
VIEW = ("login", "404", "ok", "ok", "ok")
ACT = ("login", "404", "ok", "ok", "ok")
CHECK = ("login", "404", "403", "ok", "ok")

Cell = tuple[str, str, Callable[[World], str], Callable[[World], dict[str, Any]], tuple[str, ...]]
MATRIX: list[Cell] = [
    ("queue", "GET", lambda w: "/support/", lambda w: {}, VIEW),
    ("search", "GET", lambda w: f"/support/search/?q={w.borrower.phone}", lambda w: {}, VIEW),
    ("payment", "GET", lambda w: f"/support/payments/{w.payment.public_id}/", lambda w: {}, VIEW),
    ("case", "GET", lambda w: f"/support/disputes/{w.dispute.public_id}/", lambda w: {}, VIEW),
    (
        "screenshot",
        "GET",
        lambda w: f"/support/disputes/{w.dispute.public_id}/screenshot/",
        lambda w: {},
        VIEW,
    ),
    (
        "query channel",
        "POST",
        lambda w: f"/support/payments/{w.payment.public_id}/query/",
        lambda w: {"reason": "borrower called"},
        ACT,
    ),
    (
        "resend confirmation",
        "POST",
        lambda w: f"/support/payments/{w.payment.public_id}/resend/",
        lambda w: {"reason": "lost the SMS"},
        ACT,
    ),
    (
        "internal note",
        "POST",
        lambda w: f"/support/payments/{w.payment.public_id}/notes/",
        lambda w: {"body": "called back"},
        ACT,
    ),
    (
        "request refund",
        "POST",
        lambda w: f"/support/payments/{w.payment.public_id}/refunds/",
        lambda w: {"attempt": w.duplicate.pk, "reason": "charged twice"},
        ACT,
    ),
    (
        "decide refund",
        "POST",
        lambda w: f"/support/refunds/{_pending_request(w).pk}/decide/",
        lambda w: {"decision": "approve", "note": "checked the statement"},
        CHECK,
    ),
    (
        "mark reviewed",
        "POST",
        lambda w: f"/support/attempts/{w.review.pk}/reviewed/",
        lambda w: {"reason": "channel says unpaid"},
        CHECK,
    ),
    (
        "reply to case",
        "POST",
        lambda w: f"/support/disputes/{w.dispute.public_id}/reply/",
        lambda w: {"body": "we are checking"},
        ACT,
    ),
    (
        "assign case",
        "POST",
        lambda w: f"/support/disputes/{w.dispute.public_id}/assign/",
        lambda w: {"assignee": w.staff["agent"].pk},
        ACT,
    ),
    (
        "resolve case",
        "POST",
        lambda w: f"/support/disputes/{w.dispute.public_id}/resolve/",
        lambda w: {"resolution": "refunded", "note": "refunded the duplicate"},
        ACT,
    ),
]


def _pending_request(world: World) -> RefundRequest:
    # Made by another agent, so every role's decision is a checker's, not a maker's.
    return refund_request_create(
        attempt=world.duplicate,
        actor=world.staff["agent2"],
        reason="charged twice",
        now=timezone.now(),
    )


def _client_for(world: World, role: str) -> Client:
    client = Client()
    if role == "borrower":
        client.force_login(world.borrower)
    elif role != "anonymous":
        client.force_login(world.staff[role])
    return client


def _outcome(response: Any, method: str) -> str:
    location = response.get("Location", "")
    if response.status_code == 302 and location.startswith("/login/"):
        return "login"
    if response.status_code in (403, 404):
        return str(response.status_code)
    if method == "GET" and response.status_code == 200:
        return "ok"
    if method == "POST" and response.status_code == 302 and location.startswith("/support/"):
        return "ok"
    return f"unexpected {response.status_code} {location}"


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize(
    ("name", "method", "url", "data", "expected"), MATRIX, ids=[cell[0] for cell in MATRIX]
)
def test_permission_matrix(
    world: World,
    role: str,
    name: str,
    method: str,
    url: Callable[[World], str],
    data: Callable[[World], dict[str, Any]],
    expected: tuple[str, ...],
) -> None:
    client = _client_for(world, role)
    target = url(world)
    audited_before = AuditEntry.objects.filter(actor_label=role).count()
    if method == "GET":
        response = client.get(target, headers={"accept-language": "en"})
    else:
        response = client.post(target, data(world), headers={"accept-language": "en"})
    got = _outcome(response, method)
    want = expected[ROLES.index(role)]
    print(f"{name:20} {role:10} -> {got}")
    assert got == want
    if method == "POST" and want == "ok":
        # Every console action that went through is audited under the actor's name,
        # and succeeded (no error message was queued for the agent).
        assert AuditEntry.objects.filter(actor_label=role).count() > audited_before
        followed = client.get(response["Location"], headers={"accept-language": "en"})
        assert b"notice-error" not in followed.content, followed.content.decode()[:3000]


def test_the_matrix_covers_every_console_url() -> None:
    from portal.views.support.urls import urlpatterns

    assert len(urlpatterns) == len(MATRIX)


# --- Maker-checker ---------------------------------------------------------------------


def test_an_agent_cannot_approve_and_nobody_approves_their_own_request(world: World) -> None:
    now = timezone.now()
    agent, supervisor = world.staff["agent"], world.staff["supervisor"]
    by_agent = refund_request_create(
        attempt=world.duplicate, actor=agent, reason="charged twice", now=now
    )
    with pytest.raises(NotAllowed):
        refund_request_decide(
            request=by_agent, actor=world.staff["agent2"], approve=True, note="ok", now=now
        )
    refund_request_decide(request=by_agent, actor=supervisor, approve=False, note="wait", now=now)

    by_supervisor = refund_request_create(
        attempt=world.duplicate, actor=supervisor, reason="charged twice", now=now
    )
    with pytest.raises(SelfApprovalRefused):
        refund_request_decide(
            request=by_supervisor, actor=supervisor, approve=True, note="mine", now=now
        )
    by_supervisor.refresh_from_db()
    assert by_supervisor.status == RefundRequestStatus.PENDING
    assert world.channels("unionpay").refunds == []


def test_self_approval_is_refused_through_the_console_too(world: World) -> None:
    supervisor = world.staff["supervisor"]
    request = refund_request_create(
        attempt=world.duplicate, actor=supervisor, reason="charged twice", now=timezone.now()
    )
    client = _client_for(world, "supervisor")
    response = client.post(
        f"/support/refunds/{request.pk}/decide/",
        {"decision": "approve", "note": "mine"},
        headers={"accept-language": "en"},
        follow=True,
    )
    assert b"You cannot decide a refund you requested yourself" in response.content
    request.refresh_from_db()
    assert request.status == RefundRequestStatus.PENDING


def test_a_supervisors_approval_refunds_exactly_once(world: World) -> None:
    now = timezone.now()
    request = refund_request_create(
        attempt=world.duplicate, actor=world.staff["agent"], reason="charged twice", now=now
    )
    decided = refund_request_decide(
        request=request, actor=world.staff["supervisor"], approve=True, note="ok", now=now
    )
    assert decided.status == RefundRequestStatus.REFUNDED
    with pytest.raises(RefundAlreadyDecided):
        refund_request_decide(
            request=request, actor=world.staff["supervisor2"], approve=True, note="ok", now=now
        )
    # A fresh request for the same, now refunded, charge is refused at the source.
    with pytest.raises(support.NotADuplicateCharge):
        refund_request_create(
            attempt=world.duplicate, actor=world.staff["agent2"], reason="again", now=now
        )
    assert world.channels("unionpay").refunds == [world.duplicate.out_trade_no]
    actions = list(
        AuditEntry.objects.filter(action__startswith="support.refund").values_list(
            "action", "actor_label"
        )
    )
    assert actions == [
        ("support.refund_requested", "agent"),
        ("support.refund_approved", "supervisor"),
    ]


# --- Search and timeline ---------------------------------------------------------------


@pytest.mark.parametrize("key", ["phone", "contract", "order", "channel_trade_no", "case"])
def test_search_finds_the_payment_by_every_key(world: World, key: str) -> None:
    attempt = world.duplicate
    query = {
        "phone": world.borrower.phone or "",
        "contract": world.payment.loan.contract_number,
        "order": attempt.out_trade_no,
        "channel_trade_no": attempt.channel_trade_no,
        "case": world.dispute.case_number,
    }[key]
    result = support_search(query)
    assert result.matched_by == key
    if key == "case":
        assert [d.pk for d in result.disputes] == [world.dispute.pk]
    else:
        assert world.payment.pk in [p.pk for p in result.payments]


def test_search_page_shows_the_phone_masked(world: World) -> None:
    client = _client_for(world, "agent")
    page = client.get(f"/support/search/?q={world.borrower.phone}").content.decode()
    phone = world.borrower.phone or ""
    results = page[page.index('<table class="results">') : page.index("</table>")]
    assert world.borrower.masked_phone in results
    assert phone not in results  # the query itself is echoed back, nothing else shows it


def test_the_timeline_has_every_source(world: World) -> None:
    now = timezone.now()
    support.support_note_add(payment=world.payment, author=world.staff["agent"], body="n", now=now)
    support.support_resend_confirmation(
        payment=world.payment, actor=world.staff["agent"], reason="lost", now=now
    )
    sources = {entry.source for entry in payment_timeline(world.payment)}
    assert {"event", "notice", "dispute", "note", "action"} <= sources
    times = [entry.at for entry in payment_timeline(world.payment)]
    assert times == sorted(times)


def test_resend_writes_a_fresh_confirmation_each_time(world: World) -> None:
    now = timezone.now()
    for _ in range(2):
        support.support_resend_confirmation(
            payment=world.payment, actor=world.staff["agent"], reason="lost", now=now
        )
    resent = Notice.objects.filter(
        subject_id=world.payment.pk,
        kind=NoticeKind.PAYMENT_SUCCEEDED,
        dedupe_key__contains="resend",
    )
    assert resent.count() == 2
    assert SupportNote.objects.count() == 0


def test_an_unknown_search_says_so(world: World) -> None:
    page = _client_for(world, "agent").get(
        "/support/search/?q=NOPE123", headers={"accept-language": "en"}
    )
    assert b"Nothing found" in page.content


def test_the_console_footer_speaks_to_staff_not_borrowers(world: World) -> None:
    client = _client_for(world, "agent")
    page = client.get("/support/", HTTP_ACCEPT_LANGUAGE="en").content.decode()
    footer = page[page.index("<footer>") : page.index("</footer>")]
    assert "400-800-0000" not in footer  # the borrowers' hotline
    assert "audit log" in footer
