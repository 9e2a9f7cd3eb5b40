"""``POST /callbacks/<channel>/``: the channels' asynchronous notifications.

Thin on purpose: the service stores the raw request and decides the answer;
processing happens in a task once the row is committed.
"""

from __future__ import annotations

from django.http import Http404, HttpRequest, HttpResponse
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from repayments.models import CallbackStatus, Channel
from repayments.services.callbacks import callback_receive
from repayments.tasks import process_callback


@csrf_exempt  # signed by the channel, not by a browser session
@require_POST
def channel_callback(request: HttpRequest, channel: str) -> HttpResponse:
    if channel not in Channel.values:
        raise Http404
    record, verdict = callback_receive(
        channel=channel,
        body=request.body,
        headers=dict(request.headers),
        remote_addr=request.META.get("REMOTE_ADDR"),
        now=timezone.now(),
    )
    if verdict.status == CallbackStatus.RECEIVED:
        # The row is already committed (the service's own transaction); if this
        # message is lost, the sweeper finds the row still ``received``.
        process_callback.delay(record_id=record.pk)
    return HttpResponse(
        verdict.ack.body, status=verdict.ack.status, content_type=verdict.ack.content_type
    )
