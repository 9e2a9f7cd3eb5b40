"""Callback inbox: acknowledgement latency and callback-to-allocated throughput (issue 4).

Usage (PostgreSQL, as in production; use a database of its own):
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/anxin_cbbench \\
    REDIS_URL=redis://127.0.0.1:6379/13 \\
    .venv/bin/python bench/callback_throughput.py --callbacks 2000 --e2e 2000 --workers 2 \\
        --batch 50

Part 1, acknowledgement (one process, processing not run). Real notifications
signed by the simulated channels (``SimulatedChannel.notification``: UnionPay
form + RSA, Alipay RSA2, WeChat Pay AES-GCM + RSA) go through
``callback_receive``, which commits the raw row and verifies it, and then through
the ``POST /callbacks/<channel>/`` view with ``django.test.Client`` (the
processing task's ``delay`` patched to a no-op), so HTTP and middleware cost
shows. Baseline in the same run: a bare single-row INSERT of the same bodies
and headers into a scratch table, each in its own autocommit transaction,
through the same Django connection. The three loops alternate in blocks
(``--block``), so a change in machine load while they run touches each alike.

Part 2, callback to allocated (``--workers`` spawned processes, each with its
own connection and its own share of the loans). Set-up, not timed: one loan
with one installment per callback (bulk), then a payment and a pending attempt
per loan opened by the services (``payment_create``, ``attempt_open``, the
channel's synchronous "accepted"). Timed: every worker receives its signed
success callbacks ``--batch`` at a time (stored and verified, as the endpoint
does) and after each block drains the inbox with ``callbacks_process_batch``,
as a Celery ``process_callback`` task does once a backlog builds: rows claimed
with ``SKIP LOCKED``, one transaction per batch, so either worker may process
any row. ``--batch 1`` processes each callback on its own with
``callback_process`` right after receiving it (the path at low load). Part 1's
ack-only rows (orders never placed) are marked unmatched first, so the drains
see only part 2's callbacks. Afterwards every payment must be succeeded and
allocated exactly once. Baseline in the same run: ack only (receive, no
processing) through the same worker harness.

No channel sandbox server is started: notifications are signed in-process by
the sandbox's channel classes, and processing never calls a channel unless a
callback contradicts our books (it does not here). ``settings.DEBUG`` is turned
off after set-up so queries are not logged, as in production. Besides wall
times, each loop reports the CPU it used in Python and, when PostgreSQL runs on
this host, in its server backend (from /proc), and the summary prints the load
average: on a shared machine the CPU figures are the steadier ones.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import statistics
import sys
import time
import warnings
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any
from unittest import mock

if TYPE_CHECKING:
    from multiprocessing.queues import Queue
    from multiprocessing.synchronize import Barrier

    from repayments.channels.sandbox.app import Sandbox

# Workers start fresh: a forked child would share the parent's database socket.
SPAWN = multiprocessing.get_context("spawn")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")
os.environ.setdefault("DJANGO_DEBUG", "true")
# WhiteNoise warns on every middleware set-up when collectstatic has not run.
warnings.filterwarnings("ignore", message="No directory at", category=UserWarning)

ALL_CHANNELS = ("unionpay", "alipay", "wechatpay")
AMOUNT = Decimal("1005.00")  # one installment: 1000.00 principal + 5.00 interest
ACK_RATIO_TARGET = 0.40
ACK_P99_TARGET_MS = 50.0
E2E_RATE_TARGET = 500.0
SCRATCH = "cbbench_scratch"

# A notification as the channel would POST it: channel, raw body, headers.
Notification = tuple[str, bytes, dict[str, str]]


def _setup_django() -> None:
    import django

    django.setup()
    from django.conf import settings

    # Production runs without DEBUG; with it every query is also kept in memory.
    settings.DEBUG = False


# --- Measurements -----------------------------------------------------------------


@dataclass
class Timing:
    """One measured loop: wall time, per-call latencies (s), CPU of this process and,
    when the server is local, of its PostgreSQL backend."""

    label: str
    wall: float
    latencies: list[float]
    outcomes: Counter[str] = field(default_factory=Counter)
    cpu: float = 0.0
    db_cpu: float | None = None
    channels: list[str] = field(default_factory=list)  # one per latency

    @property
    def count(self) -> int:
        return len(self.latencies)

    @property
    def rate(self) -> float:
        return self.count / self.wall if self.wall else 0.0

    def pct_ms(self, q: float) -> float:
        return _percentile_ms(self.latencies, q)

    def mean_ms(self) -> float:
        return statistics.fmean(self.latencies) * 1000 if self.latencies else 0.0

    def line(self) -> str:
        return (
            f"{self.label:<36} {self.count:>5} in {self.wall:6.2f} s {self.rate:7.1f}/s  "
            f"mean {self.mean_ms():6.2f} p50 {self.pct_ms(50):6.2f} p99 {self.pct_ms(99):6.2f} "
            f"max {self.pct_ms(100):7.2f} ms"
        )

    def cpu_line(self) -> str:
        n = max(self.count, 1)
        db = "n/a" if self.db_cpu is None else f"{self.db_cpu / n * 1000:.2f}"
        return (
            f"{self.label:<36} CPU per call: python {self.cpu / n * 1000:.2f} ms, "
            f"postgres backend {db} ms"
        )

    def by_channel(self) -> dict[str, list[float]]:
        split: dict[str, list[float]] = {}
        for channel, latency in zip(self.channels, self.latencies, strict=True):
            split.setdefault(channel, []).append(latency)
        return split

    @classmethod
    def merged(cls, label: str, parts: Sequence[Timing], wall: float) -> Timing:
        db = [p.db_cpu for p in parts]
        return cls(
            label,
            wall,
            [x for p in parts for x in p.latencies],
            sum((p.outcomes for p in parts), Counter()),
            sum(p.cpu for p in parts),
            None if any(d is None for d in db) else sum(d or 0.0 for d in db),
            [c for p in parts for c in p.channels],
        )


def _percentile_ms(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return 0.0
    index = min(len(ordered) - 1, max(0, round(q / 100 * len(ordered)) - 1))
    return ordered[index] * 1000


def _backend_cpu() -> float | None:
    """CPU seconds used so far by this connection's PostgreSQL backend, if it runs here."""
    from django.db import connection

    if connection.vendor != "postgresql":
        return None
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        pid = cursor.fetchone()[0]
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None  # server on another host (or /proc not readable)
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks  # utime + stime


