"""Settlement reconciliation: a million-line Alipay statement against our books.

Usage (PostgreSQL, as in production; target: under 60 s for 1,000,000 lines):
    DJANGO_DEBUG=true DATABASE_URL=postgres://postgres@127.0.0.1:5432/anxin_bench \\
        python manage.py migrate
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/anxin_bench \\
        .venv/bin/python bench/reconcile_statement.py --lines 1000000

Set-up (not timed): the attempts the statement lists, confirmed the day before
the statement day's end, written in one INSERT ... SELECT generate_series on
PostgreSQL (bulk_create elsewhere), a few unconfirmed attempts on loans of
their own, and a statement file in Alipay's trade-bill CSV format with every
kind of difference mixed in. Timed: parsing the file with the adapter's own
parser, then ``reconcile_records``. The channel cannot be queried here, so
repairs book the statement line itself (the same path, minus one HTTP call).
As a baseline in the same run it times a bare SELECT of the channel's attempts
(the least any reconciliation must read) and prints the ratio, then re-imports
the same statement and checks that nothing changed.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from datetime import date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")
os.environ.setdefault("DJANGO_DEBUG", "true")

SHANGHAI = ZoneInfo("Asia/Shanghai")
DAY = date(2030, 1, 15)  # far from real data, so the day's confirmations are all ours
MIDNIGHT = datetime(DAY.year, DAY.month, DAY.day, tzinfo=SHANGHAI)
PREFIX = f"BR{DAY:%Y%m%d}"
FINGERPRINT = "recbench-"
CONTRACT = "RECBENCH-"


def _number(n: int) -> str:
    return f"{PREFIX}{n:012d}"


def _trade_no(n: int) -> str:
    return f"2030{n:012d}"


def _amount(n: int) -> Decimal:
    return Decimal(f"{1000 + n % 997}.{n % 100:02d}")


def _paid_at(n: int) -> str:
    seconds = n % 86400
    return f"{DAY} {seconds // 3600:02d}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


class Plan:
    """How many lines of each kind; attempt numbers are 1..confirmed, then repairs."""

    def __init__(self, lines: int, repairs: int) -> None:
        self.odd = max(1, lines // 20_000)  # per kind of difference
        self.repairs = repairs
        self.lines = lines
        # lines = matched + amount mismatches + repairs + unknown + repeated lines
        self.matched = lines - repairs - 3 * self.odd
        self.confirmed = self.matched + 2 * self.odd  # + amount mismatches + missing ones
        if self.matched < self.odd:
            raise SystemExit("--lines too small for the mix of differences")

    def expected(self) -> dict[tuple[str, str], int]:
        return {
            ("amount_mismatch", "open"): self.odd,
            ("duplicate_success", "open"): self.odd,
            ("missing_at_channel", "open"): self.odd,
            ("not_confirmed_here", "repaired"): self.repairs,
            ("unknown_order", "open"): self.odd,
        }


def _clean() -> None:
    """Remove an earlier run's rows, children first (every FK protects)."""
    from django.db import connection

    bench_payments = (
        "SELECT id FROM repayments_payment WHERE loan_id IN "
        f"(SELECT id FROM repayments_loan WHERE contract_number LIKE '{CONTRACT}%%')"
    )
    with connection.cursor() as cursor:
        cursor.execute(
            "DELETE FROM repayments_discrepancy WHERE channel = 'alipay' AND day = %s", [DAY]
        )
        cursor.execute(
            "DELETE FROM repayments_reconciliationrun WHERE channel = 'alipay' AND day = %s",
            [DAY],
        )
        for table in ("paymentevent", "allocation", "paymentattempt"):
            cursor.execute(f"DELETE FROM repayments_{table} WHERE payment_id IN ({bench_payments})")
        cursor.execute(f"DELETE FROM repayments_payment WHERE id IN ({bench_payments})")


def _loan(suffix: str) -> Any:
    from repayments.models import LoanProduct, User
    from repayments.services.loans import loan_create, product_create

    product = LoanProduct.objects.filter(code="recbench").first() or product_create(
        code="recbench",
        name="reconciliation bench",
        amortization_method="equal_installment",
        annual_rate_percent=Decimal("6.0000"),
        term_months=12,
        now=MIDNIGHT,
    )
    user = User.objects.create(phone=f"18{time.time_ns() % 10**9:09d}", full_name="bench")
    return loan_create(
        borrower=user,
        product=product,
        principal="1000000.00",
        start_date=DAY - timedelta(days=40),
        repayment_day=DAY.day,
        contract_number=f"{CONTRACT}{suffix}",
        vehicle="bench",
        now=MIDNIGHT,
    )


def _create_confirmed(plan: Plan) -> None:
    """Payments and attempts confirmed on DAY, created the day before."""
    from django.db import connection

    loan = _loan(f"{time.time_ns()}-bulk")
    created = MIDNIGHT - timedelta(hours=6)
    if connection.vendor == "postgresql":
        _insert_series(loan, plan.confirmed, created)
    else:
        _bulk_create(loan, plan.confirmed, created)


