"""Built-in notice texts, used when admins have not written a template for a kind.

Placeholders are filled from the notice's parameters; a missing one is shown
as empty rather than failing the send. SMS texts start with the signature.
"""

from __future__ import annotations

DEFAULT_TEXTS: dict[tuple[str, str], str] = {
    (
        "payment_processing",
        "zh-hans",
    ): "【安心还款】您{account}的车贷{month}还款{amount}已提交{channel}，正在确认，通常5分钟内完成。",
    (
        "payment_processing",
        "en",
    ): "[Anxin Repay] Your car-loan repayment of {amount} ({account}) was sent to {channel} "
    "and is being confirmed, usually within 5 minutes.",
    (
        "payment_succeeded",
        "zh-hans",
    ): "【安心还款】您{account}的车贷{month}还款{amount}已于{when}扣款成功，已入账{installments}。",
    (
        "payment_succeeded",
        "en",
    ): "[Anxin Repay] Your car-loan repayment of {amount} ({account}) succeeded at {when} "
    "and was posted to {installments}.",
    (
        "payment_failed",
        "zh-hans",
    ): "【安心还款】您{account}的车贷{month}还款{amount}未成功：{reason}。您可在安心还款中改用{alternatives}还款。",
    (
        "payment_failed",
        "en",
    ): "[Anxin Repay] Your car-loan repayment of {amount} ({account}) did not go through: "
    "{reason}. You can pay now with {alternatives} in Anxin Repay.",
    (
        "correction",
        "zh-hans",
    ): "【安心还款】更正：您{account}的车贷{month}还款{amount}已于{when}扣款成功，此前失败通知有误，请以本条为准。",
    (
        "correction",
        "en",
    ): "[Anxin Repay] Correction: your car-loan repayment of {amount} ({account}) succeeded "
    "at {when}. The earlier failure message was wrong; please rely on this one.",
    (
        "due_reminder",
        "zh-hans",
    ): "【安心还款】您的车贷（合同{loan}）第{number}期{amount}将于{due_date}到期，请确保尾号{tail}的银行卡余额充足。",
    (
        "due_reminder",
        "en",
    ): "[Anxin Repay] Installment {number} of your car loan ({loan}), {amount}, is due on "
    "{due_date}. Please keep enough in the card ending {tail}.",
    (
        "overdue",
        "zh-hans",
    ): "【安心还款】您的车贷（合同{loan}）第{number}期已逾期，应还{amount}，请尽快还款以免产生更多罚息。",
    (
        "overdue",
        "en",
    ): "[Anxin Repay] Installment {number} of your car loan ({loan}) is overdue: {amount}. "
    "Please pay soon to avoid further penalty interest.",
    (
        "quote_issued",
        "zh-hans",
    ): "【安心还款】您的车贷（合同{loan}）提前结清金额为{amount}，有效期至{valid_until}。",
    (
        "quote_issued",
        "en",
    ): "[Anxin Repay] Early settlement of your car loan ({loan}): {amount}, valid until "
    "{valid_until}.",
    (
        "dispute_update",
        "zh-hans",
    ): "【安心还款】您的还款问题（编号{case}）有新进展：{status}。",
    ("dispute_update", "en"): "[Anxin Repay] Your repayment case {case} was updated: {status}.",
    # Sent straight through the SMS provider, never through the outbox or the in-app
    # inbox: the code must not be stored in clear, and it goes out even in quiet hours.
    (
        "verification_code",
        "zh-hans",
    ): "【安心还款】您正在重置登录密码，验证码{code}，{minutes}分钟内有效。如非本人操作，请忽略本短信，切勿告诉他人。",
    (
        "verification_code",
        "en",
    ): "[Anxin Repay] Your password reset code is {code}, valid for {minutes} minutes. "
    "If you did not ask for it, ignore this message and never share the code.",
}
