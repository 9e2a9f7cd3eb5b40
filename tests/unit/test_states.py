import pytest

from repayments.domain.states import (
    ATTEMPT_TRANSITIONS,
    PAYMENT_TRANSITIONS,
    AttemptStatus,
    IllegalTransition,
    PaymentStatus,
    check_attempt_transition,
    check_payment_transition,
)


@pytest.mark.parametrize(
    "target",
    [
        PaymentStatus.FAILED,
        PaymentStatus.PROCESSING,
        PaymentStatus.CANCELLED,
        PaymentStatus.CREATED,
    ],
)
def test_succeeded_payment_never_regresses(target: PaymentStatus) -> None:
    with pytest.raises(IllegalTransition, match="cannot go from succeeded"):
        check_payment_transition(PaymentStatus.SUCCEEDED, target)


def test_late_success_rescues_failed_payment_and_closed_attempt() -> None:
    assert check_payment_transition("failed", "succeeded") == PaymentStatus.SUCCEEDED
    assert check_attempt_transition("closed", "succeeded") == AttemptStatus.SUCCEEDED
    assert check_attempt_transition("failed", "succeeded") == AttemptStatus.SUCCEEDED


def test_refund_only_from_succeeded() -> None:
    sources = [s for s, targets in PAYMENT_TRANSITIONS.items() if PaymentStatus.REFUNDED in targets]
    assert sources == [PaymentStatus.SUCCEEDED]


def test_unknown_attempt_cannot_be_treated_as_failed_without_query_edge() -> None:
    # Unknown may end in any final state, but a succeeded attempt can go nowhere.
    assert ATTEMPT_TRANSITIONS[AttemptStatus.SUCCEEDED] == frozenset()
    with pytest.raises(IllegalTransition):
        check_attempt_transition("succeeded", "failed")


def test_unknown_status_names_are_rejected() -> None:
    with pytest.raises(IllegalTransition, match="unknown payment status"):
        check_payment_transition("created", "paid")


def test_every_status_has_a_row() -> None:
    assert set(PAYMENT_TRANSITIONS) == set(PaymentStatus)
    assert set(ATTEMPT_TRANSITIONS) == set(AttemptStatus)