def _insert_series(loan: Any, count: int, created: datetime) -> None:
    from django.db import connection

    params = {
        "loan": loan.pk,
        "borrower": loan.borrower_id,
        "count": count,
        "midnight": MIDNIGHT,
        "created": created,
        "fp": FINGERPRINT,
        "prefix": PREFIX,
    }
    with connection.cursor() as cursor:
        cursor.execute(
            """
            INSERT INTO repayments_payment (public_id, loan_id, borrower_id, amount, purpose,
                initiated_by, status, request_fingerprint, value_at, succeeded_at,
                credit_applied, credit_added, failure_reason, created_at, updated_at)
            SELECT gen_random_uuid(), %(loan)s, %(borrower)s,
                (1000 + n %% 997) + (n %% 100) / 100.0, 'installment', 'borrower',
                'succeeded', %(fp)s || n, %(midnight)s + make_interval(secs => n %% 86400),
                %(midnight)s + make_interval(secs => n %% 86400), 0, 0, '',
                %(created)s, %(created)s
            FROM generate_series(1, %(count)s) AS n
            """,
            params,
        )
        cursor.execute(
            """
            INSERT INTO repayments_paymentattempt (payment_id, loan_id, channel, method_type,
                out_trade_no, channel_trade_no, amount, status, accepted_at, failure_code,
                failure_message, created_at, updated_at, needs_review, query_count)
            SELECT p.id, p.loan_id, 'alipay', 'alipay_balance',
                %(prefix)s || lpad(substr(p.request_fingerprint, 10), 12, '0'),
                '2030' || lpad(substr(p.request_fingerprint, 10), 12, '0'),
                p.amount, 'succeeded', p.value_at, '', '', p.created_at, p.created_at, false, 0
            FROM repayments_payment p WHERE p.loan_id = %(loan)s
            """,
            params,
        )
        cursor.execute("ANALYZE repayments_payment")
        cursor.execute("ANALYZE repayments_paymentattempt")


def _bulk_create(loan: Any, count: int, created: datetime) -> None:
    from repayments.models import Payment, PaymentAttempt

    for start in range(1, count + 1, 10_000):
        numbers = range(start, min(start + 10_000, count + 1))
        payments = Payment.objects.bulk_create(
            Payment(
                loan=loan,
                borrower_id=loan.borrower_id,
                amount=_amount(n),
                status="succeeded",
                request_fingerprint=f"{FINGERPRINT}{n}",
                value_at=MIDNIGHT + timedelta(seconds=n % 86400),
                succeeded_at=MIDNIGHT + timedelta(seconds=n % 86400),
                created_at=created,
                updated_at=created,
            )
            for n in numbers
        )
        PaymentAttempt.objects.bulk_create(
            PaymentAttempt(
                payment=p,
                loan=loan,
                channel="alipay",
                method_type="alipay_balance",
                out_trade_no=_number(n),
                channel_trade_no=_trade_no(n),
                amount=p.amount,
                status="succeeded",
                accepted_at=p.value_at,
                created_at=created,
                updated_at=created,
            )
            for n, p in zip(numbers, payments, strict=True)
        )


def _create_unconfirmed(plan: Plan) -> None:
    """Attempts whose success notify never came: one open attempt per loan, so a loan each."""
    from repayments.models import Payment, PaymentAttempt

    for k in range(plan.repairs):
        n = plan.confirmed + 1 + k
        loan = _loan(f"{time.time_ns()}-{k}")
        payment = Payment.objects.create(
            loan=loan,
            borrower_id=loan.borrower_id,
            amount=_amount(n),
            status="processing",
            created_at=MIDNIGHT,
            updated_at=MIDNIGHT,
        )
        PaymentAttempt.objects.create(
            payment=payment,
            loan=loan,
            channel="alipay",
            method_type="alipay_balance",
            out_trade_no=_number(n),
            amount=payment.amount,
            status="pending",
            created_at=MIDNIGHT,
            updated_at=MIDNIGHT,
        )


def _write_statement(plan: Plan, path: Path) -> None:
    """Alipay's trade bill as the sandbox serves it: '#' title, header, rows, '#' end."""
    with path.open("w", encoding="utf-8") as out:
        out.write("#支付宝业务明细查询\n支付宝交易号,商户订单号,业务类型,订单金额(元),完成时间\n")

        def row(n: int, amount: Decimal, number: str = "") -> None:
            out.write(f"{_trade_no(n)}\t,{number or _number(n)}\t,交易,{amount},{_paid_at(n)}\n")

        for n in range(1, plan.matched + 1):
            row(n, _amount(n))
        for n in range(plan.matched + 1, plan.matched + plan.odd + 1):
            row(n, _amount(n) + Decimal("0.01"))  # the channel booked one fen more
        # plan.matched + odd + 1 .. confirmed: confirmed here, absent from the file
        for n in range(plan.confirmed + 1, plan.confirmed + plan.repairs + 1):
            row(n, _amount(n))
        for k in range(plan.odd):
            row(10**11 + k, Decimal("88.00"), number=f"{PREFIX}X{k:011d}")  # not ours
        for n in range(1, plan.odd + 1):
            row(n, _amount(n))  # the same line twice
        out.write("#业务明细列表结束\n")


