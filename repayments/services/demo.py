"""Demo data: three borrowers with a year of history, built only through services.

Every payment below goes through the same state machine, allocation and
audit log as a real one, so the demo also exercises the rules. Idempotent:
a borrower (or staff member) who already exists is left as they are.
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from decimal import Decimal

from dateutil.relativedelta import relativedelta
from django.db import transaction
from django.utils import timezone

from repayments.domain.identity import id_check_char
from repayments.domain.states import AttemptStatus
from repayments.models import (
    BoundCard,
    Channel,
    EventKind,
    Installment,
    Loan,
    LoanProduct,
    PaymentMethodType,
    Role,
    User,
)
from repayments.services.loans import loan_create, product_create
from repayments.services.payments import (
    Outcome,
    attempt_open,
    attempt_record_outcome,
    payment_create,
)
from repayments.services.settlement import settlement_quote_create
from repayments.services.users import borrower_register, roles_ensure, staff_create

DEMO_PASSWORD = "demo12345"
DEMO_PHONES = ("13800138000", "13800138001", "13800138002")


def demo_seed(*, now: datetime) -> list[str]:
    """Create whatever part of the demo data is missing; return what was created."""
    roles_ensure()
    created: list[str] = []
    for username, role, name in (
        ("agent", Role.SUPPORT_AGENT, "客服 小周"),
        ("supervisor", Role.SUPPORT_SUPERVISOR, "客服主管 老陈"),
        ("admin", Role.ADMIN, "管理员"),
    ):
        if not User.objects.filter(username=username).exists():
            staff_create(
                username=username, password=DEMO_PASSWORD, role=role, full_name=name, now=now
            )
            created.append(username)
    products = _products(now)
    builders = (_borrower_on_schedule, _borrower_overdue, _borrower_settled_early)
    for phone, build in zip(DEMO_PHONES, builders, strict=True):
        if not User.objects.filter(phone=phone).exists():
            with transaction.atomic():
                build(phone, products, now)
            created.append(phone)
    return created


def _products(now: datetime) -> dict[str, LoanProduct]:
    specs = {
        "car-36-ei": {
            "name": "新车贷 36期 等额本息",
            "amortization_method": "equal_installment",
            "annual_rate_percent": Decimal("7.2000"),
            "term_months": 36,
            "monthly_fee": Decimal("0.00"),
            "early_settlement_fee_percent": Decimal("2.00"),
        },
        "car-24-ep": {
            "name": "二手车贷 24期 等额本金",
            "amortization_method": "equal_principal",
            "annual_rate_percent": Decimal("8.4000"),
            "term_months": 24,
            "monthly_fee": Decimal("30.00"),
            "early_settlement_fee_percent": Decimal("1.00"),
        },
    }
    products = {}
    for code, fields in specs.items():
        existing = LoanProduct.objects.filter(code=code).first()
        products[code] = existing or product_create(code=code, now=now, **fields)  # type: ignore[arg-type]
    return products


def _register(phone: str, name: str, id_first17: str, now: datetime) -> User:
    id_number = id_first17 + id_check_char(id_first17)
    joined = now - relativedelta(months=14)
    return borrower_register(
        phone=phone, password=DEMO_PASSWORD, full_name=name, id_number=id_number, now=joined
    )


def _card(user: User, token: str, masked: str, bank: str, priority: int) -> None:
    BoundCard.objects.create(
        borrower=user,
        channel=Channel.UNIONPAY,
        card_token=token,
        card_masked=masked,
        bank_name=bank,
        priority=priority,
        verified_until=date(2028, 12, 31),
    )


def _at(day: date, hour: int = 10) -> datetime:
    return timezone.make_aware(datetime.combine(day, time(hour, 0)))


def _pay(
    loan: Loan,
    when: datetime,
    tries: tuple[tuple[Channel, PaymentMethodType, AttemptStatus], ...],
) -> None:
    """Pay the next installment in full: each try in order, the last one's result wins."""
    owed = next(i for i in loan.installments.order_by("number") if not i.is_paid)
    payment = payment_create(loan=loan, amount=owed.total_due - owed.total_paid, now=when)
    for offset, (channel, method, result) in enumerate(tries):
        moment = when + timedelta(minutes=5 * offset)
        attempt = attempt_open(
            payment_id=payment.pk, channel=channel, method_type=method, now=moment
        )
        outcome = Outcome(
            status=result,
            source=EventKind.CALLBACK,
            accepted_at=moment if result == AttemptStatus.SUCCEEDED else None,
            channel_trade_no=f"DEMO{attempt.pk:010d}",
            failure_code="" if result == AttemptStatus.SUCCEEDED else "ACQ.SYSTEM_ERROR",
            failure_message="" if result == AttemptStatus.SUCCEEDED else "渠道系统繁忙",
        )
        attempt_record_outcome(
            attempt_id=attempt.pk, outcome=outcome, now=moment + timedelta(minutes=1)
        )


ALIPAY = (Channel.ALIPAY, PaymentMethodType.ALIPAY_BALANCE)
WECHAT = (Channel.WECHATPAY, PaymentMethodType.WECHATPAY_BALANCE)
BANK = (Channel.UNIONPAY, PaymentMethodType.BANK_DEBIT_CARD)
OK, FAIL = AttemptStatus.SUCCEEDED, AttemptStatus.FAILED


