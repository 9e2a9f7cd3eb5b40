"""The repayment record page (车贷还款记录) under concurrent load, beside a one-query view.

Usage (PostgreSQL and Redis, as in production; the database is created when missing):
    REDIS_URL=redis://127.0.0.1:6379/13 .venv/bin/python bench/record_page.py \\
        --database-url postgres://postgres@127.0.0.1:5432/anxin_bench_portal \\
        --workers 2 --concurrency 4 --seconds 40

What runs:
1. Set-up, not timed: migrate, then one borrower with 3 loans and 200 payments made
   through the services (``payment_create``, ``attempt_open``,
   ``attempt_record_outcome``), so every row is real: succeeded payments booked to
   installments, failed ones with a reason, fallbacks (Alipay failed, WeChat Pay
   paid) and one withholding still being confirmed per loan. Kept between runs (the
   borrower is found by phone); ``--fresh`` drops the database first.
2. gunicorn (``--workers`` sync workers) serves the product's WSGI application with
   ``DJANGO_DEBUG=false``, with ``bench/record_page_settings.py``: the product's
   settings plus ``/bench/one-query/``, a view that runs one indexed SELECT and
   answers with a small JSON document (the baseline; not in the product's URLs).
3. ``--concurrency`` client threads, each signed in through ``/login/`` with its own
   session (many borrowers' sessions, as in production), load the record page's
   first page (20 rows); the same number of anonymous threads load the one-query
   view. The two alternate in ``--rounds`` blocks (order swapped each round), so a
   change in machine load touches both alike. Each request is a new connection
   (gunicorn's sync workers close it after every answer).
4. Printed: requests/s, p50 and p99 of both, the ratio to the baseline's rate (target
   at least 50%) and the p99 multiple (target at most 3x), the same one-query view
   loaded with the signed-in sessions (for scale only), the record page's query
   count, and an in-process breakdown of one record page request (SQL, template,
   the rest) from Django's test client on the same database, served from the page
   cache (as in the load: nothing changes while it runs) and rendered afresh (as on
   the first visit after a change to the borrower's payments, attempts, loans or cards).
"""

from __future__ import annotations

import argparse
import http.client
import os
import re
import secrets
import socket
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any
from unittest import mock
from urllib.parse import urlencode, urlsplit

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

DEFAULT_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/anxin_bench_portal"
SETTINGS = "bench.record_page_settings"
PHONE = "13900000200"
PASSWORD = "bench-record-page-2026"
LOANS = 3
PAYMENTS = 200
PAGE_ROWS = 20
RATE_TARGET = 0.50
P99_TARGET = 3.0
# Production-like settings for the server and for this process (set-up, profiling).
SERVER_ENV = {
    "DJANGO_SETTINGS_MODULE": SETTINGS,
    "DJANGO_DEBUG": "false",
    "DJANGO_SECURE_SSL_REDIRECT": "false",  # plain HTTP on 127.0.0.1
    "ANXIN_MANIFEST_STATIC": "false",  # no collectstatic needed: only HTML is fetched
    "LOG_LEVEL": "WARNING",
}
warnings.filterwarnings("ignore", message="No directory at", category=UserWarning)


# --- Database and data ------------------------------------------------------------------


def _ensure_database(url: str, *, fresh: bool) -> None:
    """Create the benchmark's own database when it is missing (dropped first if fresh)."""
    import psycopg

    parts = urlsplit(url)
    name = parts.path.lstrip("/")
    admin = parts._replace(path="/postgres").geturl().replace("postgres://", "postgresql://", 1)
    with psycopg.connect(admin, autocommit=True) as conn:
        if fresh:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone()
        if not exists:
            conn.execute(f'CREATE DATABASE "{name}"')


def _setup_django(database_url: str) -> None:
    os.environ.update(SERVER_ENV)
    os.environ["DATABASE_URL"] = database_url
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0, interactive=False)


def _seed(now: datetime) -> tuple[Any, bool]:
    """The borrower with 3 loans and 200 payments; (borrower, True) if made now."""
    from repayments.models import User

    existing = User.objects.filter(phone=PHONE).first()
    if existing is not None:
        return existing, False
    from django.db import transaction

    with transaction.atomic():
        borrower = _make_borrower(now)
    from django.db import connection

    with connection.cursor() as cursor:
        # Fresh rows have no planner statistics yet; production's autovacuum has them.
        cursor.execute("ANALYZE")
    return borrower, True