def _no_channel(name: str) -> Any:
    from repayments.channels.base import ChannelUnavailable

    raise ChannelUnavailable("bench", f"{name} is not reachable from the bench")


def _bare_select() -> tuple[float, int]:
    from django.db import connection

    started = time.perf_counter()
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT out_trade_no, amount, status FROM repayments_paymentattempt "
            "WHERE channel = 'alipay'"
        )
        rows = len(cursor.fetchall())
    return time.perf_counter() - started, rows


def _counts() -> dict[str, int]:
    from repayments.models import Allocation, Discrepancy, PaymentEvent

    return {
        "events": PaymentEvent.objects.count(),
        "allocations": Allocation.objects.count(),
        "discrepancies": Discrepancy.objects.count(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--lines", type=int, default=1_000_000)
    parser.add_argument("--repairs", type=int, default=20, help="unconfirmed attempts to repair")
    options = parser.parse_args()
    import django

    django.setup()
    from django.db.models import Count

    from repayments.channels.alipay import parse_settlement_file
    from repayments.models import Discrepancy
    from repayments.services.reconciliation import reconcile_records

    plan = Plan(options.lines, options.repairs)
    print(f"setting up {plan.confirmed + plan.repairs:,} attempts ...", flush=True)
    setup_started = time.perf_counter()
    _clean()
    _create_confirmed(plan)
    _create_unconfirmed(plan)
    statement = Path(tempfile.mkdtemp(prefix="reconcile-bench-")) / f"alipay-{DAY}.csv"
    _write_statement(plan, statement)
    print(f"set-up {time.perf_counter() - setup_started:.1f} s (not timed)", flush=True)

    def reconcile_file() -> tuple[float, float, Any]:
        started = time.perf_counter()
        records = parse_settlement_file(statement.read_bytes())
        parsed = time.perf_counter()
        run = reconcile_records(
            channel="alipay",
            day=DAY,
            records=records,
            now=MIDNIGHT + timedelta(days=1, hours=10),
            channels=_no_channel,
        )
        return parsed - started, time.perf_counter() - parsed, run

    load = os.getloadavg()[0]  # other work on this 2-core box skews the figures
    parse_s, reconcile_s, run = reconcile_file()
    select_s, selected = _bare_select()
    before = _counts()
    again_parse_s, again_s, again = reconcile_file()
    after = _counts()

    total = parse_s + reconcile_s
    rows = Discrepancy.objects.filter(channel="alipay", day=DAY)
    by_kind = {
        (kind, status): n
        for kind, status, n in rows.values_list("kind", "status")
        .annotate(n=Count("id"))
        .order_by("kind", "status")
    }
    from django.conf import settings

    print(f"load average before the timed part: {load:.2f} on {os.cpu_count()} CPUs")
    print(
        f"database: {settings.DATABASES['default']['ENGINE'].rsplit('.', 1)[-1]} "
        f"({os.environ.get('DATABASE_URL', 'embedded SQLite')})"
    )
    print(
        f"statement: {run.line_count:,} lines, {statement.stat().st_size / 1e6:.0f} MB "
        f"Alipay CSV; attempts on the channel: {selected:,}"
    )
    print(
        f"parse {parse_s:.1f} s + reconcile {reconcile_s:.1f} s = {total:.1f} s, "
        f"{run.line_count / total:,.0f} lines/s (target: 1,000,000 lines in < 60 s)"
    )
    print(
        f"run: matched {run.matched_count:,}, repaired {run.repaired_count}, "
        f"discrepancies {run.discrepancy_count}"
    )
    print("discrepancies by kind: " + ", ".join(f"{k} {s} {n}" for (k, s), n in by_kind.items()))
    print("as planted: " + ("yes" if by_kind == plan.expected() else f"NO, {plan.expected()}"))
    print(
        f"baseline: bare SELECT of the channel's {selected:,} attempts {select_s:.2f} s; "
        f"reconcile is {reconcile_s / select_s:.1f}x that, parse is "
        f"{parse_s / total:.0%} of the total"
    )
    same = after == before and [
        again.matched_count,
        again.repaired_count,
        again.discrepancy_count,
    ] == [run.matched_count, run.repaired_count, run.discrepancy_count]
    print(
        f"re-import of the same file: parse {again_parse_s:.1f} s + reconcile {again_s:.1f} s; "
        f"nothing changed: {'yes' if same else f'NO {before} -> {after}'}"
    )
    statement.unlink()
    statement.parent.rmdir()


if __name__ == "__main__":
    main()