def _timed(label: str, items: Sequence[Notification], call: Callable[[Any], str]) -> Timing:
    latencies: list[float] = []
    outcomes: Counter[str] = Counter()
    clock = time.perf_counter
    db_before = _backend_cpu()
    cpu_before = time.process_time()
    started = clock()
    for item in items:
        before = clock()
        outcomes[call(item)] += 1
        latencies.append(clock() - before)
    wall = clock() - started
    cpu = time.process_time() - cpu_before
    db_after = _backend_cpu()
    db = None if db_before is None or db_after is None else db_after - db_before
    return Timing(label, wall, latencies, outcomes, cpu, db, [i[0] for i in items])


def _interleaved(
    loops: Sequence[tuple[str, Sequence[Notification], Callable[[Any], str]]], block: int
) -> list[Timing]:
    """Run the loops in alternating blocks (order rotated each round), so a change in
    machine load while they run touches each loop alike; each total sums its blocks."""
    parts: list[list[Timing]] = [[] for _ in loops]
    rounds = max((len(items) + block - 1) // block for _, items, _ in loops)
    for r in range(rounds):
        order = list(range(len(loops)))
        order = order[r % len(order) :] + order[: r % len(order)]
        for index in order:
            label, items, call = loops[index]
            chunk = items[r * block : (r + 1) * block]
            if chunk:
                parts[index].append(_timed(label, chunk, call))
    return [
        Timing.merged(label, timings, sum(t.wall for t in timings))
        for (label, _, _), timings in zip(loops, parts, strict=True)
    ]


def _machine() -> str:
    """Load and other busy database sessions: a bench on a shared box says so."""
    from django.db import connection

    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    busy = "?"
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE state = 'active' "
                "AND pid <> pg_backend_pid() AND backend_type = 'client backend'"
            )
            busy = str(cursor.fetchone()[0])
    return f"load average {load}; other active database sessions {busy}"


