"""Repayment models, split by sub-domain; import from here."""

from repayments.models.audit import AuditChainHead, AuditEntry
from repayments.models.autodebit import DebitStatus, ScheduledDebit
from repayments.models.callbacks import CallbackStatus, InboundCallbackRecord
from repayments.models.channels import ChannelSetting, RiskRules
from repayments.models.disputes import (
    OPEN_DISPUTE_STATUSES,
    Dispute,
    DisputeCategory,
    DisputeMessage,
    DisputeResolution,
    DisputeStatus,
)
from repayments.models.loans import BoundCard, Installment, Loan, LoanStatus
from repayments.models.password_reset import PasswordResetCode
from repayments.models.payments import (
    Allocation,
    Channel,
    DebitBatch,
    EventKind,
    Initiator,
    Payment,
    PaymentAttempt,
    PaymentEvent,
    PaymentPurpose,
)
from repayments.models.products import (
    CREDIT_FUNDED_METHOD_TYPES,
    AmortizationMethod,
    LoanProduct,
    PaymentMethodType,
)
from repayments.models.reconciliation import (
    Discrepancy,
    DiscrepancyKind,
    DiscrepancyStatus,
    ReconciliationRun,
)
from repayments.models.settlement import SettlementQuote, SettlementQuoteLine
from repayments.models.support import (
    LIVE_REFUND_REQUEST_STATUSES,
    CalendarDay,
    CalendarDayKind,
    RefundRequest,
    RefundRequestStatus,
    SupportNote,
)
from repayments.models.users import Role, User

__all__ = [
    "CREDIT_FUNDED_METHOD_TYPES",
    "LIVE_REFUND_REQUEST_STATUSES",
    "OPEN_DISPUTE_STATUSES",
    "Allocation",
    "AmortizationMethod",
    "AuditChainHead",
    "AuditEntry",
    "BoundCard",
    "CalendarDay",
    "CalendarDayKind",
    "CallbackStatus",
    "Channel",
    "ChannelSetting",
    "DebitBatch",
    "DebitStatus",
    "Discrepancy",
    "DiscrepancyKind",
    "DiscrepancyStatus",
    "Dispute",
    "DisputeCategory",
    "DisputeMessage",
    "DisputeResolution",
    "DisputeStatus",
    "EventKind",
    "InboundCallbackRecord",
    "Initiator",
    "Installment",
    "Loan",
    "LoanProduct",
    "LoanStatus",
    "PasswordResetCode",
    "Payment",
    "PaymentAttempt",
    "PaymentEvent",
    "PaymentMethodType",
    "PaymentPurpose",
    "ReconciliationRun",
    "RefundRequest",
    "RefundRequestStatus",
    "RiskRules",
    "Role",
    "ScheduledDebit",
    "SettlementQuote",
    "SettlementQuoteLine",
    "SupportNote",
    "User",
]
