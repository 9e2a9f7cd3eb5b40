"""Delivery receipts: what a provider later says happened to a message it accepted.

A provider that answers "accepted" (``Sent.delivered=False``, e.g. Aliyun SMS)
leaves a ``Delivery`` row in ``sent``, and the dispatcher counts the notice as
delivered. The receipt settles the row:

* delivered: the row becomes ``delivered`` with ``receipt_at``;
* not delivered: the row becomes ``failed`` (with the provider's code) and, if
  no other external channel carried the notice (delivered, or accepted and
  still waiting for its own receipt), the notice goes back to ``pending``. The
  dispatcher then picks it up again: it re-checks that the notice is still
  true (superseding it otherwise), and :class:`SkipAfterUndeliveredReceipt`
  makes the channel that failed refuse the notice, so the next channel in the
  borrower's order gets it. If every channel fails, the usual retries and the
  final ``failed`` status apply; the in-app inbox always has it.

Receipts are settled once: a repeated receipt, or a second word after the
first (Aliyun does not promise to push only once), changes nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from django.db import transaction

from notifications.models import Delivery, DeliveryChannel, DeliveryStatus, Notice, NoticeStatus
from notifications.providers.base import Provider, ProviderError, Recipient, Sent

logger = logging.getLogger(__name__)

EXTERNAL_CHANNELS = (DeliveryChannel.SMS, DeliveryChannel.PUSH)
# A notice in these states can still be sent again; superseded or failed ones stay put.
REOPENABLE = (NoticeStatus.DELIVERED, NoticeStatus.SENDING)


class ReceiptError(Exception):
    """A receipt that cannot be recorded."""


class UnknownDelivery(ReceiptError):
    """No delivery of this provider carries the receipt's message id."""


def delivery_receipt_record(
    *, provider: str, message_id: str, delivered: bool, error: str, at: datetime
) -> bool:
    """Settle the delivery a provider's receipt is about; True if this receipt changed it.

    An undelivered receipt puts the notice back to pending unless another
    external channel carries it (see the module docstring).

    :raises UnknownDelivery: no delivery of ``provider`` has ``message_id``.
    """
    with transaction.atomic():
        delivery = (
            Delivery.objects.select_for_update()
            .filter(provider=provider, provider_message_id=message_id)
            .order_by("-id")
            .first()
        )
        if delivery is None:
            raise UnknownDelivery(f"{provider} message {message_id!r}")
        if delivery.status != DeliveryStatus.SENT:
            return False  # already settled: a repeated or late second receipt
        delivery.status = DeliveryStatus.DELIVERED if delivered else DeliveryStatus.FAILED
        delivery.error = "" if delivered else (error or "not delivered")[:200]
        delivery.receipt_at = at
        delivery.save(update_fields=["status", "error", "receipt_at"])
        if not delivered:
            _reopen_unless_carried_elsewhere(delivery)
    return True


def _reopen_unless_carried_elsewhere(failed: Delivery) -> None:
    notice = Notice.objects.select_for_update().get(pk=failed.notice_id)
    if notice.status not in REOPENABLE:
        return
    carried = (
        Delivery.objects.filter(
            notice_id=notice.pk,
            channel__in=EXTERNAL_CHANNELS,
            status__in=[DeliveryStatus.SENT, DeliveryStatus.DELIVERED],
        )
        .exclude(pk=failed.pk)
        .exists()
    )
    if carried:
        return
    # A notice still ``sending`` is reopened too: the receipt beat the dispatcher's
    # final write, which then sees the row is no longer its own and leaves it.
    notice.status = NoticeStatus.PENDING
    notice.delivered_at = None
    notice.claimed_until = None
    notice.status_reason = f"{failed.channel} not delivered: {failed.error}"[:200]
    notice.save(update_fields=["status", "delivered_at", "claimed_until", "status_reason"])
    logger.info("notice %s: %s receipt says undelivered, reopened", notice.pk, failed.channel)


def undelivered_by_receipt(*, notice_id: int, channel: str) -> bool:
    """Did a receipt already say this notice never reached the borrower on ``channel``?"""
    return Delivery.objects.filter(
        notice_id=notice_id,
        channel=channel,
        status=DeliveryStatus.FAILED,
        receipt_at__isnull=False,
    ).exists()


class SkipAfterUndeliveredReceipt:
    """Wraps a provider whose receipts come later, so a reopened notice moves on.

    Sending the same text to the same phone again would most likely fail again
    (number out of service, phone off for days) and, when it did arrive, come
    twice; the next channel is the better try.
    """

    def __init__(self, inner: Provider) -> None:
        self.inner = inner
        self.name = inner.name
        self.channel = inner.channel

    def send(
        self,
        *,
        to: Recipient,
        text: str,
        reference: str,
        kind: str = "",
        params: Mapping[str, Any] | None = None,
    ) -> Sent:
        """:raises ProviderError: a receipt said this notice did not arrive here before."""
        if reference.isdigit() and undelivered_by_receipt(
            notice_id=int(reference), channel=self.channel
        ):
            raise ProviderError(
                f"not sent again: an earlier {self.channel} receipt said undelivered"
            )
        return self.inner.send(to=to, text=text, reference=reference, kind=kind, params=params)
