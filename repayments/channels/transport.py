"""Telling, from a failed HTTP exchange, whether the request can have reached the channel."""

from __future__ import annotations

import requests
from urllib3.exceptions import NewConnectionError


def request_never_sent(exc: requests.RequestException) -> bool:
    """True only when the request certainly did not reach the channel.

    Refused or unresolvable connections, connect time-outs, TLS handshake failures
    and bad URLs all fail before a byte of the request leaves. A read time-out or
    a connection dropped mid-answer happen after, so the channel may have acted.
    """
    if isinstance(
        exc,
        requests.ConnectTimeout
        | requests.exceptions.SSLError
        | requests.exceptions.InvalidURL
        | requests.exceptions.MissingSchema
        | requests.exceptions.InvalidSchema,
    ):
        return True
    # urllib3 wraps the real cause in MaxRetryError; a connection that dies after
    # sending is a ConnectionError too, so the cause must be checked, not the class.
    reason = exc.args[0] if exc.args else None
    reason = getattr(reason, "reason", reason)
    return isinstance(exc, requests.ConnectionError) and isinstance(reason, NewConnectionError)
