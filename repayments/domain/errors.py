"""The root of every error the domain raises on purpose."""

from __future__ import annotations


class DomainError(Exception):
    """A business rule refused an operation; ``code`` is stable and machine-readable.

    Interfaces (views, API, admin, commands) map these to translated messages
    and 4xx answers; a ``DomainError`` never means a bug.
    """

    code = "domain_error"

    def __init__(self, message: str = "") -> None:
        super().__init__(message or self.__doc__ or self.code)
        self.message = message or (self.__doc__ or self.code).strip()