# --- Signed notifications -----------------------------------------------------------


def _sandbox() -> Sandbox:
    from repayments.channels.sandbox.build import build_sandbox

    return build_sandbox("http://127.0.0.1:9")


def _notification(
    sandbox: Sandbox,
    channel: str,
    out_trade_no: str,
    amount: Decimal,
    placed_at: datetime,
    paid_at: datetime,
) -> Notification:
    """A signed success notification for one order, exactly as the sandbox would POST it."""
    from repayments.channels.sandbox.ledger import SandboxOrder
    from repayments.channels.unionpay import txn_time

    prefix = {"unionpay": "UP", "alipay": "2026", "wechatpay": "4200"}[channel]
    order = SandboxOrder(
        channel=channel,
        out_trade_no=out_trade_no,
        amount=amount,
        notify_url=f"http://127.0.0.1:9/callbacks/{channel}/",
        trade_no=sandbox.ledger.next_trade_no(prefix),
        status="succeeded",
        paid_at=paid_at,
        extra={"txnTime": txn_time(placed_at)},
    )
    body, headers = sandbox.channels[channel].notification(order)
    return channel, body, headers


def _synthetic_notifications(count: int, channels: Sequence[str], tag: str) -> list[Notification]:
    """Signed notifications for orders we never placed: fine for ack-only runs."""
    from django.utils import timezone

    sandbox, now = _sandbox(), timezone.now()
    return [
        _notification(sandbox, channels[n % len(channels)], f"AXCB{tag}{n:07d}", AMOUNT, now, now)
        for n in range(count)
    ]


def _warm_adapters(channels: Sequence[str]) -> None:
    """Load each adapter's keys now (cached per process), not in the first timed call."""
    from repayments.services.routing import default_channel

    for channel in channels:
        default_channel(channel)


# --- The paths under test -------------------------------------------------------------


def _receive(item: Notification) -> tuple[int, str]:
    from django.utils import timezone

    from repayments.services.callbacks import callback_receive

    channel, body, headers = item
    record, verdict = callback_receive(
        channel=channel, body=body, headers=headers, remote_addr="127.0.0.1", now=timezone.now()
    )
    return record.pk, str(verdict.status)


def _ack(item: Notification) -> str:
    return _receive(item)[1]


def _receive_and_process(item: Notification) -> str:
    from django.utils import timezone

    from repayments.models import CallbackStatus
    from repayments.services.callbacks import callback_process

    record_id, status = _receive(item)
    if status != CallbackStatus.RECEIVED:
        return f"ack:{status}"
    return str(callback_process(record_id=record_id, now=timezone.now()))


def _receive_then_drain(label: str, items: Sequence[Notification], batch: int) -> Timing:
    """Callbacks arrive ``batch`` at a time (stored and verified, as the endpoint does);
    after each block the worker drains the inbox with ``callbacks_process_batch`` (as
    a Celery task does) until it can claim no more rows. Rows the other worker holds
    are skipped, so either worker may process any row. Each callback's latency runs
    from its arrival to the end of the drain that followed it."""
    from django.utils import timezone

    from repayments.models import CallbackStatus
    from repayments.services.callbacks import callbacks_process_batch

    latencies: list[float] = []
    outcomes: Counter[str] = Counter()
    clock = time.perf_counter
    db_before = _backend_cpu()
    cpu_before = time.process_time()
    started = clock()
    for first in range(0, len(items), batch):
        arrivals = []
        for item in items[first : first + batch]:
            arrivals.append(clock())
            status = _receive(item)[1]
            if status != CallbackStatus.RECEIVED:
                outcomes[f"ack:{status}"] += 1
        while drained := callbacks_process_batch(now=timezone.now(), limit=batch):
            outcomes.update({str(k): v for k, v in drained.items()})
        finished = clock()
        latencies.extend(finished - arrival for arrival in arrivals)
    wall = clock() - started
    cpu = time.process_time() - cpu_before
    db_after = _backend_cpu()
    db = None if db_before is None or db_after is None else db_after - db_before
    return Timing(label, wall, latencies, outcomes, cpu, db, [i[0] for i in items])