def _borrower_on_schedule(phone: str, products: dict[str, LoanProduct], now: datetime) -> None:
    """A year of on-time payments, one late success, one fallback, one still processing."""
    user = _register(phone, "张伟", "11010519880315123", now)
    _card(user, "tok_demo_0001", "6222 **** **** 0018", "中国工商银行", 1)
    _card(user, "tok_demo_0002", "6217 **** **** 3326", "中国建设银行", 2)
    start = timezone.localdate(now) - relativedelta(months=12, days=20)
    loan = loan_create(
        borrower=user,
        product=products["car-36-ei"],
        principal="120000.00",
        start_date=start,
        repayment_day=min(start.day, 28),
        contract_number="AX-2025-000101",
        vehicle="比亚迪 秦PLUS DM-i",
        plate_number="京A·D1234",
        now=_at(start),
    )
    for number in range(1, 13):
        due = loan.installments.get(number=number).due_date
        when = _at(due - timedelta(days=1))
        if number == 5:
            _late_success(loan, when)
        elif number == 8:
            _pay(loan, when, ((*ALIPAY, FAIL), (*WECHAT, OK)))
        else:
            _pay(loan, when, ((*(BANK if number % 3 else ALIPAY), OK),))
    current: Installment = loan.installments.get(number=13)
    payment = payment_create(loan=loan, amount=current.total_due, now=now - timedelta(minutes=3))
    attempt = attempt_open(
        payment_id=payment.pk, channel=BANK[0], method_type=BANK[1], now=now - timedelta(minutes=3)
    )
    pending = Outcome(status=AttemptStatus.PENDING, source=EventKind.REQUEST)
    attempt_record_outcome(attempt_id=attempt.pk, outcome=pending, now=now - timedelta(minutes=2))


def _late_success(loan: Loan, when: datetime) -> None:
    """The channel first reports failure, then confirms the money arrived after all."""
    owed = next(i for i in loan.installments.order_by("number") if not i.is_paid)
    payment = payment_create(loan=loan, amount=owed.total_due, now=when)
    attempt = attempt_open(
        payment_id=payment.pk, channel=ALIPAY[0], method_type=ALIPAY[1], now=when
    )
    failed = Outcome(
        status=FAIL,
        source=EventKind.POLL,
        failure_code="TRADE_NOT_EXIST",
        failure_message="查询超时",
    )
    attempt_record_outcome(attempt_id=attempt.pk, outcome=failed, now=when + timedelta(minutes=30))
    late = Outcome(
        status=OK, source=EventKind.CALLBACK, accepted_at=when, channel_trade_no="DEMO-LATE-0005"
    )
    attempt_record_outcome(attempt_id=attempt.pk, outcome=late, now=when + timedelta(hours=2))


def _borrower_overdue(phone: str, products: dict[str, LoanProduct], now: datetime) -> None:
    """Five installments paid, then two missed: the loan is overdue with penalties."""
    user = _register(phone, "李娜", "31010419920608234", now)
    _card(user, "tok_demo_0101", "6228 **** **** 7710", "中国农业银行", 1)
    start = timezone.localdate(now) - relativedelta(months=7, days=12)
    loan = loan_create(
        borrower=user,
        product=products["car-24-ep"],
        principal="68000.00",
        start_date=start,
        repayment_day=min(start.day, 28),
        contract_number="AX-2025-000202",
        vehicle="大众 朗逸 2019款 (二手)",
        plate_number="沪B·K5678",
        now=_at(start),
    )
    for number in range(1, 6):
        due = loan.installments.get(number=number).due_date
        _pay(loan, _at(due), ((*(WECHAT if number % 2 else ALIPAY), OK),))


def _borrower_settled_early(phone: str, products: dict[str, LoanProduct], now: datetime) -> None:
    """Six installments, then the whole loan settled early with a quote."""
    user = _register(phone, "王芳", "44030619950120345", now)
    start = timezone.localdate(now) - relativedelta(months=10, days=5)
    loan = loan_create(
        borrower=user,
        product=products["car-36-ei"],
        principal="90000.00",
        start_date=start,
        repayment_day=min(start.day, 28),
        contract_number="AX-2025-000303",
        vehicle="丰田 卡罗拉 双擎",
        plate_number="粤B·S9012",
        now=_at(start),
    )
    for number in range(1, 7):
        due = loan.installments.get(number=number).due_date
        _pay(loan, _at(due - timedelta(days=2)), ((*ALIPAY, OK),))
    settle_on = loan.installments.get(number=7).due_date - timedelta(days=10)
    quote = settlement_quote_create(loan=loan, settlement_date=settle_on, now=_at(settle_on, 9))
    payment = payment_create(loan=loan, amount=quote.total, quote=quote, now=_at(settle_on, 9))
    attempt = attempt_open(
        payment_id=payment.pk, channel=WECHAT[0], method_type=WECHAT[1], now=_at(settle_on, 9)
    )
    paid = Outcome(status=OK, source=EventKind.CALLBACK, accepted_at=_at(settle_on, 9))
    attempt_record_outcome(attempt_id=attempt.pk, outcome=paid, now=_at(settle_on, 9))
