"""Due-day batch: N installments due at 09:00, withheld through the sandbox and confirmed.

Usage (PostgreSQL and Redis recommended, as in production):
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/anxin_bench \\
    REDIS_URL=redis://127.0.0.1:6379/14 \\
    .venv/bin/python bench/due_day_batch.py --installments 100000 --workers 4

It creates N loans with one installment due today (set-up, not timed), starts
the channel sandbox as its own process, then times the whole day's work:
scheduling the debit rows, claiming and sending them from worker processes
(``auto_debit_execute_many`` per claim of 200, which goes out as one UnionPay
batch file), and confirming each debit by querying the bank (callbacks are
dropped, so confirmation goes through status sync's own ``janitor_check_many``,
one batch query per batch file). As a baseline in the same run it times bare withholding
calls to the sandbox (adapter only, no database), and prints the pipeline's cost
as a ratio, and the CPU per installment of the workers and the sandbox: on a
shared machine that moves far less than wall time does.

Each run creates its own loans with fixed contract numbers: use a fresh database.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import secrets
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

# Workers start fresh: a forked child would share the parent's database socket.
SPAWN = multiprocessing.get_context("spawn")
ROOT = Path(__file__).resolve().parent.parent
CONFIRM_BATCH = 200  # attempts per janitor_check_many call, as janitor_claim hands them out
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")
# As in production: DEBUG on would also record every query the workers send.
os.environ.setdefault("DJANGO_DEBUG", "false")
os.environ.setdefault("DJANGO_SECRET_KEY", secrets.token_urlsafe(64))


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _cpu_seconds(pid: int) -> float:
    """User + system CPU of a running process (Linux /proc; 0 elsewhere)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _machine_cpu_seconds() -> float:
    """CPU time every process on the machine has used (Linux /proc/stat; 0 elsewhere):
    what the database server spent is this less what our processes did."""
    try:
        fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    except OSError:
        return 0.0
    user, nice, system, _idle, _iowait, irq, softirq = (int(v) for v in fields[:7])
    return (user + nice + system + irq + softirq) / os.sysconf("SC_CLK_TCK")


def _setup_django(sandbox_url: str) -> None:
    os.environ["UNIONPAY_API_URL"] = f"{sandbox_url}/unionpay"
    os.environ["PORTAL_BASE_URL"] = "http://127.0.0.1:9"  # callbacks go nowhere
    import django

    django.setup()


