"""``POST /notifications/receipts/aliyun/``: Alibaba Cloud SMS delivery receipts.

Thin on purpose: the adapter parses Aliyun's report format, the service settles
each delivery. Aliyun pushes a JSON array and wants HTTP 200 with a numeric
``code`` back; anything else (a 5xx when our database is down) is pushed again.
"""

from __future__ import annotations

import logging

from django.http import HttpRequest, JsonResponse
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from notifications.providers.aliyun_sms import NAME, ReceiptUnparseable, parse_receipts
from notifications.receipts import UnknownDelivery, delivery_receipt_record

logger = logging.getLogger(__name__)


@csrf_exempt  # posted by Aliyun's servers, not by a browser session
@require_POST
def aliyun_sms_receipts(request: HttpRequest) -> JsonResponse:
    try:
        receipts = parse_receipts(request.body)
    except ReceiptUnparseable as exc:
        return JsonResponse({"code": 1, "msg": str(exc)}, status=400)
    now = timezone.now()
    for receipt in receipts:
        try:
            delivery_receipt_record(
                provider=NAME,
                message_id=receipt.message_id,
                delivered=receipt.delivered,
                error=receipt.error,
                at=receipt.reported_at or now,
            )
        except UnknownDelivery:
            # Acknowledged anyway: pushing it again would not make it known.
            logger.warning("aliyun receipt for unknown message %s", receipt.message_id)
    return JsonResponse({"code": 0, "msg": "成功"}, json_dumps_params={"ensure_ascii": False})