def _make_borrower(now: datetime) -> Any:
    from dateutil.relativedelta import relativedelta
    from django.utils import timezone

    from repayments.domain.identity import id_check_char
    from repayments.models import BoundCard, Channel, LoanProduct
    from repayments.services.loans import loan_create, product_create
    from repayments.services.users import borrower_register

    product = LoanProduct.objects.filter(code="bench-record").first() or product_create(
        code="bench-record",
        name="压测 36期 等额本息",
        amortization_method="equal_installment",
        annual_rate_percent=Decimal("7.2000"),
        term_months=36,
        monthly_fee=Decimal("0.00"),
        early_settlement_fee_percent=Decimal("2.00"),
        now=now,
    )
    first17 = "11010519900101123"
    borrower = borrower_register(
        phone=PHONE,
        password=PASSWORD,
        full_name="压测 借款人",
        id_number=first17 + id_check_char(first17),
        now=now - relativedelta(months=40),
    )
    BoundCard.objects.create(
        borrower=borrower,
        channel=Channel.UNIONPAY,
        card_token="tok_bench_record_0001",
        card_masked="6222 **** **** 0018",
        bank_name="中国工商银行",
        priority=1,
        verified_until=(now + relativedelta(years=3)).date(),
    )
    budgets = [PAYMENTS // LOANS + (1 if n < PAYMENTS % LOANS else 0) for n in range(LOANS)]
    for n, budget in enumerate(budgets):
        start = timezone.localdate(now) - relativedelta(months=35, days=10 + n)
        loan = loan_create(
            borrower=borrower,
            product=product,
            principal="150000.00",
            start_date=start,
            repayment_day=min(start.day, 28),
            contract_number=f"AX-BENCH-{n + 1:06d}",
            vehicle=("比亚迪 汉 EV", "大众 帕萨特", "丰田 凯美瑞")[n],
            now=now - relativedelta(months=36),
        )
        _history(loan, budget, now)
    return borrower


def _history(loan: Any, budget: int, now: datetime) -> None:
    """``budget`` payments on ``loan``: 30 installments paid (every fourth through a
    fallback), failed payments spread between them, one withholding in flight."""
    from django.utils import timezone

    from repayments.domain.states import AttemptStatus
    from repayments.models import Channel, PaymentMethodType

    alipay = (Channel.ALIPAY, PaymentMethodType.ALIPAY_BALANCE)
    wechat = (Channel.WECHATPAY, PaymentMethodType.WECHATPAY_BALANCE)
    bank = (Channel.UNIONPAY, PaymentMethodType.BANK_DEBIT_CARD)
    ok, fail = AttemptStatus.SUCCEEDED, AttemptStatus.FAILED
    paid_installments = 30
    failures = budget - paid_installments - 1
    installments = list(loan.installments.order_by("number")[:paid_installments])
    for index, installment in enumerate(installments):
        due = timezone.make_aware(datetime.combine(installment.due_date, datetime.min.time()))
        extra = failures // paid_installments + (1 if index < failures % paid_installments else 0)
        for k in range(extra):
            _payment(loan, due - timedelta(days=3, hours=-k), (((bank, alipay)[k % 2], fail),))
        if index % 4 == 3:
            _payment(loan, due - timedelta(days=1), ((alipay, fail), (wechat, ok)))
        else:
            _payment(loan, due - timedelta(days=1), (((bank, alipay)[index % 2], ok),))
    _payment(loan, now - timedelta(minutes=3), ((bank, AttemptStatus.PENDING),))


def _payment(loan: Any, when: datetime, tries: tuple[tuple[tuple[Any, Any], Any], ...]) -> None:
    """One payment of the oldest unpaid installment; each try an attempt, in order."""
    from repayments.domain.states import AttemptStatus
    from repayments.models import EventKind
    from repayments.services.payments import (
        Outcome,
        attempt_open,
        attempt_record_outcome,
        payment_create,
    )

    owed = next(i for i in loan.installments.order_by("number") if not i.is_paid)
    payment = payment_create(loan=loan, amount=owed.total_due - owed.total_paid, now=when)
    for offset, ((channel, method), result) in enumerate(tries):
        moment = when + timedelta(minutes=5 * offset)
        attempt = attempt_open(
            payment_id=payment.pk, channel=channel, method_type=method, now=moment
        )
        succeeded = result == AttemptStatus.SUCCEEDED
        failed = result == AttemptStatus.FAILED
        outcome = Outcome(
            status=result,
            source=EventKind.CALLBACK if result != AttemptStatus.PENDING else EventKind.REQUEST,
            accepted_at=moment if succeeded else None,
            channel_trade_no=f"BENCH{attempt.pk:010d}" if succeeded else "",
            failure_code="51" if failed else "",
            failure_message="余额不足" if failed else "",
        )
        attempt_record_outcome(
            attempt_id=attempt.pk, outcome=outcome, now=moment + timedelta(minutes=1)
        )


# --- Query count and in-process breakdown -----------------------------------------------


@dataclass
class Breakdown:
    requests: int
    queries: int
    total_ms: float
    sql_ms: float
    template_ms: float
    statements: list[str] = field(default_factory=list)

    def line(self) -> str:
        rest = self.total_ms - self.sql_ms - self.template_ms
        return (
            f"in-process, one request at a time ({self.requests} requests): "
            f"{self.total_ms:.2f} ms per request = SQL {self.sql_ms:.2f} ms "
            f"({self.queries} queries) + template {self.template_ms:.2f} ms + "
            f"the rest (middleware, session, view code) {rest:.2f} ms"
        )


def _breakdown(borrower: Any | None, path: str, requests: int) -> Breakdown:
    """Where one request's time goes, measured through Django's test client
    (signed in as ``borrower``, or anonymous as the load's baseline requests are)."""
    from django.db import connection
    from django.template.backends.django import Template
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    client = Client(HTTP_HOST="127.0.0.1")
    if borrower is not None:
        client.force_login(borrower)
    client.get(path)  # warm: templates compiled, translations loaded
    with CaptureQueriesContext(connection) as captured:
        response = client.get(path)
    assert response.status_code == 200, response.status_code
    statements = [q["sql"] for q in captured.captured_queries]

    sql = [0.0]
    template = [0.0]
    depth = [0]  # partials and includes render through here too: time the outermost only
    original = Template.render

    def timed_sql(execute: Callable[..., Any], *args: Any) -> Any:
        started = time.perf_counter()
        try:
            return execute(*args)
        finally:
            sql[0] += time.perf_counter() - started

    def timed_render(self: Any, *args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        depth[0] += 1
        try:
            return original(self, *args, **kwargs)
        finally:
            depth[0] -= 1
            if depth[0] == 0:
                template[0] += time.perf_counter() - started

    with connection.execute_wrapper(timed_sql), mock.patch.object(Template, "render", timed_render):
        started = time.perf_counter()
        for _ in range(requests):
            client.get(path)
        total = time.perf_counter() - started
    ms = 1000 / requests
    return Breakdown(
        requests, len(statements), total * ms, sql[0] * ms, template[0] * ms, statements
    )


# --- gunicorn and the load ---------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def _gunicorn(database_url: str, workers: int, port: int) -> Iterator[Path]:
    log = Path(tempfile.mkstemp(prefix="bench-record-gunicorn-", suffix=".log")[1])
    env = {
        **os.environ,
        **SERVER_ENV,
        "DATABASE_URL": database_url,
        "PYTHONWARNINGS": "ignore::UserWarning",
    }
    command = [
        str(Path(sys.executable).with_name("gunicorn")),
        "portal.wsgi:application",
        f"--workers={workers}",
        f"--bind=127.0.0.1:{port}",
        f"--chdir={ROOT}",
        "--worker-class=sync",
        "--timeout=60",
        f"--error-logfile={log}",
    ]
    server = subprocess.Popen(command, env=env, cwd=ROOT)
    try:
        _wait_ready(port, server, log)
        yield log
    finally:
        server.terminate()
        server.wait(timeout=30)


def _wait_ready(port: int, server: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"gunicorn exited:\n{log.read_text()}")
        try:
            status, _, _ = _get(port, "/healthz")
            if status == 200:
                return
        except OSError:
            pass
        time.sleep(0.2)
    raise SystemExit(f"gunicorn did not answer /healthz in 60 s:\n{log.read_text()}")


def _get(port: int, path: str, cookie: str = "") -> tuple[int, bytes, list[str]]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        headers = {"Accept-Language": "zh-hans"}
        if cookie:
            headers["Cookie"] = cookie
        conn.request("GET", path, headers=headers)
        response = conn.getresponse()
        return response.status, response.read(), response.headers.get_all("Set-Cookie") or []
    finally:
        conn.close()


def _cookies(headers: list[str]) -> dict[str, str]:
    return dict(h.split(";", 1)[0].split("=", 1) for h in headers)


def _sign_in(port: int) -> str:
    """A session of the benchmark borrower through the real sign-in form."""
    status, body, set_cookies = _get(port, "/login/")
    assert status == 200, status
    csrf = _cookies(set_cookies)["csrftoken"]
    token = re.search(rb'name="csrfmiddlewaretoken" value="([^"]+)"', body)
    assert token is not None
    form = urlencode(
        {
            "csrfmiddlewaretoken": token.group(1).decode(),
            "username": PHONE,
            "password": PASSWORD,
            "next": "/record/",
        }
    )
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        conn.request(
            "POST",
            "/login/",
            body=form,
            headers={
                "Content-Type": "application/x-www-form-urlencoded",
                "Cookie": f"csrftoken={csrf}",
                "Referer": f"http://127.0.0.1:{port}/login/",
            },
        )
        response = conn.getresponse()
        response.read()
        cookies = _cookies(response.headers.get_all("Set-Cookie") or [])
    finally:
        conn.close()
    if response.status != 302 or "sessionid" not in cookies:
        raise SystemExit(f"sign-in failed: HTTP {response.status}")
    return f"sessionid={cookies['sessionid']}"


@dataclass
class Load:
    label: str
    wall: float = 0.0
    latencies: list[float] = field(default_factory=list)
    errors: Counter[int] = field(default_factory=Counter)

    @property
    def rate(self) -> float:
        return len(self.latencies) / self.wall if self.wall else 0.0

    def pct_ms(self, q: float) -> float:
        ordered = sorted(self.latencies)
        if not ordered:
            return 0.0
        index = min(len(ordered) - 1, max(0, round(q / 100 * len(ordered)) - 1))
        return ordered[index] * 1000

    def line(self) -> str:
        errors = sum(self.errors.values())
        return (
            f"{self.label:<34} {len(self.latencies):>6} requests in {self.wall:6.1f} s "
            f"{self.rate:7.1f} req/s  p50 {self.pct_ms(50):7.1f} ms  "
            f"p99 {self.pct_ms(99):7.1f} ms  max {self.pct_ms(100):7.1f} ms  "
            f"non-200: {errors}{' ' + dict(self.errors).__repr__() if errors else ''}"
        )


def _load(port: int, paths: list[str], cookies: list[str], seconds: float, into: Load) -> None:
    """``len(cookies)`` threads request ``paths`` in turn for ``seconds``; adds to ``into``."""
    lock = threading.Lock()
    started = time.perf_counter()
    stop = started + seconds

    def run(thread: int) -> None:
        latencies: list[float] = []
        errors: Counter[int] = Counter()
        n = thread
        while time.perf_counter() < stop:
            path = paths[n % len(paths)]
            n += len(cookies)
            before = time.perf_counter()
            status, _, _ = _get(port, path, cookies[thread])
            latencies.append(time.perf_counter() - before)
            if status != 200:
                errors[status] += 1
        with lock:
            into.latencies.extend(latencies)
            into.errors.update(errors)

    with ThreadPoolExecutor(len(cookies)) as pool:
        list(pool.map(run, range(len(cookies))))
    into.wall += time.perf_counter() - started


def _machine() -> str:
    from django.db import connection

    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE state = 'active' "
            "AND pid <> pg_backend_pid() AND backend_type = 'client backend'"
        )
        busy = cursor.fetchone()[0]
    return f"load average {load}; other active database sessions {busy}; {os.cpu_count()} CPUs"


# --- Main ----------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database-url", default=os.environ.get("BENCH_DATABASE_URL"))
    parser.add_argument("--workers", type=int, default=2, help="gunicorn sync workers")
    parser.add_argument("--concurrency", type=int, default=4, help="client threads per target")
    parser.add_argument("--seconds", type=float, default=40.0, help="measured time per target")
    parser.add_argument("--rounds", type=int, default=8, help="alternating blocks")
    parser.add_argument("--warmup", type=float, default=3.0, help="seconds per target")
    parser.add_argument("--profile-requests", type=int, default=50)
    parser.add_argument("--show-queries", action="store_true")
    parser.add_argument("--fresh", action="store_true", help="drop and re-seed the database")
    options = parser.parse_args()

    database_url = options.database_url or DEFAULT_DATABASE_URL
    if not database_url.startswith(("postgres://", "postgresql://")):
        raise SystemExit("this benchmark runs on PostgreSQL: pass --database-url postgres://...")
    os.environ["DJANGO_SECRET_KEY"] = secrets.token_urlsafe(64)
    _ensure_database(database_url, fresh=options.fresh)
    _setup_django(database_url)

    from django.utils import timezone

    from repayments.models import Loan, Payment

    started = time.perf_counter()
    borrower, made = _seed(timezone.now())
    payments = Payment.objects.filter(borrower=borrower)
    print(
        f"data: borrower {PHONE}, {Loan.objects.filter(borrower=borrower).count()} loans, "
        f"{payments.count()} payments ({payments.filter(status='succeeded').count()} succeeded, "
        f"{payments.filter(status='failed').count()} failed, "
        f"{payments.filter(status='processing').count()} being confirmed); "
        + (f"made through the services in {time.perf_counter() - started:.1f} s" if made else "")
        + ("" if made else "kept from an earlier run")
    )
    record = _breakdown(borrower, "/record/", options.profile_requests)
    # What a visit after a change costs: the whole page rendered again (unchanged rows
    # still come from the row cache). Not a target: the load above is steady state.
    from portal.views import record as record_views

    with mock.patch.object(record_views, "_is_cacheable", return_value=False):
        fresh = _breakdown(borrower, "/record/", options.profile_requests)
    baseline_paths = [f"/bench/one-query/?id={pk}" for pk in payments.values_list("pk", flat=True)]
    one = _breakdown(None, baseline_paths[0], options.profile_requests)
    # What signing in alone costs: the same view with a session (load, user, save).
    one_signed_in = _breakdown(borrower, baseline_paths[0], options.profile_requests)
    if options.show_queries:
        for n, sql in enumerate(record.statements, 1):
            print(f"  record query {n}: {sql[:160]}")

    port = _free_port()
    with _gunicorn(database_url, options.workers, port) as log:
        cookies = [_sign_in(port) for _ in range(options.concurrency)]
        status, body, _ = _get(port, "/record/", cookies[0])
        rows = body.count(b'class="payment ')
        if status != 200 or rows != PAGE_ROWS:
            raise SystemExit(f"record page answered {status} with {rows} rows, not {PAGE_ROWS}")
        anonymous = [""] * options.concurrency
        targets = [
            (Load("one-query view (baseline)"), baseline_paths, anonymous),
            (Load("record page, 20 of 200 rows"), ["/record/"], cookies),
            # Not a target: the same one-query view with a session, to show what signing
            # in (session read, user read, session save) costs on its own.
            (Load("one-query view, signed in"), baseline_paths, cookies),
        ]
        for _, paths, who in targets:  # warm-up, not counted
            _load(port, paths, who, options.warmup, Load("warm-up"))
        block = options.seconds / options.rounds
        for r in range(options.rounds):
            shift = r % len(targets)
            for into, paths, who in targets[shift:] + targets[:shift]:
                _load(port, paths, who, block, into)
        machine = _machine()
        server_log = [line for line in log.read_text().splitlines() if "ERROR" in line]

    baseline, page, signed_in = (target[0] for target in targets)
    ratio = page.rate / baseline.rate if baseline.rate else 0.0
    multiple = page.pct_ms(99) / baseline.pct_ms(99) if baseline.pct_ms(99) else float("inf")
    print(
        f"server: gunicorn {options.workers} sync workers, DJANGO_DEBUG=false, PostgreSQL, "
        f"cache and sessions in {'Redis' if os.environ.get('REDIS_URL') else 'process memory'}; "
        f"client: {options.concurrency} threads per target, a new connection per request, "
        f"{options.rounds} alternating rounds of {block:.1f} s per target"
    )
    print(f"record page: {record.queries} queries per request; one-query view: {one.queries}")
    print(baseline.line())
    print(page.line())
    print(signed_in.line())
    print(
        f"record page rate: {ratio:.0%} of the one-query view "
        f"(target >= {RATE_TARGET:.0%}: {'PASS' if ratio >= RATE_TARGET else 'MISS'})"
    )
    print(
        f"record page p99: {multiple:.2f}x the one-query view's "
        f"(target <= {P99_TARGET:.0f}x: {'PASS' if multiple <= P99_TARGET else 'MISS'})"
    )
    if signed_in.rate:
        print(
            f"for scale: the signed-in one-query view runs at {signed_in.rate / baseline.rate:.0%} "
            f"of the anonymous one; the record page at {page.rate / signed_in.rate:.0%} "
            "of the signed-in one"
        )
    print("record page " + record.line())
    print("record page rendered afresh (the first visit after a change) " + fresh.line())
    print("one-query view " + one.line())
    print("one-query view signed in " + one_signed_in.line())
    print(f"machine after the run: {machine}")
    if server_log:
        print(f"server errors ({len(server_log)}): {server_log[:3]}")


if __name__ == "__main__":
    main()