def _create_data(count: int) -> None:
    from django.db import transaction
    from django.utils import timezone

    from repayments.models import BoundCard, Installment, Loan, LoanProduct, User
    from repayments.services.loans import product_create

    today = timezone.localdate()
    now = timezone.now()
    product = LoanProduct.objects.filter(code="bench").first() or product_create(
        code="bench",
        name="bench",
        amortization_method="equal_installment",
        annual_rate_percent=Decimal("6.0000"),
        term_months=12,
        now=now,
    )
    with transaction.atomic():
        users = User.objects.bulk_create(
            [User(phone=f"19{n:09d}", full_name=f"bench {n}") for n in range(count)],
            batch_size=5000,
        )
        loans = Loan.objects.bulk_create(
            [
                Loan(
                    contract_number=f"BENCH-{n:07d}",
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
        BoundCard.objects.bulk_create(
            [
                BoundCard(
                    borrower=user,
                    channel="unionpay",
                    card_token=f"bench_{n}",
                    card_masked="6222 **** **** 0000",
                    bank_name="bench",
                )
                for n, user in enumerate(users)
            ],
            batch_size=5000,
        )


def _debit_worker(args: tuple[str, int]) -> tuple[int, float]:
    """Claim and send until nothing is due; returns (debits sent, CPU seconds spent)."""
    sandbox_url, claim_size = args
    _setup_django(sandbox_url)
    cpu = time.process_time()
    from django.db import connection
    from django.utils import timezone

    from repayments.services.autodebit import auto_debit_claim, auto_debit_execute_many

    done = 0
    while ids := auto_debit_claim(now=timezone.now(), limit=claim_size):
        done += len(auto_debit_execute_many(debit_ids=ids, now=timezone.now()))
    connection.close()
    return done, time.process_time() - cpu


def _confirm_worker(args: tuple[str, int, int]) -> tuple[int, float]:
    """Confirm this worker's share of pending attempts; returns (confirmed, CPU seconds)."""
    sandbox_url, part, parts = args
    _setup_django(sandbox_url)
    cpu = time.process_time()
    from django.db import connection
    from django.utils import timezone

    from repayments.domain.states import AttemptStatus
    from repayments.models import PaymentAttempt
    from repayments.services.janitor import janitor_check_many

    pending = PaymentAttempt.objects.filter(status=AttemptStatus.PENDING).values_list(
        "pk", flat=True
    )
    mine = [attempt_id for attempt_id in pending if attempt_id % parts == part]
    confirmed = 0
    # Status sync's own path (janitor_check_many), in claim-sized batches.
    for start in range(0, len(mine), CONFIRM_BATCH):
        statuses = janitor_check_many(
            attempt_ids=mine[start : start + CONFIRM_BATCH], now=timezone.now()
        )
        confirmed += sum(status == AttemptStatus.SUCCEEDED for status in statuses.values())
    connection.close()
    return confirmed, time.process_time() - cpu


def _baseline(sandbox_url: str, calls: int) -> float:
    """Bare adapter calls to the sandbox, no database: what the channel alone costs."""
    from repayments.channels.base import OrderRequest
    from repayments.channels.unionpay import UnionPayChannel, UnionPayConfig

    channel = UnionPayChannel(UnionPayConfig.from_settings())
    started = time.perf_counter()
    for n in range(calls):
        channel.create_order(
            OrderRequest(
                out_trade_no=f"BASE{n:08d}",
                amount=Decimal("1005.00"),
                subject="baseline",
                notify_url="http://127.0.0.1:9/",
                method_type="bank_debit_card",
                card_token=f"base_{n}",
            )
        )
    return time.perf_counter() - started


def _profiled(worker: Callable[[Any], tuple[int, float]], args: Any) -> tuple[int, float]:
    """Run one worker in this process under cProfile and print where its time went."""
    import cProfile
    import pstats

    profiler = cProfile.Profile()
    result = profiler.runcall(worker, args)
    pstats.Stats(profiler).sort_stats("cumulative").print_stats(45)
    pstats.Stats(profiler).sort_stats("tottime").print_stats(25)
    saved = ROOT / "var" / f"due_day_{worker.__name__.strip('_')}.prof"
    profiler.dump_stats(saved)
    print(f"profile saved to {saved} (python -m pstats)")
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--installments", type=int, default=100_000)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--claim-size", type=int, default=200)
    parser.add_argument("--baseline-calls", type=int, default=500)
    parser.add_argument(
        "--profile",
        choices=["debit", "confirm"],
        help="run that phase in this process under cProfile (one worker)",
    )
    options = parser.parse_args()

    port = _free_port()
    sandbox_url = f"http://127.0.0.1:{port}"
    _setup_django(sandbox_url)
    import requests
    from django.core.management import call_command
    from django.utils import timezone

    from repayments.domain.states import PaymentStatus
    from repayments.models import Payment
    from repayments.services.autodebit import auto_debit_schedule

    call_command("migrate", verbosity=0)
    call_command("generate_channel_keys", verbosity=0)
    sandbox = subprocess.Popen(
        [sys.executable, "manage.py", "run_channel_sandbox", "--port", str(port)],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
    )
    try:
        for _ in range(50):
            try:
                requests.post(
                    f"{sandbox_url}/control/unionpay/faults",
                    json={"drop_callbacks": 1.0},
                    timeout=1,
                )
                break
            except requests.ConnectionError:
                time.sleep(0.2)
        print(f"setting up {options.installments} installments due today ...", flush=True)
        _create_data(options.installments)
        baseline = _baseline(sandbox_url, options.baseline_calls)
        requests.post(f"{sandbox_url}/control/reset", timeout=5)
        requests.post(
            f"{sandbox_url}/control/unionpay/faults", json={"drop_callbacks": 1.0}, timeout=5
        )

        sandbox_cpu = _cpu_seconds(sandbox.pid)
        machine_cpu = _machine_cpu_seconds()
        started = time.perf_counter()
        scheduled = auto_debit_schedule(run_date=timezone.localdate(), now=timezone.now())
        if options.profile == "debit":
            sent, debit_cpu = _profiled(_debit_worker, (sandbox_url, options.claim_size))
        else:
            with ProcessPoolExecutor(options.workers, mp_context=SPAWN) as pool:
                jobs = [(sandbox_url, options.claim_size)] * options.workers
                sent, debit_cpu = map(sum, zip(*pool.map(_debit_worker, jobs), strict=True))
        debit_phase = time.perf_counter() - started
        if options.profile == "confirm":
            confirmed, confirm_cpu = _profiled(_confirm_worker, (sandbox_url, 0, 1))
        else:
            with ProcessPoolExecutor(options.workers, mp_context=SPAWN) as pool:
                shares = [(sandbox_url, part, options.workers) for part in range(options.workers)]
                confirmed, confirm_cpu = map(
                    sum, zip(*pool.map(_confirm_worker, shares), strict=True)
                )
        elapsed = time.perf_counter() - started

        state = requests.get(f"{sandbox_url}/control/state", timeout=5).json()
        succeeded = Payment.objects.filter(
            status=PaymentStatus.SUCCEEDED, initiated_by="auto_debit"
        ).count()
        per_call = baseline / options.baseline_calls
        per_debit = elapsed / max(options.installments, 1)
        print(f"database: {os.environ.get('DATABASE_URL', 'sqlite (embedded)')}")
        print(f"scheduled {scheduled}, sent {sent}, confirmed by query {confirmed}")
        print(
            f"sandbox received {state['requests'].get('unionpay.debits', 0)} debits "
            f"({state['requests'].get('unionpay.batches', 0)} batch files)"
        )
        print(f"payments succeeded and booked: {succeeded}")
        print(
            f"debit phase {debit_phase:.1f} s, total {elapsed:.1f} s, "
            f"{options.installments / elapsed:.0f} installments/s"
        )
        print(
            f"baseline: bare withholding call {per_call * 1000:.2f} ms; pipeline per "
            f"installment {per_debit * 1000:.2f} ms wall ({per_debit / per_call:.1f}x)"
        )
        print(
            f"projected for 100,000 at this rate: {100_000 * per_debit / 60:.1f} min (target 5 min)"
        )
        sandbox_cpu = _cpu_seconds(sandbox.pid) - sandbox_cpu
        machine_cpu = _machine_cpu_seconds() - machine_cpu
        others_cpu = machine_cpu - debit_cpu - confirm_cpu - sandbox_cpu
        per = 1000 / max(options.installments, 1)
        # CPU per installment moves less than wall time when others share the machine.
        print(
            f"CPU per installment: debit workers {debit_cpu * per:.1f} ms, confirm workers "
            f"{confirm_cpu * per:.1f} ms, sandbox {sandbox_cpu * per:.1f} ms, database and "
            f"the rest {others_cpu * per:.1f} ms (machine busy {machine_cpu / elapsed:.2f} "
            f"of {os.cpu_count()} CPUs)"
        )
    finally:
        sandbox.terminate()


if __name__ == "__main__":
    main()
