"""One error shape everywhere (RFC 9457 problem details), translated, and no 500 on any
input: bad JSON, wrong media type, unknown paths, absurd ids, throttling."""

from __future__ import annotations

import pytest

from repayments.api.throttling import BorrowerRateThrottle, PaymentRateThrottle
from tests.api.conftest import Borrower, problem_of

pytestmark = pytest.mark.django_db


def test_not_signed_in_is_explained_in_chinese_by_default(api) -> None:
    body = problem_of(api.get("/api/v1/loans/"))
    assert body["title"] == "未登录"
    assert body["detail"] == "身份认证信息未提供。"  # DRF's own zh-hans catalog
    assert body["instance"] == "/api/v1/loans/"


def test_accept_language_en_gives_english(api) -> None:
    body = problem_of(api.get("/api/v1/loans/", HTTP_ACCEPT_LANGUAGE="en"))
    assert body["title"] == "Not signed in"
    assert body["detail"] == "Authentication credentials were not provided."


@pytest.mark.parametrize(
    ("language", "message"),
    [
        ("zh-hans", "请输入以元为单位、最多两位小数的金额，例如 2967.99。"),
        ("en", "Enter an amount in yuan with at most two decimal places, for example 2967.99."),
    ],
)
def test_field_errors_are_listed_and_translated(
    alice: Borrower, language: str, message: str
) -> None:
    response = alice.client.post(
        "/api/v1/payments/",
        {"loan": alice.loan.pk, "amount": 12.5, "method": "telepathy"},
        format="json",
        HTTP_IDEMPOTENCY_KEY="k-1",
        HTTP_ACCEPT_LANGUAGE=language,
    )
    assert response.status_code == 400
    body = problem_of(response)
    assert body["code"] == "invalid"
    errors = {e["field"]: e for e in body["errors"]}
    assert errors["amount"] == {"field": "amount", "code": "invalid_amount", "message": message}
    assert errors["method"]["code"] == "invalid_choice"


@pytest.mark.parametrize(
    ("language", "detail"),
    [
        ("zh-hans", "使用该 Idempotency-Key 的请求仍在处理中，请稍后再试。"),
        ("en", "A request with this Idempotency-Key is still being processed. Try again shortly."),
    ],
)
def test_domain_errors_are_translated(alice: Borrower, language: str, detail: str) -> None:
    from django.core.cache import cache

    cache.add(f"api:idempotency:{alice.user.pk}:k-2", 1, 60)
    response = alice.client.post(
        "/api/v1/payments/",
        {"loan": alice.loan.pk, "amount": "10.00", "method": "alipay_balance"},
        format="json",
        HTTP_IDEMPOTENCY_KEY="k-2",
        HTTP_ACCEPT_LANGUAGE=language,
    )
    body = problem_of(response)
    assert (body["status"], body["code"], body["detail"]) == (409, "request_in_flight", detail)


def test_malformed_json_is_400(alice: Borrower) -> None:
    response = alice.client.generic(
        "POST", "/api/v1/disputes/", "{not json", content_type="application/json"
    )
    assert response.status_code == 400
    assert problem_of(response)["code"] == "parse_error"


def test_a_form_body_is_415(alice: Borrower) -> None:
    response = alice.client.post("/api/v1/disputes/", {"loan": "1"})
    assert response.status_code == 415
    assert problem_of(response)["code"] == "unsupported_media_type"


def test_an_unsupported_method_is_405(alice: Borrower) -> None:
    response = alice.client.delete(f"/api/v1/loans/{alice.loan.pk}/")
    assert response.status_code == 405
    assert problem_of(response)["code"] == "method_not_allowed"


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/nothing-here/",
        "/api/v2/loans/",
        "/api/v1/loans/abc/",
        "/api/v1/loans/99999999999999999999999/",
        "/api/v1/loans/9999999999999999999/",
        "/api/v1/loans/0/schedule/",
        "/api/v1/payments/not-a-uuid/",
        "/api/v1/disputes/-1/",
        "/api/v1/disputes/1/",  # row numbers name nothing: disputes go by their UUID
    ],
)
def test_unknown_or_absurd_paths_are_404_problems(alice: Borrower, path: str) -> None:
    response = alice.client.get(path)
    assert response.status_code == 404
    assert problem_of(response)["code"] == "not_found"


@pytest.mark.parametrize(
    "body",
    [
        {"loan": 2**70, "amount": "1.00", "method": "alipay_balance"},
        {"loan": "1; drop table", "amount": "1.00", "method": "alipay_balance"},
        {"loan": None, "amount": None, "method": None},
        {"loan": [], "amount": {}, "method": 5},
        {"loan": 1, "amount": "1" * 40, "method": "alipay_balance"},
        {"loan": 1, "quote": "zzz", "method": "alipay_balance"},
        [],
        "text",
    ],
)
def test_absurd_bodies_are_400_problems(alice: Borrower, body: object) -> None:
    response = alice.client.post(
        "/api/v1/payments/", body, format="json", HTTP_IDEMPOTENCY_KEY="k-3"
    )
    assert response.status_code == 400, response.content
    assert problem_of(response)["errors"]


def test_throttled_requests_get_429_with_retry_after(alice: Borrower, monkeypatch) -> None:
    monkeypatch.setattr(BorrowerRateThrottle, "THROTTLE_RATES", {"borrower": "3/min"})
    statuses = [alice.client.get("/api/v1/loans/").status_code for _ in range(4)]
    assert statuses == [200, 200, 200, 429]
    response = alice.client.get("/api/v1/loans/", HTTP_ACCEPT_LANGUAGE="en")
    body = problem_of(response)
    assert body["code"] == "throttled"
    assert 0 < int(response["Retry-After"]) <= 60
    assert body["detail"].startswith("Request was throttled.")


def test_creating_payments_has_its_own_lower_rate(alice: Borrower, monkeypatch) -> None:
    monkeypatch.setattr(PaymentRateThrottle, "THROTTLE_RATES", {"payments": "1/min"})
    body = {"loan": alice.loan.pk, "amount": "bad", "method": "alipay_balance"}
    first = alice.client.post("/api/v1/payments/", body, format="json", HTTP_IDEMPOTENCY_KEY="a")
    second = alice.client.post("/api/v1/payments/", body, format="json", HTTP_IDEMPOTENCY_KEY="b")
    assert (first.status_code, second.status_code) == (400, 429)
    assert second["Retry-After"]
    assert alice.client.get("/api/v1/loans/").status_code == 200  # reads are not held back


def test_retry_after_is_given_even_just_after_a_rate_was_lowered(
    alice: Borrower, monkeypatch
) -> None:
    for _ in range(3):
        assert alice.client.get("/api/v1/loans/").status_code == 200
    monkeypatch.setattr(BorrowerRateThrottle, "THROTTLE_RATES", {"borrower": "1/min"})
    response = alice.client.get("/api/v1/loans/")
    assert response.status_code == 429
    assert 0 < int(response["Retry-After"]) <= 60
