"""Alipay's daily bill: a zipped CSV in GBK, read into settlement records."""

from __future__ import annotations

import csv
import io
import zipfile
from collections.abc import Mapping
from datetime import datetime

from repayments.channels.base import (
    ChannelError,
    SettlementRecord,
)
from repayments.domain.money import InvalidAmount, parse_amount

SETTLEMENT_MALFORMED = "settlement_file_malformed"
# A daily bill for one merchant is far smaller; anything bigger is not a bill.
MAX_BILL_BYTES = 64 * 1024 * 1024
_BILL_COLUMNS = {
    "channel_trade_no": "支付宝交易号",
    "out_trade_no": "商户订单号",
    "business_type": "业务类型",
    "amount": "订单金额(元)",
    "finished_at": "完成时间",
}
_FULL_WIDTH_PARENTHESES = str.maketrans({"\uff08": "(", "\uff09": ")"})
_BILL_KINDS = {"交易": "payment", "退款": "refund"}


def parse_settlement_file(content: bytes) -> list[SettlementRecord]:
    """Parse a trade bill: Alipay's GBK ``csv.zip``, or a plain CSV (UTF-8 or GBK).

    :raises ChannelError: ``settlement_file_malformed``, naming the line at fault.
    """
    if content[:2] == b"PK":
        return parse_settlement_csv(_detail_csv_from_zip(content))
    for encoding in ("utf-8-sig", "gbk"):
        try:
            return parse_settlement_csv(content.decode(encoding))
        except UnicodeDecodeError:
            continue
    raise ChannelError(SETTLEMENT_MALFORMED, "file is neither UTF-8 nor GBK text")


def _detail_csv_from_zip(content: bytes) -> str:
    """The detail CSV inside Alipay's bill zip (the other member is a summary)."""
    try:
        with zipfile.ZipFile(io.BytesIO(content)) as archive:
            for member in archive.infolist():
                # Member names are GBK without the UTF-8 flag, so they are not
                # reliable; the detail file is recognised by its header instead.
                if member.file_size > MAX_BILL_BYTES or not member.filename.endswith(".csv"):
                    continue
                text = archive.read(member).decode("gbk")
                if _BILL_COLUMNS["channel_trade_no"] in text:
                    return text
    except (zipfile.BadZipFile, UnicodeDecodeError) as exc:
        raise ChannelError(SETTLEMENT_MALFORMED, f"bad bill archive: {exc}") from exc
    raise ChannelError(SETTLEMENT_MALFORMED, "no detail CSV in the bill archive")


def parse_settlement_csv(text: str) -> list[SettlementRecord]:
    """Rows of a trade-bill CSV; ``#`` lines (Alipay's title and totals) are skipped.

    :raises ChannelError: ``settlement_file_malformed``, naming the line at fault.
    """
    records: list[SettlementRecord] = []
    columns: dict[str, int] | None = None
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        # Alipay pads cells with tabs so spreadsheets keep long numbers as text.
        cells = [cell.strip() for cell in next(csv.reader([line]))]
        if columns is None:
            columns = _bill_columns(cells, number)
        else:
            records.append(_bill_record(cells, columns, number))
    if columns is None:
        raise ChannelError(SETTLEMENT_MALFORMED, "no header row")
    return records


def _bill_columns(header: list[str], number: int) -> dict[str, int]:
    # The real file writes the amount title with full-width parentheses.
    names = [cell.translate(_FULL_WIDTH_PARENTHESES) for cell in header]
    missing = [title for title in _BILL_COLUMNS.values() if title not in names]
    if missing:
        raise ChannelError(SETTLEMENT_MALFORMED, f"line {number}: header lacks {missing}")
    return {field: names.index(title) for field, title in _BILL_COLUMNS.items()}


def _bill_record(cells: list[str], columns: Mapping[str, int], number: int) -> SettlementRecord:
    if len(cells) <= max(columns.values()):
        raise ChannelError(SETTLEMENT_MALFORMED, f"line {number}: too few columns")
    business_type = cells[columns["business_type"]]
    kind = _BILL_KINDS.get(business_type)
    if kind is None:
        raise ChannelError(SETTLEMENT_MALFORMED, f"line {number}: business type {business_type!r}")
    amount_text = cells[columns["amount"]]
    if kind == "refund":
        # Refund rows may show the amount as negative; the kind carries the sign.
        amount_text = amount_text.removeprefix("-")
    try:
        amount = parse_amount(amount_text)
        # fromisoformat reads "YYYY-MM-DD HH:MM:SS" several times faster than strptime,
        # which dominates parsing a million-line bill.
        finished = datetime.fromisoformat(cells[columns["finished_at"]])
    except (InvalidAmount, ValueError) as exc:
        raise ChannelError(SETTLEMENT_MALFORMED, f"line {number}: {exc}") from exc
    out_trade_no = cells[columns["out_trade_no"]]
    channel_trade_no = cells[columns["channel_trade_no"]]
    if not out_trade_no or not channel_trade_no:
        raise ChannelError(SETTLEMENT_MALFORMED, f"line {number}: missing trade number")
    return SettlementRecord(
        out_trade_no=out_trade_no,
        channel_trade_no=channel_trade_no,
        amount=amount,
        kind=kind,
        settled_on=finished.date(),
    )