def _retire_ack_only_rows() -> int:
    """Part 1's rows name orders never placed: finish them as processing would, so
    part 2's drains see only its own callbacks."""
    from repayments.models import CallbackStatus, InboundCallbackRecord

    return InboundCallbackRecord.objects.filter(status=CallbackStatus.RECEIVED).update(
        status=CallbackStatus.UNMATCHED, error="bench: ack-only row, order never placed"
    )


def _baseline_insert(item: Notification) -> str:
    from django.db import connection
    from django.utils import timezone

    _, body, headers = item
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {SCRATCH} (body, headers, received_at) VALUES (%s, %s::jsonb, %s)",
            [body, json.dumps(headers), timezone.now()],
        )
    return "inserted"


def _view_client() -> Callable[[Notification], str]:
    from django.test import Client

    # Host in ALLOWED_HOSTS: DEBUG is off, so "testserver" would be refused.
    client = Client(HTTP_HOST="127.0.0.1")

    def post(item: Notification) -> str:
        channel, body, headers = item
        extra = {k: v for k, v in headers.items() if k.lower() != "content-type"}
        response = client.post(
            f"/callbacks/{channel}/",
            data=body,
            content_type=headers.get("Content-Type", "application/octet-stream"),
            headers=extra,
        )
        return f"http {response.status_code}"

    return post


def _no_delay(*args: Any, **kwargs: Any) -> None:
    return None


# --- End-to-end data -------------------------------------------------------------------


METHOD_FOR = {
    "unionpay": "bank_debit_card",
    "alipay": "alipay_balance",
    "wechatpay": "wechatpay_balance",
}


