"""WeChat Pay's trade bill: a CSV of back-quoted cells, checked against its hash."""

from __future__ import annotations

import csv
import hashlib
import io
from collections.abc import Mapping
from datetime import date
from typing import Any

from repayments.channels.base import (
    ChannelError,
    ChannelUnavailable,
    SettlementRecord,
)
from repayments.channels.wechatpay.protocol import SETTLEMENT_MALFORMED
from repayments.domain.money import InvalidAmount, parse_amount

BILL_COLUMNS = {
    "channel_trade_no": "微信订单号",
    "out_trade_no": "商户订单号",
    "state": "交易状态",
    "paid": "应结订单金额",
    "refunded": "退款金额",
}
BILL_KINDS = {"SUCCESS": ("payment", "paid"), "REFUND": ("refund", "refunded")}
BILL_SUMMARY_MARK = "总交易单数"  # the summary block after the rows starts here


def check_bill_hash(body: bytes, answer: Mapping[str, Any]) -> None:
    expected = str(answer.get("hash_value") or "")
    if not expected:
        return
    if str(answer.get("hash_type") or "SHA1").upper() != "SHA1":
        raise ChannelUnavailable("malformed_response", f"hash_type {answer.get('hash_type')!r}")
    # SHA1 is WeChat Pay's choice; it guards against truncation, not forgery.
    if hashlib.sha1(body, usedforsecurity=False).hexdigest() != expected.lower():
        raise ChannelUnavailable("settlement_file_hash_mismatch", "download again")


def parse_trade_bill(text: str, day: date) -> list[SettlementRecord]:
    """Parse a trade bill: a header row, rows whose cells start with a backtick, a summary.

    :raises ChannelError: ``settlement_file_malformed``, naming the line.
    """
    reader = csv.reader(io.StringIO(text.lstrip("\ufeff")))
    columns: dict[str, int] | None = None
    width = 0
    records: list[SettlementRecord] = []
    try:
        for fields in reader:
            cells = [cell.strip().removeprefix("`").strip() for cell in fields]
            if not any(cells):
                continue
            if cells[0].startswith(BILL_SUMMARY_MARK):
                break
            if columns is None:
                columns, width = _bill_columns(cells, reader.line_num), len(cells)
                continue
            if len(cells) != width:
                raise _bill_error(reader.line_num, f"{len(cells)} cells, header has {width}")
            records.append(_bill_record(cells, columns, reader.line_num, day))
    except csv.Error as exc:
        raise _bill_error(reader.line_num, str(exc)) from exc
    if columns is None:
        raise _bill_error(1, "no header row")
    return records


def _bill_columns(header: list[str], line: int) -> dict[str, int]:
    missing = [name for name in BILL_COLUMNS.values() if name not in header]
    if missing:
        raise _bill_error(line, f"header lacks {', '.join(missing)}")
    return {key: header.index(name) for key, name in BILL_COLUMNS.items()}


def _bill_record(
    cells: list[str], columns: dict[str, int], line: int, day: date
) -> SettlementRecord:
    state = cells[columns["state"]]
    if state not in BILL_KINDS:
        raise _bill_error(line, f"unknown 交易状态 {state!r}")
    kind, amount_column = BILL_KINDS[state]
    out_trade_no = cells[columns["out_trade_no"]]
    if not out_trade_no:
        raise _bill_error(line, "empty 商户订单号")
    try:
        amount = parse_amount(cells[columns[amount_column]], allow_zero=True)
    except InvalidAmount as exc:
        raise _bill_error(line, f"bad {BILL_COLUMNS[amount_column]}: {exc}") from exc
    return SettlementRecord(
        out_trade_no=out_trade_no,
        channel_trade_no=cells[columns["channel_trade_no"]],
        amount=amount,
        kind=kind,
        settled_on=day,
    )


def _bill_error(line: int, detail: str) -> ChannelError:
    return ChannelError(SETTLEMENT_MALFORMED, f"line {line}: {detail}")
