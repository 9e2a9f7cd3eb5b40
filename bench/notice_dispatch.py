"""Notice dispatch throughput and state-change-to-delivery latency, with real workers.

Usage (PostgreSQL and Redis required: this measures the production path):
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/anxin_bench \\
    REDIS_URL=redis://127.0.0.1:6379/14 \\
    .venv/bin/python bench/notice_dispatch.py --notices 10000 --workers 2

Baseline, in the same run and on the same workers: the rate at which they
consume no-op Celery tasks (Celery's built-in ``celery.accumulate``). Then
N notices are written due at once and dispatched (claims, re-check, render,
in-app + file SMS provider, delivery rows); the rate is printed beside the
baseline. Last, a steady stream of notices is written while beat-like
dispatch runs, and the state-change-to-delivered p50/p99 is printed.

The file SMS provider's log is read back at the end: every notice must have
gone out exactly once (the figures are worthless otherwise).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")
os.environ.setdefault("DJANGO_DEBUG", "true")
os.environ["CELERY_TASK_ALWAYS_EAGER"] = "false"
os.environ["NOTIFY_SMS_PROVIDER"] = "file"
os.environ["NOTIFY_PUSH_PROVIDER"] = "off"


def _workers(count: int) -> list[subprocess.Popen[bytes]]:
    return [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "portal",
                "worker",
                "--concurrency=1",
                f"--hostname=bench{i}@%h",
                "--without-gossip",
                "--without-mingle",
                "--loglevel=WARNING",
            ],
            cwd=ROOT,
        )
        for i in range(count)
    ]


def _queue_empty(redis_client: object) -> bool:
    return redis_client.llen("celery") == 0  # type: ignore[attr-defined]


def _baseline(app: object, redis_client: object, count: int) -> float:
    started = time.perf_counter()
    for n in range(count):
        app.send_task("celery.accumulate", args=(n,))  # type: ignore[attr-defined]
    while not _queue_empty(redis_client):
        time.sleep(0.01)
    return count / (time.perf_counter() - started)


def _drain(redis_client: object) -> None:
    """Let the dispatcher runs still queued from the last phase finish first."""
    while not _queue_empty(redis_client):
        time.sleep(0.1)


def _sends_per_notice(var_dir: Path) -> Counter[str]:
    log = var_dir / "notifications" / "sms.log"
    lines = log.read_text(encoding="utf-8").splitlines() if log.exists() else []
    return Counter(json.loads(line)["ref"] for line in lines)


def _make_notices(count: int, users: list[int], now: datetime) -> None:
    from notifications.models import Notice, NoticeKind

    rows = [
        Notice(
            recipient_id=users[n % len(users)],
            kind=NoticeKind.DUE_REMINDER,
            subject_type="bench",
            subject_id=n,
            announced_state="",
            dedupe_key=f"bench:{time.time_ns()}:{n}",
            params={"loan": f"B{n}", "number": 1, "amount": "¥1.00", "due_date": "2026-02-05"},
            not_before=now,
            state_changed_at=now,
            created_at=now,
        )
        for n in range(count)
    ]
    Notice.objects.bulk_create(rows, batch_size=2000)


def _clear() -> None:
    from notifications.models import Delivery, Notice

    Delivery.objects.filter(notice__subject_type="bench").delete()
    Notice.objects.filter(subject_type="bench").delete()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--notices", type=int, default=10_000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--stream-seconds", type=int, default=20)
    parser.add_argument("--stream-rate", type=int, default=50, help="notices per second")
    options = parser.parse_args()
    if not os.environ.get("DATABASE_URL", "").startswith("postgres") or not os.environ.get(
        "REDIS_URL"
    ):
        sys.exit("set DATABASE_URL (PostgreSQL) and REDIS_URL: this measures the production path")
    var_dir = Path(tempfile.mkdtemp(prefix="notice-bench-"))
    os.environ["ANXIN_VAR_DIR"] = str(var_dir)

    import django

    django.setup()
    import redis
    from django.conf import settings
    from django.core.management import call_command
    from django.utils import timezone

    from notifications.models import Notice, NoticeStatus
    from notifications.tasks import dispatch_notices
    from portal.celery import app
    from repayments.models import User

    call_command("migrate", verbosity=0)  # a new database works as well as a used one
    redis_client = redis.Redis.from_url(settings.REDIS_URL)
    redis_client.delete("celery")
    users = [
        User.objects.get_or_create(phone=f"1770000{n:04d}", defaults={"full_name": "bench"})[0].pk
        for n in range(50)
    ]
    _clear()
    workers = _workers(options.workers)
    try:
        time.sleep(4)  # workers connect
        _baseline(app, redis_client, 200)  # warm-up
        noop_rate = _baseline(app, redis_client, options.notices)

        _make_notices(options.notices, users, timezone.now())
        pending = Notice.objects.filter(subject_type="bench").exclude(status=NoticeStatus.DELIVERED)
        started = time.perf_counter()
        while pending.exists():
            dispatch_notices.delay()
            time.sleep(0.2)
        dispatch_rate = options.notices / (time.perf_counter() - started)

        # Steady stream: notices written as state changes happen, dispatch every second.
        _drain(redis_client)
        _clear()
        stream_started = time.perf_counter()
        next_dispatch = 0.0
        written = 0
        while time.perf_counter() - stream_started < options.stream_seconds:
            _make_notices(max(options.stream_rate // 10, 1), users, timezone.now())
            written += max(options.stream_rate // 10, 1)
            if time.perf_counter() >= next_dispatch:
                dispatch_notices.delay()
                next_dispatch = time.perf_counter() + 1.0
            time.sleep(0.1)
        while pending.exists():
            dispatch_notices.delay()
            time.sleep(0.5)
        latencies = sorted(
            (delivered - changed).total_seconds()
            for delivered, changed in Notice.objects.filter(
                subject_type="bench", delivered_at__isnull=False
            ).values_list("delivered_at", "state_changed_at")
            if delivered is not None
        )
        _drain(redis_client)
    finally:
        for worker in workers:
            worker.terminate()
        for worker in workers:
            worker.wait(timeout=30)
    sends = _sends_per_notice(var_dir)
    twice = sum(1 for count in sends.values() if count > 1)

    p50 = statistics.median(latencies)
    p99 = latencies[int(len(latencies) * 0.99) - 1]
    ratio = dispatch_rate / noop_rate
    print(f"workers: {options.workers}, database: PostgreSQL, broker: Redis")
    print(f"baseline: no-op Celery tasks consumed at {noop_rate:,.0f}/s")
    print(
        f"dispatch: {options.notices:,} notices delivered at {dispatch_rate:,.0f}/s "
        f"({ratio:.0%} of the no-op rate; target 60%: {'PASS' if ratio >= 0.6 else 'MISS'})"
    )
    print(
        f"steady stream: {written} notices at {options.stream_rate}/s, dispatch every 1 s: "
        f"state change to delivered p50 {p50:.2f} s, p99 {p99:.2f} s "
        f"(target p99 < 10 s: {'PASS' if p99 < 10 else 'MISS'})"
    )
    print(
        f"sent once each: {'yes' if not twice else 'NO'} "
        f"({sum(sends.values()):,} messages for {options.notices + written:,} notices, "
        f"{twice} sent more than once)"
    )


if __name__ == "__main__":
    main()