def _create_loans(count: int, tag: str) -> list[int]:
    """``count`` active loans with one installment of 1005.00 due today (bulk, not timed)."""
    from django.db import transaction
    from django.utils import timezone

    from repayments.models import Installment, Loan, LoanProduct, User
    from repayments.services.loans import product_create

    today, now = timezone.localdate(), timezone.now()
    product = LoanProduct.objects.filter(code="cbbench").first() or product_create(
        code="cbbench",
        name="callback bench",
        amortization_method="equal_installment",
        annual_rate_percent=Decimal("6.0000"),
        term_months=12,
        now=now,
    )
    with transaction.atomic():
        users = User.objects.bulk_create(
            [User(username=f"cbb{tag}x{n}", full_name=f"cb bench {n}") for n in range(count)],
            batch_size=5000,
        )
        loans = Loan.objects.bulk_create(
            [
                Loan(
                    contract_number=f"CBB-{tag}-{n:07d}",
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
    return [loan.pk for loan in loans]


def _open_attempts(loan_ids: Sequence[int], channels: Sequence[str]) -> list[Notification]:
    """A payment and a pending attempt per loan, the way ``payment_start`` leaves them
    once the channel accepted the order; returns each attempt's signed success notice."""
    from django.utils import timezone

    from repayments.domain.states import AttemptStatus
    from repayments.models import Channel, EventKind, Loan, PaymentMethodType
    from repayments.services.payments import (
        Outcome,
        attempt_open,
        attempt_record_outcome,
        payment_create,
    )

    opened = []
    loans = Loan.objects.in_bulk(list(loan_ids))
    for n, loan_id in enumerate(loan_ids):
        channel = channels[n % len(channels)]
        now = timezone.now()
        payment = payment_create(loan=loans[loan_id], amount=AMOUNT, now=now)
        attempt = attempt_open(
            payment_id=payment.pk,
            channel=Channel(channel),
            method_type=PaymentMethodType(METHOD_FOR[channel]),
            now=now,
        )
        attempt_record_outcome(
            attempt_id=attempt.pk,
            outcome=Outcome(AttemptStatus.PENDING, EventKind.REQUEST),
            now=now,
        )
        opened.append((channel, attempt.out_trade_no, attempt.amount, attempt.created_at))
    # Signed last, so WeChat Pay's 5-minute replay window counts from here.
    sandbox, paid_at = _sandbox(), timezone.now()
    return [_notification(sandbox, *order, paid_at) for order in opened]


# --- Worker processes ------------------------------------------------------------------


@dataclass(frozen=True)
class WorkerSpec:
    mode: str  # "ack": receive only; "e2e": receive and process
    part: int
    channels: tuple[str, ...]
    tag: str
    count: int = 0  # ack: how many synthetic notifications
    loan_ids: tuple[int, ...] = ()  # e2e: this worker's loans
    batch: int = 1  # e2e: 1 processes each callback on its own, else drains in batches


def _prepare(spec: WorkerSpec) -> list[Notification]:
    if spec.mode == "e2e":
        return _open_attempts(spec.loan_ids, spec.channels)
    return _synthetic_notifications(spec.count, spec.channels, f"{spec.tag}w{spec.part}")


def _run(spec: WorkerSpec, items: Sequence[Notification]) -> Timing:
    if spec.mode == "e2e" and spec.batch > 1:
        return _receive_then_drain(spec.mode, items, spec.batch)
    call = _receive_and_process if spec.mode == "e2e" else _ack
    return _timed(spec.mode, items, call)


def _worker(spec: WorkerSpec, barrier: Barrier, results: Queue[Any]) -> None:
    try:
        _setup_django()
        from django.db import connection

        _warm_adapters(spec.channels)
        items = _prepare(spec)
        connection.ensure_connection()
        barrier.wait()  # everyone prepared: the clock starts
        started = time.perf_counter()
        timing = _run(spec, items)
        results.put((spec.part, started, started + timing.wall, timing, None))
        connection.close()
    except BaseException as exc:  # report, never leave the others waiting at the barrier
        barrier.abort()
        results.put((spec.part, 0.0, 0.0, None, repr(exc)))
        raise


def _in_workers(label: str, specs: Sequence[WorkerSpec]) -> Timing:
    """Run the specs in spawned processes; the clock runs from the common start."""
    import queue

    barrier = SPAWN.Barrier(len(specs))
    results: Queue[Any] = SPAWN.Queue()
    processes = [SPAWN.Process(target=_worker, args=(s, barrier, results)) for s in specs]
    for process in processes:
        process.start()
    reports: list[Any] = []
    while len(reports) < len(processes):
        try:
            reports.append(results.get(timeout=5))
        except queue.Empty:
            if not any(p.is_alive() for p in processes):
                codes = [p.exitcode for p in processes]
                raise RuntimeError(f"{label}: workers died without a report ({codes})") from None
    for process in processes:
        process.join()
    errors = [f"worker {part}: {error}" for part, _, _, _, error in reports if error]
    if errors:
        raise RuntimeError("; ".join(errors))
    wall = max(r[2] for r in reports) - min(r[1] for r in reports)
    return Timing.merged(label, [r[3] for r in reports], wall)


def _split(values: Sequence[int], parts: int) -> list[tuple[int, ...]]:
    return [tuple(values[i::parts]) for i in range(parts)]


# --- Checks -------------------------------------------------------------------------


@dataclass(frozen=True)
class Books:
    payments: int
    succeeded: int
    allocated: int
    exact: int  # sum of allocations == amount
    over: int  # allocated more than the amount (double booking)
    success_events: int  # "payment -> succeeded" timeline entries
    processed_callbacks: int

    @property
    def ok(self) -> bool:
        n = self.payments
        counts = (self.succeeded, self.allocated, self.exact, self.success_events)
        return n > 0 and all(c == n for c in counts) and self.over == 0


def _check_books(tag: str) -> Books:
    from django.db.models import DecimalField, F, OuterRef, Subquery, Sum, Value
    from django.db.models.functions import Coalesce

    from repayments.domain.states import PaymentStatus
    from repayments.models import (
        Allocation,
        CallbackStatus,
        EventKind,
        InboundCallbackRecord,
        Payment,
        PaymentEvent,
    )

    payments = Payment.objects.filter(loan__contract_number__startswith=f"CBB-{tag}-")
    booked = (
        Allocation.objects.filter(payment=OuterRef("pk"))
        .values("payment")
        .annotate(total=Sum("amount"))
        .values("total")
    )
    money: DecimalField[Any, Any] = DecimalField(max_digits=14, decimal_places=2)
    with_sum = payments.annotate(
        booked=Coalesce(Subquery(booked, output_field=money), Value(Decimal("0"), money))
    )
    return Books(
        payments=payments.count(),
        succeeded=payments.filter(status=PaymentStatus.SUCCEEDED).count(),
        allocated=payments.filter(allocated_at__isnull=False).count(),
        exact=with_sum.filter(booked=F("amount")).count(),
        over=with_sum.filter(booked__gt=F("amount")).count(),
        success_events=PaymentEvent.objects.filter(
            payment__in=payments,
            kind=EventKind.STATE_CHANGE,
            to_status=PaymentStatus.SUCCEEDED,
        ).count(),
        processed_callbacks=InboundCallbackRecord.objects.filter(
            attempt__payment__in=payments, status=CallbackStatus.PROCESSED
        ).count(),
    )


def _statements(call: Callable[[Notification], str], item: Notification) -> list[str]:
    """The SQL verbs one call sends (BEGIN/COMMIT included), from the connection's log."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as queries:
        call(item)
    return [_verb(q["sql"]) for q in queries.captured_queries]


def _verb(sql: str) -> str:
    """The statement's verb; Django logs ``executemany`` as "<n> times: <sql>", which
    psycopg sends pipelined, in one round trip."""
    words = sql.split(None, 3)
    if len(words) > 2 and words[1] == "times:":
        return words[2].upper()
    return words[0].upper()


def _batch_statements(items: Sequence[Notification], batch: int) -> list[str]:
    """The SQL verbs of receiving ``items`` and draining them in batches of ``batch``."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    if not items:
        return []
    _retire_ack_only_rows()
    with CaptureQueriesContext(connection) as queries:
        _receive_then_drain("sample", items, batch)
    return [_verb(q["sql"]) for q in queries.captured_queries]


def _describe(verbs: Sequence[str]) -> str:
    counts = Counter(verbs)
    body = ", ".join(f"{verb} {n}" for verb, n in counts.most_common())
    return f"{len(verbs)} round trips ({body})"


# --- Profile ----------------------------------------------------------------------------


def _profile(label: str, items: Sequence[Notification], call: Callable[[Any], str]) -> None:
    _profile_call(label, len(items), _timed, label, items, call)


def _profile_call(label: str, count: int, run: Callable[..., Timing], *args: Any) -> None:
    import cProfile
    import pstats

    profiler = cProfile.Profile()
    profiler.runcall(run, *args)
    print(f"\n--- profile: {label} ({count} calls), top by cumulative time ---")
    pstats.Stats(profiler, stream=sys.stdout).sort_stats("cumulative").print_stats(30)
    print(f"--- profile: {label}, top by own time ---")
    pstats.Stats(profiler, stream=sys.stdout).sort_stats("tottime").print_stats(20)


# --- Main ---------------------------------------------------------------------------------


def _verdict(ok: bool) -> str:
    return "PASS" if ok else "MISS"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--callbacks", type=int, default=2000, help="ack-only callbacks")
    parser.add_argument("--e2e", type=int, default=2000, help="callbacks to allocation")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument(
        "--block", type=int, default=100, help="part 1 loops alternate in blocks of this size"
    )
    parser.add_argument(
        "--channels",
        default=",".join(ALL_CHANNELS),
        help="comma-separated, round robin (default: all three)",
    )
    parser.add_argument(
        "--batch",
        type=int,
        default=50,
        help="part 2: drain the inbox in batches of this many rows (1: each callback "
        "processed on its own with callback_process)",
    )
    parser.add_argument(
        "--profile",
        choices=("ack", "e2e"),
        help="also run that path in this process under cProfile and print the top entries",
    )
    options = parser.parse_args()
    channels = tuple(c.strip() for c in options.channels.split(",") if c.strip())
    if not channels or set(channels) - set(ALL_CHANNELS):
        parser.error(f"--channels: choose from {', '.join(ALL_CHANNELS)}")
    count, e2e_count, workers = options.callbacks, options.e2e, max(1, options.workers)
    batch = max(1, options.batch)

    _setup_django()
    from django.conf import settings
    from django.core.management import call_command
    from django.db import connection

    call_command("migrate", verbosity=0)
    call_command("generate_channel_keys", verbosity=0)
    tag = f"{int(time.time()) % 10**8:08d}"
    database = settings.DATABASES["default"]
    where = f"{connection.vendor} {database.get('NAME')} on {database.get('HOST') or '-'}"
    machine_before = _machine()
    print(f"database: {where}; channels: {', '.join(channels)}; cpus: {os.cpu_count()}")
    print(f"run tag {tag}; at start: {machine_before}", flush=True)
    if connection.vendor != "postgresql":
        print("warning: not PostgreSQL; the targets are stated for PostgreSQL", flush=True)

    # --- 1. acknowledgement, one process -------------------------------------------------
    _warm_adapters(channels)
    print(f"\n[1] acknowledgement: signing {3 * count} notifications ...", flush=True)
    base_items = _synthetic_notifications(count, channels, f"{tag}b")
    ack_items = _synthetic_notifications(count, channels, f"{tag}s")
    view_items = _synthetic_notifications(count, channels, f"{tag}v")
    warm = _synthetic_notifications(5 * len(channels), channels, f"{tag}w")
    with connection.cursor() as cursor:
        cursor.execute(f"DROP TABLE IF EXISTS {SCRATCH}")
        cursor.execute(
            f"CREATE TABLE {SCRATCH} (id bigserial PRIMARY KEY, body bytea NOT NULL, "
            "headers jsonb NOT NULL, received_at timestamptz NOT NULL)"
        )
    view = _view_client()
    try:
        with mock.patch("repayments.tasks.process_callback.delay", new=_no_delay):
            for item in warm:  # first-call costs (imports, plans, URL resolver, middleware)
                _baseline_insert(item)
                _ack(item)
                view(item)
            ack_sql = _statements(_ack, warm[0])
            view_sql = _statements(view, warm[1])
            baseline, ack, via_view = _interleaved(
                [
                    ("baseline: bare INSERT, autocommit", base_items, _baseline_insert),
                    ("callback_receive (store+verify)", ack_items, _ack),
                    ("POST /callbacks/<channel>/ (Client)", view_items, view),
                ],
                options.block,
            )
            for timing in (baseline, ack, via_view):
                print(timing.line(), flush=True)
            if options.profile == "ack":
                extra = _synthetic_notifications(count, channels, f"{tag}p")
                _profile("callback_receive", extra, _ack)
    finally:
        with connection.cursor() as cursor:
            cursor.execute(f"DROP TABLE IF EXISTS {SCRATCH}")

    # --- 2. callback to allocated, N workers ----------------------------------------------
    print(
        f"\n[2] end to end: {e2e_count} loans, payments and pending attempts "
        f"(set-up in the workers, not timed) ...",
        flush=True,
    )
    batch_sample = min(batch, 30) if batch > 1 else 0
    loan_ids = _create_loans(e2e_count + len(channels) + batch_sample, tag)
    sample_ids, loan_ids = loan_ids[: len(channels)], loan_ids[len(channels) :]
    e2e_sql = [_statements(_receive_and_process, i) for i in _open_attempts(sample_ids, channels)]
    batch_ids, loan_ids = loan_ids[:batch_sample], loan_ids[batch_sample:]
    batch_sql = _batch_statements(_open_attempts(batch_ids, channels), batch)
    ack_parts = [count // workers + (1 if p < count % workers else 0) for p in range(workers)]
    ack_workers = _in_workers(
        f"ack only, {workers} workers",
        [WorkerSpec("ack", p, channels, f"{tag}a", count=n) for p, n in enumerate(ack_parts)],
    )
    print(ack_workers.line(), flush=True)
    _retire_ack_only_rows()
    mode = f"batches of {batch}" if batch > 1 else "one by one"
    e2e = _in_workers(
        f"receive+process ({mode}), {workers} workers",
        [
            WorkerSpec("e2e", p, channels, tag, loan_ids=part, batch=batch)
            for p, part in enumerate(_split(loan_ids, workers))
        ],
    )
    print(e2e.line(), flush=True)
    books = _check_books(tag)
    machine_after = _machine()
    if options.profile == "e2e":
        profile_ids = _create_loans(min(e2e_count, 300), f"{tag}p")
        profile_items = _open_attempts(profile_ids, channels)
        _retire_ack_only_rows()
        if batch > 1:
            _profile_call(
                "receive+process",
                len(profile_items),
                _receive_then_drain,
                "p",
                profile_items,
                batch,
            )
        else:
            _profile("receive+process", profile_items, _receive_and_process)

    # --- Summary ----------------------------------------------------------------------------
    ratio = ack.rate / baseline.rate if baseline.rate else 0.0
    view_ratio = via_view.rate / baseline.rate if baseline.rate else 0.0
    ack_ok = ratio >= ACK_RATIO_TARGET
    p99_ok = ack.pct_ms(99) < ACK_P99_TARGET_MS
    e2e_ok = e2e.rate >= E2E_RATE_TARGET
    rule = "=" * 100
    print(f"\n{rule}\nSUMMARY  callback inbox (issue 4)\n{rule}")
    print(f"{where}; cpus {os.cpu_count()}; run tag {tag}")
    print(f"at start: {machine_before}\nat end:   {machine_after}")
    print(
        f"[1] acknowledgement, one process, processing not run "
        f"({options.block}-call blocks, alternating)"
    )
    for timing in (baseline, ack, via_view):
        print("    " + timing.line())
    for timing in (baseline, ack, via_view):
        print("    " + timing.cpu_line())
    for channel, latencies in ack.by_channel().items():
        mean = statistics.fmean(latencies) * 1000
        print(
            f"      callback_receive, {channel:<9} {len(latencies):>5} calls  mean {mean:6.2f} "
            f"p99 {_percentile_ms(latencies, 99):6.2f} ms"
        )
    print(f"    outcomes: store+verify {dict(ack.outcomes)}; view {dict(via_view.outcomes)}")
    print(f"    SQL per callback_receive: {' '.join(ack_sql)}")
    print(f"    SQL per view request:     {' '.join(view_sql)}")
    print(
        f"    ack rate / baseline = {ratio:.0%} (target >= {ACK_RATIO_TARGET:.0%})  "
        f"{_verdict(ack_ok)}"
    )
    print(
        f"    ack p99 = {ack.pct_ms(99):.2f} ms (target < {ACK_P99_TARGET_MS:.0f} ms)  "
        f"{_verdict(p99_ok)}"
    )
    print(
        f"    via the view: {view_ratio:.0%} of baseline, p99 {via_view.pct_ms(99):.2f} ms; "
        f"HTTP + middleware + view add {via_view.mean_ms() - ack.mean_ms():+.2f} ms per callback"
    )
    print(f"[2] callback to allocated, {workers} spawned workers, one connection each")
    for timing in (ack_workers, e2e):
        print("    " + timing.line())
    for timing in (ack_workers, e2e):
        print("    " + timing.cpu_line())
    print(f"    outcomes: {dict(e2e.outcomes)}")
    for channel, verbs in zip(channels, e2e_sql, strict=True):
        print(f"    SQL per receive+process one by one ({channel}): {_describe(verbs)}")
    if batch_sql:
        per = len(batch_sql) / batch_sample
        print(
            f"    SQL per {batch_sample} callbacks received then drained in batches: "
            f"{_describe(batch_sql)}, {per:.1f} per callback"
        )
    print(
        f"    books: payments {books.payments}, succeeded {books.succeeded}, allocated "
        f"{books.allocated}, sum(allocations) == amount {books.exact}, over-allocated "
        f"{books.over}, success transitions {books.success_events}, "
        f"callbacks processed {books.processed_callbacks}"
    )
    print(
        f"    total {e2e.wall:.2f} s, {e2e.rate:.1f}/s (target >= {E2E_RATE_TARGET:.0f}/s "
        f"on 2 cores)  {_verdict(e2e_ok)}"
    )
    per_worker = e2e.rate / ack_workers.rate if ack_workers.rate else 0.0
    single = e2e.rate / ack.rate if ack.rate else 0.0
    print(
        f"    e2e rate / ack-only rate: {per_worker:.0%} (same {workers} workers), "
        f"{single:.0%} (ack-only in one process, part 1)"
    )
    print(
        "    every payment succeeded and allocated exactly once: "
        + ("PASS" if books.ok else "FAIL")
    )
    print(rule)
    if not books.ok:
        sys.exit(1)


if __name__ == "__main__":
    main()
