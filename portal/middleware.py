"""Session idle timeout without writing the session on every request.

``SESSION_SAVE_EVERY_REQUEST`` kept the idle timeout by saving every session on every
request: one extra write per page view, for every signed-in borrower (measured on the
record page, bench/record_page.py). Here a last-seen time is kept in the session and
written only when it is older than ``LAST_SEEN_REFRESH_SECONDS``; that write also
slides the session's own expiry (cookie and store) forward. The idle check itself is
exact: a session idle for longer than ``SESSION_COOKIE_AGE`` is ended here, whatever
the store's expiry says.
"""

from __future__ import annotations

from collections.abc import Callable

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.utils import timezone

LAST_SEEN_KEY = "_portal_last_seen"
# How stale last-seen may get before a request writes it: the idle timeout is then
# honoured to within this, and a page view within it writes nothing.
LAST_SEEN_REFRESH_SECONDS = 60


class IdleSessionMiddleware:
    """End sessions idle for longer than ``SESSION_COOKIE_AGE`` seconds; keep active
    ones alive with at most one session write per ``LAST_SEEN_REFRESH_SECONDS``.

    Must come after ``SessionMiddleware`` and before ``AuthenticationMiddleware``, so
    an ended session is anonymous for the rest of the request.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        session = request.session
        if session.session_key is not None:  # no cookie, no session: nothing to track
            self._check(request, now=int(timezone.now().timestamp()))
        return self.get_response(request)

    @staticmethod
    def _check(request: HttpRequest, *, now: int) -> None:
        session = request.session
        last_seen = session.get(LAST_SEEN_KEY)
        if not isinstance(last_seen, int):
            if not session.is_empty():
                session[LAST_SEEN_KEY] = now  # a session from before this middleware
            return
        if now - last_seen > settings.SESSION_COOKIE_AGE:
            session.flush()  # signed out: the rest of the request is anonymous
        elif now - last_seen >= LAST_SEEN_REFRESH_SECONDS:
            session[LAST_SEEN_KEY] = now
