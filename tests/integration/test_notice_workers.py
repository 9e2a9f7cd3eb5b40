"""Two real Celery workers on Redis share the notice outbox without sending twice."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
from django.conf import settings
from django.db import connection
from django.utils import timezone

from notifications.models import Notice, NoticeKind, NoticeStatus
from notifications.services import notice_enqueue
from notifications.tasks import dispatch_notices
from portal.celery import app as celery_app

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]
NOTICES = 300


def _worker(name: str, env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "portal",
            "worker",
            "--concurrency=1",
            "--pool=prefork",
            f"--hostname={name}@%h",
            "--without-gossip",
            "--without-mingle",
            "--loglevel=WARNING",
        ],
        env=env,
        cwd=settings.BASE_DIR,
    )


def test_two_workers_deliver_every_notice_exactly_once(make_borrower, tmp_path: Path) -> None:
    if not os.environ.get("REDIS_URL"):
        pytest.skip("needs Redis: set REDIS_URL (run by .ci/run)")
    borrowers = [make_borrower() for _ in range(10)]
    now = timezone.now()
    for n in range(NOTICES):
        notice_enqueue(
            recipient_id=borrowers[n % len(borrowers)].pk,
            kind=NoticeKind.DUE_REMINDER,
            subject_type_name="test",
            subject_id=n,
            announced_state="",
            episode="",
            params={"loan": f"L{n}", "number": 1, "amount": "¥1.00", "due_date": "2026-02-05"},
            now=now,
        )
    db = connection.settings_dict
    env = {
        **os.environ,
        "DATABASE_URL": f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}",
        "CELERY_TASK_ALWAYS_EAGER": "false",
        "ANXIN_VAR_DIR": str(tmp_path),
        "NOTIFY_SMS_PROVIDER": "file",
    }
    purge = subprocess.run(
        [sys.executable, "-m", "celery", "-A", "portal", "purge", "-f"],
        env=env,
        cwd=settings.BASE_DIR,
        capture_output=True,
        check=False,
    )
    assert purge.returncode == 0, purge.stderr
    workers = [_worker(f"w{i}", env) for i in range(2)]
    eager = celery_app.conf.task_always_eager
    celery_app.conf.task_always_eager = False
    started = time.monotonic()
    try:
        # Both workers run dispatchers at once, as beat would on a busy day.
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            for _ in range(4):
                dispatch_notices.delay()
            time.sleep(0.5)
            if not Notice.objects.exclude(status=NoticeStatus.DELIVERED).exists():
                break
        elapsed = time.monotonic() - started
    finally:
        celery_app.conf.task_always_eager = eager
        for worker in workers:
            worker.terminate()
        for worker in workers:
            worker.wait(timeout=30)
    assert not Notice.objects.exclude(status=NoticeStatus.DELIVERED).exists()
    lines = (tmp_path / "notifications" / "sms.log").read_text(encoding="utf-8").splitlines()
    sends = Counter(json.loads(line)["ref"] for line in lines)
    assert len(sends) == NOTICES
    assert max(sends.values()) == 1, [ref for ref, n in sends.items() if n > 1]
    print(f"\ntwo workers: {NOTICES} notices delivered once each in {elapsed:.1f}s")
