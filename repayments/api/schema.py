"""OpenAPI generation: every operation documents the problem-details errors it can give."""

from __future__ import annotations

from typing import Any

from drf_spectacular.openapi import AutoSchema

from repayments.api.errors import PROBLEM_CONTENT_TYPE
from repayments.api.serializers import ProblemSerializer

ERROR_DESCRIPTIONS = {
    "400": "Invalid input; `errors` lists each field (translated messages).",
    "401": "Not signed in: send `Authorization: Token <token>` (or a session cookie).",
    "403": "Signed in, but not as a borrower.",
    "404": "Not found, or not yours (the API never says which).",
    "409": "A rule refuses it in the current state; `code` says which.",
    "415": "Send JSON.",
    "429": "Too many requests; retry after `Retry-After` seconds.",
}
RETRY_AFTER = {
    "Retry-After": {
        "schema": {"type": "integer"},
        "description": "Seconds to wait before trying again.",
    }
}


class ProblemAutoSchema(AutoSchema):
    """Adds the problem-details responses to each operation's documented ones."""

    def _get_response_bodies(self, direction: Any = "response") -> dict[str, Any]:
        responses: dict[str, Any] = super()._get_response_bodies(direction)
        codes = ["400", "401", "403", "404", "429"]
        if self.method in ("POST", "PUT", "PATCH"):
            codes += ["409", "415"]
        for code in codes:
            if code in responses:
                continue
            response = self._get_response_for_code(
                ProblemSerializer, code, (PROBLEM_CONTENT_TYPE,), direction
            )
            response["description"] = ERROR_DESCRIPTIONS[code]
            if code == "429":
                response["headers"] = RETRY_AFTER
            responses[code] = response
        return responses
