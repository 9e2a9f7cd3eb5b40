"""The notice outbox: enqueue with the state change, dispatch only what is still true.

Rule 5 of the design, in four mechanisms:

1. :func:`notice_enqueue` runs inside the caller's transaction, so a notice
   exists exactly when the state change it announces committed.
2. :func:`notices_send` re-reads the subject before sending; a notice whose
   state no longer holds is superseded, with the reason. Failure notices are
   enqueued with a settle window, so a quick recovery supersedes them unsent.
3. After a send, the state is read again: if it moved to a confirmed state
   meanwhile (the race between check and send), a correction is enqueued.
   :func:`notice_enqueue` also corrects at once when a success arrives after a
   failure notice went out.
4. A live notice is unique per (recipient, dedupe key), and only the claimer
   holding the row's lease can mark it delivered: a retried task or a
   duplicated trigger never sends twice.

``outbox`` writes and claims notices, ``dispatch`` sends them a batch at a
time, ``rendering`` turns a notice into text.
"""

from notifications.services.dispatch import (
    RETRY_BACKOFF,
    Dispatched,
    ProviderFactory,
    default_provider,
    notice_dispatch,
    notices_send,
)
from notifications.services.outbox import (
    CLAIM_LEASE,
    Claim,
    contradicted_notices,
    notice_enqueue,
    notices_claim,
    notices_claim_leased,
    notices_held,
    notices_in_inbox,
    settle_window,
)
from notifications.services.rendering import TemplateBook, render

__all__ = [
    "CLAIM_LEASE",
    "RETRY_BACKOFF",
    "Claim",
    "Dispatched",
    "ProviderFactory",
    "TemplateBook",
    "contradicted_notices",
    "default_provider",
    "notice_dispatch",
    "notice_enqueue",
    "notices_claim",
    "notices_claim_leased",
    "notices_held",
    "notices_in_inbox",
    "notices_send",
    "render",
    "settle_window",
]
