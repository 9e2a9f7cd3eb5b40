"""Payment initiation through the REST API: POST /api/v1/payments/ (issue 3).

Usage (PostgreSQL and Redis, as in production; use a database of its own):
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/anxin_apibench \\
    REDIS_URL=redis://127.0.0.1:6379/13 \\
    .venv/bin/python bench/api_initiation.py --payments 1000

Set-up, not timed: N borrowers, each with one active loan and an API token
(bulk). Timed, in one process through ``django.test.Client`` (the whole
middleware and DRF stack, token authentication, throttles on the configured
cache, no network), in alternating blocks so a change in machine load touches
each loop alike:

- baseline: ``GET /api/v1/loans/{id}/`` for the same borrowers, an authenticated
  read through the same stack;
- initiation: ``POST /api/v1/payments/`` with a fresh ``Idempotency-Key``,
  ``{loan, amount, method: alipay_balance}``: validation, the method check,
  ``payment_create``, ``payment_start`` (attempt opened, the Alipay order signed
  with RSA2 -- wap.pay needs no call to Alipay until the borrower opens the page)
  and the answer with the checkout URL; 201 expected;
- replay: the same request again; 200 with the same payment expected.

Each borrower pays once, so the per-borrower ``payments`` throttle never fires.
Afterwards every borrower must have exactly one payment with one attempt.
``settings.DEBUG`` is off while timing, as in production.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
import uuid
import warnings
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")
os.environ.setdefault("DJANGO_DEBUG", "true")
warnings.filterwarnings("ignore", message="No directory at", category=UserWarning)

AMOUNT = "1005.00"


@dataclass
class Timing:
    label: str
    latencies: list[float] = field(default_factory=list)
    statuses: Counter[int] = field(default_factory=Counter)
    cpu: float = 0.0

    @property
    def wall(self) -> float:
        return sum(self.latencies)

    @property
    def rate(self) -> float:
        return len(self.latencies) / self.wall if self.wall else 0.0

    def pct_ms(self, q: float) -> float:
        ordered = sorted(self.latencies)
        if not ordered:
            return 0.0
        return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered)) - 1))] * 1000

    def line(self) -> str:
        mean = statistics.fmean(self.latencies) * 1000 if self.latencies else 0.0
        cpu = self.cpu / max(len(self.latencies), 1) * 1000
        return (
            f"{self.label:<44} {len(self.latencies):>5} in {self.wall:6.2f} s "
            f"{self.rate:7.1f}/s  mean {mean:6.2f} p50 {self.pct_ms(50):6.2f} "
            f"p99 {self.pct_ms(99):6.2f} ms  python CPU/call {cpu:5.2f} ms  "
            f"statuses {dict(self.statuses)}"
        )


@dataclass(frozen=True)
class Borrower:
    user_id: int
    loan_id: int
    token: str


def _create_borrowers(count: int, tag: str) -> list[Borrower]:
    from django.db import transaction
    from django.utils import timezone
    from rest_framework.authtoken.models import Token

    from repayments.models import Installment, Loan, LoanProduct, User
    from repayments.services.loans import product_create

    today, now = timezone.localdate(), timezone.now()
    product = LoanProduct.objects.filter(code="apibench").first() or product_create(
        code="apibench",
        name="api bench",
        amortization_method="equal_installment",
        annual_rate_percent=Decimal("6.0000"),
        term_months=12,
        now=now,
    )
    with transaction.atomic():
        users = User.objects.bulk_create(
            [
                # A borrower is a user with a mobile number (staff get 403 from the API).
                User(username=f"api{tag}x{n}", phone=f"16{tag[-3:]}{n:06d}", full_name="bench")
                for n in range(count)
            ],
            batch_size=5000,
        )
        loans = Loan.objects.bulk_create(
            [
                Loan(
                    contract_number=f"API-{tag}-{n:07d}",
                    borrower=user,
                    product=product,
                    vehicle="bench",
                    principal=Decimal("1000.00"),
                    annual_rate_percent=product.annual_rate_percent,
                    term_months=1,
                    amortization_method=product.amortization_method,
                    start_date=today - timedelta(days=30),
                    repayment_day=min(today.day, 28),
                )
                for n, user in enumerate(users)
            ],
            batch_size=5000,
        )
        Installment.objects.bulk_create(
            [
                Installment(
                    loan=loan,
                    number=1,
                    due_date=today,
                    principal_due=Decimal("1000.00"),
                    interest_due=Decimal("5.00"),
                )
                for loan in loans
            ],
            batch_size=5000,
        )
        tokens = Token.objects.bulk_create(
            [Token(user=user, key=Token.generate_key()) for user in users], batch_size=5000
        )
    return [
        Borrower(user.pk, loan.pk, token.key)
        for user, loan, token in zip(users, loans, tokens, strict=True)
    ]


Call = Callable[[Borrower], int]


def _calls() -> tuple[Call, Call, Call]:
    from django.test import Client

    client = Client(HTTP_HOST="127.0.0.1")  # DEBUG is off: "testserver" would be refused
    keys: dict[int, str] = {}

    def read_loan(b: Borrower) -> int:
        response = client.get(
            f"/api/v1/loans/{b.loan_id}/", headers={"Authorization": f"Token {b.token}"}
        )
        return response.status_code

    def post(b: Borrower, key: str) -> int:
        response = client.post(
            "/api/v1/payments/",
            data={"loan": b.loan_id, "amount": AMOUNT, "method": "alipay_balance"},
            content_type="application/json",
            headers={"Authorization": f"Token {b.token}", "Idempotency-Key": key},
        )
        return response.status_code

    def initiate(b: Borrower) -> int:
        keys[b.user_id] = f"bench-{uuid.uuid4().hex}"
        return post(b, keys[b.user_id])

    def replay(b: Borrower) -> int:
        return post(b, keys[b.user_id])

    return read_loan, initiate, replay


def _timed(timing: Timing, call: Call, items: Sequence[Borrower]) -> None:
    clock = time.perf_counter
    cpu_before = time.process_time()
    for item in items:
        before = clock()
        timing.statuses[call(item)] += 1
        timing.latencies.append(clock() - before)
    timing.cpu += time.process_time() - cpu_before


def _queries_per_call(call: Call, item: Borrower) -> int:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as queries:
        call(item)
    return len(queries.captured_queries)


def _check(borrowers: Sequence[Borrower]) -> tuple[int, int, int]:
    """(borrowers with exactly one payment, payments, attempts) over the timed borrowers."""
    from django.db.models import Count

    from repayments.models import Payment, PaymentAttempt

    users = [b.user_id for b in borrowers]
    per_borrower = (
        Payment.objects.filter(borrower_id__in=users)
        .values("borrower_id")
        .annotate(n=Count("id"))
        .filter(n=1)
        .count()
    )
    payments = Payment.objects.filter(borrower_id__in=users).count()
    attempts = PaymentAttempt.objects.filter(payment__borrower_id__in=users).count()
    return per_borrower, payments, attempts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--payments", type=int, default=1000)
    parser.add_argument("--block", type=int, default=50, help="loops alternate in blocks")
    options = parser.parse_args()

    import django

    django.setup()
    from django.conf import settings
    from django.core.management import call_command
    from django.db import connection

    call_command("migrate", verbosity=0)
    call_command("generate_channel_keys", verbosity=0)
    tag = f"{int(time.time()) % 10**8:08d}"
    database = settings.DATABASES["default"]
    where = f"{connection.vendor} {database.get('NAME')}"
    cache = settings.CACHES["default"]["BACKEND"].rsplit(".", 1)[-1]
    print(f"database: {where}; cache: {cache}; cpus: {os.cpu_count()}; run tag {tag}")
    print(f"setting up {options.payments} borrowers with a loan and a token ...", flush=True)
    warm = _create_borrowers(5, f"{tag}w")
    borrowers = _create_borrowers(options.payments, tag)

    read_loan, initiate, replay = _calls()
    for b in warm[:-1]:  # first-call costs: imports, URL resolver, key loading
        read_loan(b), initiate(b), replay(b)
    sample = warm[-1]
    sql = {
        "read": _queries_per_call(read_loan, sample),
        "initiate": _queries_per_call(initiate, sample),
        "replay": _queries_per_call(replay, sample),
    }
    settings.DEBUG = False
    baseline = Timing("baseline: GET /api/v1/loans/{id}/")
    created = Timing("POST /api/v1/payments/ (new key)")
    replays = Timing("POST /api/v1/payments/ (replay, same key)")
    load_before = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    block = options.block
    for start in range(0, len(borrowers), block):
        chunk = borrowers[start : start + block]
        loops = [(baseline, read_loan), (created, initiate), (replays, replay)]
        if (start // block) % 2:  # alternate which read comes first
            loops[0], loops[1] = loops[1], loops[0]
            _timed(loops[0][0], loops[0][1], chunk)
            _timed(loops[1][0], loops[1][1], chunk)
            _timed(replays, replay, chunk)
        else:
            for timing, call in loops:
                _timed(timing, call, chunk)
    load_after = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    exactly_one, payments, attempts = _check(borrowers)

    rule = "=" * 100
    print(f"\n{rule}\nSUMMARY  payment initiation through the API (issue 3)\n{rule}")
    print(f"{where}; load average at start {load_before}; at end {load_after}")
    for timing in (baseline, created, replays):
        print("    " + timing.line())
    print(
        f"    SQL per request: read {sql['read']}, initiate {sql['initiate']}, "
        f"replay {sql['replay']}"
    )
    for timing in (created, replays):
        ratio = timing.rate / baseline.rate if baseline.rate else 0.0
        print(f"    {timing.label}: {ratio:.0%} of the baseline rate")
    ok = exactly_one == len(borrowers) and payments == len(borrowers) and attempts == payments
    ok = ok and created.statuses == Counter({201: len(borrowers)})
    ok = ok and replays.statuses == Counter({200: len(borrowers)})
    print(
        f"    books: borrowers {len(borrowers)}, with exactly one payment {exactly_one}, "
        f"payments {payments}, attempts {attempts}: " + ("PASS" if ok else "FAIL")
    )
    print(rule)
    if not ok:
        sys.exit(1)


if __name__ == "__main__":
    main()
