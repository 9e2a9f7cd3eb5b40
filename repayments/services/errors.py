"""Errors the write services raise; each names the rule that refused the operation."""

from __future__ import annotations

from repayments.domain.errors import DomainError


class NotFound(DomainError):
    """The object does not exist or is not yours."""

    code = "not_found"


class DuplicateContract(DomainError):
    """A loan with this contract number already exists."""

    code = "duplicate_contract"


class ProductInactive(DomainError):
    """This loan product is no longer offered."""

    code = "product_inactive"


class LoanNotRepayable(DomainError):
    """This loan is settled: there is nothing left to repay."""

    code = "loan_not_repayable"


class IdempotencyKeyReused(DomainError):
    """This Idempotency-Key was already used for a different request."""

    code = "idempotency_key_reused"


class MethodNotAllowed(DomainError):
    """This loan product does not accept this payment method."""

    code = "method_not_allowed"


class AttemptAlreadyOpen(DomainError):
    """Another payment attempt for this loan is still being processed."""

    code = "attempt_already_open"


class PaymentNotPayable(DomainError):
    """This payment can no longer be paid."""

    code = "payment_not_payable"


class PaymentNotSucceeded(DomainError):
    """Only a succeeded payment can be allocated or refunded."""

    code = "payment_not_succeeded"


class AlreadyAllocated(DomainError):
    """This payment has already been allocated to installments."""

    code = "already_allocated"


class QuoteNotUsable(DomainError):
    """This settlement quote has expired, belongs to another loan, or does not match the amount."""

    code = "quote_not_usable"
