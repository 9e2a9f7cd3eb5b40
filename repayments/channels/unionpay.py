"""UnionPay ACP (全渠道) bank-card withholding (代收), behind :class:`PaymentChannel`.

The borrower bound a card earlier; the binding left a token, and only that token
(``tokenPayData={token=...}``) is ever sent, never a card number (``accNo``).

Wire format, ACP 5.1.0 style:

* requests and answers are ``application/x-www-form-urlencoded`` key=value fields;
* ``signature`` is SHA256withRSA (``signMethod=01``), base64, over the lowercase
  hex SHA-256 digest of the canonical string (fields sorted by key, ``k=v``
  joined by ``&``, ``signature`` left out). :func:`canonical_string`,
  :func:`sign_fields`, :func:`verify_fields`, :func:`parse_form` and
  :func:`encode_form` are public so that the sandbox speaks exactly this dialect;
* amounts are integer fen (``txnAmt``), times ``yyyyMMddHHmmss`` in Beijing time.

Many withholdings can go as one batch (批量代收: txnType 21, subtype 02, to
``batchTrans.do``; results by 批量查询, txnType 22): one signature and one exchange
for up to :data:`MAX_BATCH_LINES` debits, each line still an order of its own that
can be queried, cancelled and refunded alone. The batch fields (``batchNo``,
``totalQty``, ``totalAmt``, a deflated base64 ``fileContent``) follow ACP 5.1.0 as
SDK demos show it; the file layout inside is this adapter's and the sandbox's,
and must be matched to UnionPay's batch file specification before production.

Result codes are mapped so that only an answer that *certainly* moved no money
becomes ``FAILED``: every code we do not recognise is ``UNKNOWN`` and gets queried,
because treating a real debit as failed would let the borrower be charged twice.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
import threading
import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta
from decimal import Decimal
from functools import cached_property
from urllib.parse import parse_qsl, urlencode
from zoneinfo import ZoneInfo

import requests
from cryptography.hazmat.primitives.asymmetric import rsa
from django.conf import settings

from repayments.channels.base import (
    CallbackAck,
    CallbackRejected,
    CallbackUnparseable,
    ChannelDeclined,
    ChannelError,
    ChannelOutcomeUnknown,
    ChannelUnavailable,
    DebitBatchLine,
    InboundCallback,
    NextAction,
    OrderCreated,
    OrderRequest,
    RefundResult,
    SettlementRecord,
    TradeResult,
)
from repayments.channels.crypto import load_private_key, load_public_key, rsa2_sign, rsa2_verify
from repayments.channels.transport import request_never_sent
from repayments.domain.states import AttemptStatus

SHANGHAI = ZoneInfo("Asia/Shanghai")

BACK_TRANS_PATH = "/gateway/api/backTransReq.do"
QUERY_PATH = "/gateway/api/queryTrans.do"
FILE_TRANSFER_PATH = "/gateway/api/fileTransfer.do"
BATCH_TRANS_PATH = "/gateway/api/batchTrans.do"

TXN_WITHHOLD = "11"  # 代收
TXN_QUERY = "00"
TXN_CANCEL = "31"  # 撤销
TXN_REFUND = "04"  # 退货
TXN_FILE = "76"  # 文件传输 (settlement file download)
TXN_BATCH = "21"  # 批量交易
TXN_BATCH_QUERY = "22"  # 批量查询
SUB_BATCH_WITHHOLD = "02"  # 批量代收

# A batch number is four digits, unique per merchant and day (with its txnTime).
MAX_BATCH_NO = 9999
MAX_BATCH_LINES = 1000
# Decompressed batch files are bounded: a small body must not inflate without limit.
MAX_BATCH_FILE_BYTES = 4 * 1024 * 1024

RESP_SUCCESS = "00"
# 03 communication time-out, 04 state not yet known, 05 accepted and processing:
# UnionPay has the order and will settle it; the result comes by backUrl or query.
PROCESSING_CODES = frozenset({"03", "04", "05"})
RESP_ORDER_NOT_FOUND = "34"  # 查无此交易 (on a query)
RESP_ORIGINAL_STATE_CHANGED = "35"  # 原交易不存在或状态不正确 (on a cancel)
RESP_ALREADY_REVERSED = "45"  # 已被成功退货或已被成功撤销
RESP_FILE_NOT_FOUND = "98"

# Definite declines: UnionPay or the issuer refused before any money moved.
# Meanings from the ACP 5.x response-code appendix as third-party SDKs reproduce
# it (ranges: 01-09 system, 10-29 message format, 30-59 merchant business,
# 60-89 cardholder/issuer); not yet checked against open.unionpay.com.
# Deliberately absent, so they stay UNKNOWN and get queried: 01/02/06 (system
# errors), 12 (duplicate order: the first one may have debited), 42/74/75 (the
# debit *succeeded*, the bookkeeping after it did not) and anything unlisted.
DECLINES: Mapping[str, str] = {
    "10": "message format rejected by UnionPay",
    "11": "UnionPay could not verify the merchant signature",
    "13": "a required field is missing",
    "30": "not approved; try another card",
    "31": "merchant status does not allow this transaction",
    "32": "merchant not permitted for this transaction",
    "33": "amount over the limit",
    "38": "blocked by UnionPay risk control",
    "39": "outside UnionPay's acceptance hours",
    "40": "card binding (token) check failed",
    "60": "declined by the issuing bank",
    "61": "invalid card",
    "62": "the issuing bank does not accept this merchant",
    "63": "card status does not allow debits (frozen, lost or closed)",
    "64": "insufficient funds",
    "65": "wrong PIN, expiry date or CVN2",
    "66": "cardholder identity or phone number does not match",
    "67": "too many PIN attempts",
    "68": "the card does not support this service",
    "73": "card expired",
    "77": "card not enabled for authenticated payment",
    "78": "the issuing bank restricted this card",
    "80": "card token expired",
}

ORDER_NOT_FOUND = "ORDER_NOT_FOUND"
# A withholding request can still be in flight inside UnionPay this long after we
# sent it; "not found" only proves it never arrived once this has passed.
NOT_FOUND_GRACE = timedelta(minutes=10)

# A notification without these cannot be applied: the amount must be checked
# against the attempt before any success is believed.
_CALLBACK_REQUIRED = ("orderId", "respCode", "txnAmt")
_TOKEN = re.compile(r"[A-Za-z0-9._:-]{1,128}")  # no & = { }: they would split tokenPayData
_FEN = re.compile(r"[0-9]{1,15}")
_BATCH_NO = re.compile(r"[0-9]{4}")
_MAX_FORM_FIELDS = 200


# --- Message format (shared with the sandbox) -----------------------------------


def canonical_string(fields: Mapping[str, str]) -> str:
    """Fields sorted by key as ``k=v`` joined by ``&``, without ``signature``."""
    return "&".join(f"{key}={fields[key]}" for key in sorted(fields) if key != "signature")


def _signed_bytes(fields: Mapping[str, str]) -> bytes:
    # ACP 5.1.0 signs the hex digest text, not the canonical string itself.
    return hashlib.sha256(canonical_string(fields).encode("utf-8")).hexdigest().encode("ascii")


def sign_fields(fields: Mapping[str, str], private_key: rsa.RSAPrivateKey) -> dict[str, str]:
    """Return a copy of ``fields`` with ``signature`` set.

    Empty values are dropped first, as the ACP SDKs do, so that sender and
    receiver compute the canonical string over the same fields.
    """
    signed = {key: value for key, value in fields.items() if key != "signature" and value != ""}
    signed["signature"] = rsa2_sign(private_key, _signed_bytes(signed))
    return signed


def verify_fields(fields: Mapping[str, str], public_key: rsa.RSAPublicKey) -> bool:
    """True when ``signature`` is valid for all the other fields under ``public_key``."""
    signature = fields.get("signature", "")
    return bool(signature) and rsa2_verify(public_key, _signed_bytes(fields), signature)


def encode_form(fields: Mapping[str, str]) -> str:
    return urlencode(dict(fields))


def parse_form(body: bytes | str) -> dict[str, str]:
    """Decode a form body strictly.

    :raises ValueError: for bytes that are not UTF-8, pieces without ``=`` and
        repeated keys (a repeated key would let a tamperer choose which value the
        signature check and the business logic each read).
    """
    text = body.decode("utf-8") if isinstance(body, bytes) else body
    pairs = parse_qsl(
        text,
        keep_blank_values=True,
        strict_parsing=bool(text),
        encoding="utf-8",
        errors="strict",
        max_num_fields=_MAX_FORM_FIELDS,
    )
    fields = dict(pairs)
    if len(fields) != len(pairs):
        raise ValueError("a form field is repeated")
    return fields


def encode_batch_file(rows: Sequence[Sequence[str]]) -> str:
    """``|``-separated rows, one per line, deflated and base64-encoded (``fileContent``)."""
    text = "".join("|".join(row) + "\n" for row in rows)
    return base64.b64encode(zlib.compress(text.encode("utf-8"))).decode("ascii")


def decode_batch_file(content: str) -> list[list[str]]:
    """The rows of an :func:`encode_batch_file` text.

    :raises ValueError: for bad base64 or deflate data, a file larger than
        :data:`MAX_BATCH_FILE_BYTES` once inflated, or text that is not UTF-8.
    """
    try:
        packed = base64.b64decode(content, validate=True)
        inflater = zlib.decompressobj()
        raw = inflater.decompress(packed, MAX_BATCH_FILE_BYTES)
    except (binascii.Error, zlib.error) as exc:
        raise ValueError(f"fileContent: {exc}") from exc
    if inflater.unconsumed_tail or not inflater.eof:
        raise ValueError("fileContent is truncated or inflates beyond the limit")
    if inflater.unused_data:
        # A second stream glued on would go unread: its lines would look missing.
        raise ValueError("fileContent has data after the compressed file")
    return [line.split("|") for line in raw.decode("utf-8").splitlines() if line]


# --- Values -------------------------------------------------------------------------


def yuan_to_fen(amount: Decimal) -> int:
    """Yuan to whole fen; :raises ValueError: for sub-fen, zero or negative amounts."""
    fen = amount * 100
    if not fen.is_finite() or fen != fen.to_integral_value() or fen <= 0:
        raise ValueError(f"{amount} is not a positive whole number of fen")
    return int(fen)


def fen_to_yuan(text: str) -> Decimal:
    """``"12345"`` -> ``Decimal("123.45")``; :raises ValueError: unless plain ASCII digits."""
    if not _FEN.fullmatch(text):
        raise ValueError(f"txnAmt {text!r} is not an integer number of fen")
    return Decimal(int(text)).scaleb(-2)


def txn_time(moment: datetime) -> str:
    return moment.astimezone(SHANGHAI).strftime("%Y%m%d%H%M%S")


def _parse_txn_time(text: str) -> datetime:
    if not re.fullmatch(r"[0-9]{14}", text):
        raise ValueError(f"txnTime {text!r} is not yyyyMMddHHmmss")
    return datetime.strptime(text, "%Y%m%d%H%M%S").replace(tzinfo=SHANGHAI)


def _accepted_at(fields: Mapping[str, str]) -> datetime | None:
    """When UnionPay took the debit: ``traceTime`` (MMDDhhmmss) or else ``txnTime``.

    ``traceTime`` carries no year, so it borrows the year of ``txnTime`` and moves
    to the next one when the order was sent just before New Year.
    """
    if "txnTime" not in fields:
        return None
    sent = _parse_txn_time(fields["txnTime"])
    trace = fields.get("traceTime", "")
    try:
        traced = datetime.strptime(f"{sent.year}{trace}", "%Y%m%d%H%M%S")
    except ValueError:
        return sent  # traceTime is a nicety; txnTime alone is close enough
    traced = traced.replace(tzinfo=SHANGHAI)
    if traced < sent - timedelta(days=1):
        try:
            traced = traced.replace(year=sent.year + 1)
        except ValueError:  # 29 February
            return sent
    return traced


def classify(code: str) -> tuple[AttemptStatus, str, str]:
    """Status, failure code and message for an ACP transaction result code.

    Used for ``respCode`` of a withholding answer or notification and for
    ``origRespCode`` of a query.
    """
    if code == RESP_SUCCESS:
        return AttemptStatus.SUCCEEDED, "", ""
    if code in PROCESSING_CODES:
        return AttemptStatus.PENDING, "", ""
    if code in DECLINES:
        return AttemptStatus.FAILED, code, DECLINES[code]
    # Never FAILED: an unknown code may hide a debit (see DECLINES).
    return AttemptStatus.UNKNOWN, code, "unrecognised UnionPay result; query to settle it"


def _trade_result(out_trade_no: str, code: str, fields: Mapping[str, str]) -> TradeResult:
    """:raises ValueError: when ``txnAmt`` or ``txnTime`` is malformed."""
    status, failure_code, failure_message = classify(code)
    amount = fields.get("txnAmt")
    return TradeResult(
        out_trade_no=out_trade_no,
        status=status,
        channel_trade_no=fields.get("queryId", ""),
        amount=fen_to_yuan(amount) if amount is not None else None,
        accepted_at=_accepted_at(fields) if status is AttemptStatus.SUCCEEDED else None,
        failure_code=failure_code,
        failure_message=failure_message,
        raw=dict(fields),
    )


def _refund_result(refund_no: str, answer: Mapping[str, str]) -> RefundResult:
    """:raises ChannelOutcomeUnknown: unless the answer settles the refund either way."""
    code = answer.get("respCode", "")
    if code == RESP_SUCCESS:
        return RefundResult(refund_no, succeeded=True, channel_refund_no=answer.get("queryId", ""))
    # 35/36/45: no such original, does not match it, or already fully reversed:
    # refused outright, so no money went back by this request.
    if code in DECLINES or code in {RESP_ORIGINAL_STATE_CHANGED, "36", RESP_ALREADY_REVERSED}:
        return RefundResult(refund_no, succeeded=False, failure_code=code)
    # Processing, duplicate refund number, system errors: query before retrying.
    raise ChannelOutcomeUnknown("refund_outcome_unknown", f"refund answered respCode {code}")


def _debit_terms(card_token: str, amount: Decimal) -> tuple[str, int]:
    """The token and fen of a withholding, checked before anything is sent.

    :raises ChannelDeclined: without a usable card token or amount.
    """
    if not card_token:
        raise ChannelDeclined("no_card_token", "withholding needs a bound card token")
    if not _TOKEN.fullmatch(card_token):
        raise ChannelDeclined("invalid_card_token", "card token has unexpected characters")
    try:
        return card_token, yuan_to_fen(amount)
    except ValueError as exc:
        raise ChannelDeclined("invalid_amount", str(exc)) from exc


# --- Adapter -----------------------------------------------------------------------


@dataclass(frozen=True)
class UnionPayConfig:
    mer_id: str
    api_url: str
    merchant_private_key_path: str
    platform_public_key_path: str
    timeout: float

    @classmethod
    def from_settings(cls) -> UnionPayConfig:
        return cls(
            mer_id=settings.UNIONPAY_MER_ID,
            api_url=settings.UNIONPAY_API_URL.rstrip("/"),
            merchant_private_key_path=settings.UNIONPAY_PRIVATE_KEY_PATH,
            platform_public_key_path=settings.UNIONPAY_PUBLIC_KEY_PATH,
            timeout=float(settings.CHANNEL_TIMEOUT_SECONDS),
        )


class UnionPayChannel:
    """Bank-card withholding through UnionPay ACP; see the module docstring."""

    name = "unionpay"
    max_batch_lines = MAX_BATCH_LINES

    def __init__(
        self, config: UnionPayConfig, *, clock: Callable[[], datetime] | None = None
    ) -> None:
        self._config = config
        self._clock = clock or (lambda: datetime.now(SHANGHAI))
        # One keep-alive session per thread: a fresh TCP connection per call cost
        # more than the call itself. A POST is never resent by the pool (requests
        # retries nothing by default), so a dropped connection still reads as unknown.
        self._local = threading.local()

    def _session(self) -> requests.Session:
        session: requests.Session | None = getattr(self._local, "session", None)
        if session is None:
            session = self._local.session = requests.Session()
        return session

    # Keys load on first use so that building the adapter never fails; a missing
    # key then surfaces before anything is sent, as "unavailable".
    @cached_property
    def _private_key(self) -> rsa.RSAPrivateKey:
        try:
            return load_private_key(self._config.merchant_private_key_path)
        except (OSError, ValueError) as exc:
            raise ChannelUnavailable("merchant_key_unavailable", str(exc)) from exc

    @cached_property
    def _public_key(self) -> rsa.RSAPublicKey:
        try:
            return load_public_key(self._config.platform_public_key_path)
        except (OSError, ValueError) as exc:
            raise ChannelUnavailable("platform_key_unavailable", str(exc)) from exc

    def _common(self, txn_type: str, txn_sub_type: str) -> dict[str, str]:
        return {
            "version": "5.1.0",
            "encoding": "UTF-8",
            "signMethod": "01",
            "txnType": txn_type,
            "txnSubType": txn_sub_type,
            "bizType": "000501",
            "accessType": "0",
            "channelType": "07",
            "merId": self._config.mer_id,
        }

    def _exchange(
        self, path: str, fields: dict[str, str], *, moves_money: bool, order_id: str | None
    ) -> dict[str, str]:
        """POST signed ``fields`` and return the verified answer.

        Failures are classified for the caller: when the call could move money
        (withhold, cancel, refund) anything after the request may have left is
        :class:`ChannelOutcomeUnknown`; for queries and files nothing can have
        moved, so it is :class:`ChannelUnavailable`.
        """
        signed = sign_fields(fields, self._private_key)
        unusable = ChannelOutcomeUnknown if moves_money else ChannelUnavailable
        try:
            response = self._session().post(
                self._config.api_url + path, data=signed, timeout=self._config.timeout
            )
        except requests.RequestException as exc:
            if not moves_money or request_never_sent(exc):
                raise ChannelUnavailable("unreachable", str(exc)) from exc
            raise ChannelOutcomeUnknown("no_answer", str(exc)) from exc
        if response.status_code == 503:
            # 503 Service Unavailable: the gateway refused before processing
            # (maintenance, overload), so nothing happened and another channel is safe.
            raise ChannelUnavailable("service_unavailable", "HTTP 503")
        if response.status_code != 200:
            # A proxy's 502 can follow a debit that went through: not "unavailable".
            raise unusable("http_status", f"HTTP {response.status_code}")
        try:
            answer = parse_form(response.content)
        except ValueError as exc:
            raise unusable("answer_unparseable", str(exc)) from exc
        if not verify_fields(answer, self._public_key):
            raise unusable("bad_answer_signature", f"{path} answer failed verification")
        if answer.get("merId", self._config.mer_id) != self._config.mer_id or (
            order_id is not None and answer.get("orderId", order_id) != order_id
        ):
            raise unusable("answer_mismatch", "signed answer is for another merchant or order")
        return answer

    def create_order(self, request: OrderRequest) -> OrderCreated:
        """Debit the bound card (txnType 11) and report what UnionPay answered.

        A synchronous ``00`` on a back-end debit only means "accepted" (UnionPay's
        own demo code: wait for the notification), so it is PENDING: booking it as
        paid would leave a later decline ignored and the installment wrongly
        settled. ``03``/``04``/``05`` are PENDING too. The result arrives at
        ``backUrl``, and the poller queries the order if it never does.

        :raises ChannelDeclined: without a usable card token or amount (nothing sent).
        :raises ChannelOutcomeUnknown: when the request left and no trustworthy
            answer came back; the order must then be queried.
        """
        token, fen = _debit_terms(request.card_token, request.amount)
        fields = self._common(TXN_WITHHOLD, "00") | {
            "orderId": request.out_trade_no,
            "txnTime": txn_time(request.placed_at or self._clock()),
            "txnAmt": str(fen),
            "currencyCode": "156",
            "tokenPayData": f"{{token={token}}}",
            "backUrl": request.notify_url,
        }
        answer = self._exchange(
            BACK_TRANS_PATH, fields, moves_money=True, order_id=request.out_trade_no
        )
        try:
            result = _trade_result(request.out_trade_no, answer["respCode"], answer)
        except (KeyError, ValueError) as exc:
            raise ChannelOutcomeUnknown("answer_unparseable", str(exc)) from exc
        if result.status is AttemptStatus.SUCCEEDED:
            result = replace(result, status=AttemptStatus.PENDING, accepted_at=None)
        return OrderCreated(result=result, next_action=NextAction("none"))

    def query(self, out_trade_no: str, *, placed_at: datetime | None = None) -> TradeResult:
        """Ask UnionPay for the original withholding's outcome (``origRespCode``).

        ACP finds the original by ``orderId`` *and* its ``txnTime``. The channel
        interface only passes the order number, so callers that know when the
        order was placed should pass ``placed_at``; otherwise the query time is
        sent, and a "not found" stays PENDING (see :meth:`_not_found`).

        :raises ChannelUnavailable: when no usable, verified answer came back.
        """
        fields = self._common(TXN_QUERY, "00") | {
            "orderId": out_trade_no,
            "txnTime": txn_time(placed_at or self._clock()),
        }
        answer = self._exchange(QUERY_PATH, fields, moves_money=False, order_id=out_trade_no)
        code = answer.get("respCode", "")
        if code == RESP_ORDER_NOT_FOUND:
            return self._not_found(out_trade_no, placed_at, answer)
        if code != RESP_SUCCESS:
            # The query itself failed (busy, too frequent...): it says nothing
            # about the order, so ask again later.
            raise ChannelUnavailable("query_failed", f"respCode {code}: {answer.get('respMsg')}")
        try:
            return _trade_result(out_trade_no, answer["origRespCode"], answer)
        except (KeyError, ValueError) as exc:
            raise ChannelUnavailable("answer_unparseable", str(exc)) from exc

    def _not_found(
        self, out_trade_no: str, placed_at: datetime | None, answer: Mapping[str, str]
    ) -> TradeResult:
        """Map "no such order" (respCode 34).

        Within :data:`NOT_FOUND_GRACE` of sending, the request may still be on
        its way, so the order is PENDING. After it, UnionPay never received the
        order: FAILED, and a retry cannot double-charge. Without ``placed_at``
        the age is unknown and FAILED would be a guess, so it stays PENDING.
        """
        old_enough = placed_at is not None and self._clock() - placed_at >= NOT_FOUND_GRACE
        return TradeResult(
            out_trade_no=out_trade_no,
            status=AttemptStatus.FAILED if old_enough else AttemptStatus.PENDING,
            failure_code=ORDER_NOT_FOUND,
            failure_message="UnionPay has no record of this order",
            raw=dict(answer),
        )

    def submit_debit_batch(
        self, *, batch_no: str, placed_at: datetime, lines: Sequence[DebitBatchLine]
    ) -> list[TradeResult | ChannelError]:
        """Send many withholdings as one 批量代收 batch (txnType 21, subtype 02).

        The file holds ``orderId|txnAmt|token`` per line, and ``totalQty`` and
        ``totalAmt`` repeat its totals so that UnionPay can refuse a damaged file.
        An accepted batch (``00``, or ``03``-``05``) leaves every line PENDING:
        each line's result comes from the batch query (or its own order query).
        A line with an unusable token or amount is declined here and never sent.
        """
        if not _BATCH_NO.fullmatch(batch_no) or not 0 < int(batch_no) <= MAX_BATCH_NO:
            raise ValueError(f"batch number {batch_no!r} is not 0001-9999")
        if len(lines) > MAX_BATCH_LINES:
            raise ValueError(f"{len(lines)} lines; a batch takes {MAX_BATCH_LINES} at most")
        answers: list[TradeResult | ChannelError] = []
        rows: list[tuple[str, str, str]] = []
        for line in lines:
            try:
                token, fen = _debit_terms(line.card_token, line.amount)
            except ChannelDeclined as exc:
                answers.append(exc)
            else:
                rows.append((line.out_trade_no, str(fen), token))
                answers.append(TradeResult(line.out_trade_no, AttemptStatus.PENDING))
        if not rows:
            return answers
        fields = self._common(TXN_BATCH, SUB_BATCH_WITHHOLD) | {
            "batchNo": batch_no,
            "txnTime": txn_time(placed_at),
            "totalQty": str(len(rows)),
            "totalAmt": str(sum(int(fen) for _, fen, _ in rows)),
            "fileContent": encode_batch_file(rows),
        }
        try:
            answer = self._exchange(BATCH_TRANS_PATH, fields, moves_money=True, order_id=None)
            code = answer.get("respCode", "")
            if answer.get("batchNo", batch_no) != batch_no:
                raise ChannelOutcomeUnknown("answer_mismatch", "signed answer is for another batch")
        except ChannelError as exc:
            refused: ChannelError = exc
        else:
            if code == RESP_SUCCESS or code in PROCESSING_CODES:
                return answers
            status, failure_code, message = classify(code)
            refused = (
                ChannelDeclined(failure_code, f"batch refused: {message}")
                if status is AttemptStatus.FAILED
                else ChannelOutcomeUnknown(failure_code, message)
            )
        # The batch as a whole was refused, not reached or not answered: so is each line sent.
        return [refused if isinstance(answer, TradeResult) else answer for answer in answers]

    def query_debit_batch(
        self,
        *,
        batch_no: str,
        placed_at: datetime,
        out_trade_nos: Sequence[str],
        sent_at: datetime | None = None,
    ) -> dict[str, TradeResult]:
        """Read a batch's result file (批量查询, txnType 22) for the named lines.

        Lines come back as ``orderId|txnAmt|origRespCode|queryId|traceTime``. While
        the batch is processing every line is PENDING. A line missing from the file
        of a batch UnionPay holds arrived with it: it is asked by its own order
        look-up, and stays PENDING unless that look-up has a result (see
        :meth:`_line_left_out`). A
        batch UnionPay does not know is read like an order not found (see
        :meth:`_not_found`), its grace counted from ``sent_at`` (when the file left;
        ``placed_at``, its ``txnTime``, can be earlier): PENDING at first, FAILED
        once it cannot arrive.

        :raises ChannelUnavailable: when the query fails or its file is unusable.
        """
        fields = self._common(TXN_BATCH_QUERY, SUB_BATCH_WITHHOLD) | {
            "batchNo": batch_no,
            "txnTime": txn_time(placed_at),
        }
        answer = self._exchange(BATCH_TRANS_PATH, fields, moves_money=False, order_id=None)
        code = answer.get("respCode", "")
        if answer.get("batchNo", batch_no) != batch_no:
            raise ChannelUnavailable("answer_mismatch", "signed answer is for another batch")
        if code in PROCESSING_CODES:
            return {
                no: TradeResult(no, AttemptStatus.PENDING, raw=dict(answer)) for no in out_trade_nos
            }
        if code == RESP_ORDER_NOT_FOUND:
            since = max(placed_at, sent_at or placed_at)
            return {no: self._not_found(no, since, answer) for no in out_trade_nos}
        if code != RESP_SUCCESS:
            raise ChannelUnavailable("query_failed", f"respCode {code}: {answer.get('respMsg')}")
        found: dict[str, TradeResult] = {}
        try:
            for row in decode_batch_file(answer.get("fileContent", "")):
                order_id, fen, orig_code, query_id, trace_time = row
                line = {"txnAmt": fen, "queryId": query_id, "txnTime": fields["txnTime"]}
                if trace_time:
                    line["traceTime"] = trace_time
                found[order_id] = _trade_result(order_id, orig_code, line)
        except ValueError as exc:
            raise ChannelUnavailable("answer_unparseable", str(exc)) from exc
        return {no: found.get(no) or self._line_left_out(no, placed_at) for no in out_trade_nos}

    def _line_left_out(self, out_trade_no: str, placed_at: datetime) -> TradeResult:
        """A line a held batch's result file does not list: it arrived with the batch, so
        it is never failed for being absent. Its own order look-up may know it (then its
        answer counts); "not found" or no answer leaves it PENDING, asked again later."""
        try:
            own = self.query(out_trade_no, placed_at=placed_at)
        except ChannelError:
            own = None
        if own is None or own.failure_code == ORDER_NOT_FOUND:
            return TradeResult(out_trade_no, AttemptStatus.PENDING)
        return own

    def close(self, out_trade_no: str, *, placed_at: datetime | None = None) -> None:
        """Stop an unsettled withholding with a cancel (txnType 31).

        ACP has no "close": 撤销 reverses a same-day debit, which for a settled
        order would be a refund in disguise. So the order is queried first and a
        settled one is refused; a failed or never-received one needs nothing.

        :raises ChannelDeclined: ``already_paid`` when the debit settled.
        :raises ChannelUnavailable: when UnionPay does not know the order yet.
        :raises ChannelOutcomeUnknown: when the cancel's outcome is not known.
        """
        current = self.query(out_trade_no, placed_at=placed_at)
        if current.status is AttemptStatus.SUCCEEDED:
            raise ChannelDeclined("already_paid", "the debit settled; refund it instead")
        if current.status in (AttemptStatus.FAILED, AttemptStatus.CLOSED):
            return
        if not current.channel_trade_no:
            raise ChannelUnavailable("not_cancellable_yet", "UnionPay has no record of it yet")
        fields = self._common(TXN_CANCEL, "00") | {
            "orderId": f"{out_trade_no}C",  # a cancel is an order of its own
            "txnTime": txn_time(self._clock()),
            "txnAmt": str(yuan_to_fen(current.amount)) if current.amount else "",
            "currencyCode": "156",
            "origQryId": current.channel_trade_no,
        }
        answer = self._exchange(
            BACK_TRANS_PATH, fields, moves_money=True, order_id=f"{out_trade_no}C"
        )
        self._check_cancel(out_trade_no, answer.get("respCode", ""), placed_at)

    def _check_cancel(self, out_trade_no: str, code: str, placed_at: datetime | None) -> None:
        if code in (RESP_SUCCESS, RESP_ALREADY_REVERSED):
            return  # cancelled now, or by an earlier try
        if code == RESP_ORIGINAL_STATE_CHANGED:
            # The original moved on between our query and the cancel; look
            # again rather than guess whether it settled or failed.
            after = self.query(out_trade_no, placed_at=placed_at)
            if after.status is AttemptStatus.SUCCEEDED:
                raise ChannelDeclined("already_paid", "the debit settled before the cancel")
            if after.status in (AttemptStatus.FAILED, AttemptStatus.CLOSED):
                return
        if code in DECLINES:
            raise ChannelDeclined(code, f"cancel refused: {DECLINES[code]}")
        raise ChannelOutcomeUnknown("close_outcome_unknown", f"cancel answered respCode {code}")

    def refund(
        self,
        *,
        out_trade_no: str,
        refund_no: str,
        amount: Decimal,
        reason: str,
        placed_at: datetime | None = None,
    ) -> RefundResult:
        """Refund (退货, txnType 04) part or all of a settled debit.

        ACP refunds reference the original by its ``queryId``, so the original
        is queried first (found by number and ``placed_at``, its ``txnTime``);
        ``refund_no`` is the refund's own ``orderId``.

        :raises ChannelDeclined: when the original is not settled or the amount
            is not refundable (nothing sent).
        :raises ChannelOutcomeUnknown: when the refund may or may not have happened.
        """
        original = self.query(out_trade_no, placed_at=placed_at)
        if original.status is not AttemptStatus.SUCCEEDED or not original.channel_trade_no:
            raise ChannelDeclined("not_paid", f"original is {original.status}")
        try:
            fen = yuan_to_fen(amount)
        except ValueError as exc:
            raise ChannelDeclined("invalid_amount", str(exc)) from exc
        if original.amount is not None and amount > original.amount:
            raise ChannelDeclined("refund_exceeds_payment", f"{amount} > {original.amount}")
        fields = self._common(TXN_REFUND, "00") | {
            "orderId": refund_no,
            "txnTime": txn_time(self._clock()),
            "txnAmt": str(fen),
            "currencyCode": "156",
            "origQryId": original.channel_trade_no,
            # Echoed back inside signed messages: keep out the separators that
            # could make the canonical string split differently.
            "reqReserved": re.sub(r"[&={}]", " ", reason)[:100],
        }
        answer = self._exchange(BACK_TRANS_PATH, fields, moves_money=True, order_id=refund_no)
        return _refund_result(refund_no, answer)

    def parse_callback(self, callback: InboundCallback, *, now: datetime) -> TradeResult:
        """Verify and read a backUrl notification of a withholding result.

        :raises CallbackRejected: not a form, bad or missing signature, or not
            for our merchant: kept for audit, never applied.
        :raises CallbackUnparseable: verified but fields missing, renamed or
            malformed: quarantined for replay after a fix.
        """
        # ACP notifications carry no timestamp to bound replays; each orderId has
        # one final result and results are applied idempotently, so a replay of a
        # genuine notification changes nothing.
        del now
        try:
            fields = parse_form(callback.body)
        except ValueError as exc:
            raise CallbackRejected(f"body is not a form: {exc}") from exc
        if not verify_fields(fields, self._public_key):
            raise CallbackRejected("signature missing or invalid")
        if fields.get("merId") != self._config.mer_id:
            raise CallbackRejected(f"notification for merchant {fields.get('merId')!r}")
        if fields.get("txnType", TXN_WITHHOLD) != TXN_WITHHOLD:
            raise CallbackUnparseable(f"notification for txnType {fields['txnType']!r}")
        missing = [key for key in _CALLBACK_REQUIRED if key not in fields]
        if missing:
            raise CallbackUnparseable(f"notification lacks {', '.join(missing)}")
        try:
            return _trade_result(fields["orderId"], fields["respCode"], fields)
        except ValueError as exc:
            raise CallbackUnparseable(str(exc)) from exc

    def callback_ack(self) -> CallbackAck:
        """HTTP 200 stops UnionPay resending (body believed to be ignored)."""
        return CallbackAck(status=200, body=b"ok", content_type="text/plain")

    def fetch_settlement_file(self, day: date) -> list[SettlementRecord]:
        """Download and read the settlement file (对账文件) for ``day``.

        :raises ChannelUnavailable: when the file is not there (yet) or the
            answer is unusable; an absent file is not "nothing settled".
        :raises ChannelError: ``settlement_file_malformed`` naming the bad line.
        """
        fields = self._common(TXN_FILE, "01") | {
            "txnTime": txn_time(self._clock()),
            "settleDate": f"{day:%m%d}",
            "fileType": "00",
        }
        answer = self._exchange(FILE_TRANSFER_PATH, fields, moves_money=False, order_id=None)
        code = answer.get("respCode", "")
        if code != RESP_SUCCESS:
            reason = "not ready" if code == RESP_FILE_NOT_FOUND else f"respCode {code}"
            raise ChannelUnavailable("settlement_file_unavailable", f"{day}: {reason}")
        try:
            text = base64.b64decode(answer.get("fileContent", ""), validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError) as exc:
            raise ChannelError("settlement_file_malformed", f"fileContent: {exc}") from exc
        return parse_settlement_file(text, day)


_SETTLEMENT_KINDS = {TXN_WITHHOLD: "payment", TXN_REFUND: "refund"}


def parse_settlement_file(text: str, day: date) -> list[SettlementRecord]:
    """Read ``orderId|queryId|txnType|txnAmt|settleDate`` lines (blank lines skipped).

    Unknown transaction types are errors rather than skipped: a silently dropped
    cancel would leave money unaccounted for.

    :raises ChannelError: ``settlement_file_malformed`` naming the first bad line.
    """
    records = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            records.append(_settlement_record(line.strip(), day))
        except ValueError as exc:
            raise ChannelError(
                "settlement_file_malformed", f"line {number} {line!r}: {exc}"
            ) from exc
    return records


def _settlement_record(line: str, day: date) -> SettlementRecord:
    parts = line.split("|")
    if len(parts) != 5:
        raise ValueError(f"expected 5 fields, found {len(parts)}")
    order_id, query_id, txn_type, amount, settle_date = parts
    if not order_id or not query_id:
        raise ValueError("orderId and queryId are required")
    if txn_type not in _SETTLEMENT_KINDS:
        raise ValueError(f"unknown txnType {txn_type!r}")
    return SettlementRecord(
        out_trade_no=order_id,
        channel_trade_no=query_id,
        amount=fen_to_yuan(amount),
        kind=_SETTLEMENT_KINDS[txn_type],
        settled_on=_settle_date(settle_date, day),
    )


def _settle_date(mmdd: str, day: date) -> date:
    """MMDD has no year: take the file day's year, or the year before when that
    would be later than the file (a December line read in January)."""
    if not re.fullmatch(r"[0-9]{4}", mmdd):
        raise ValueError(f"settleDate {mmdd!r} is not MMDD")
    month, dom = int(mmdd[:2]), int(mmdd[2:])
    try:
        settled = date(day.year, month, dom)
    except ValueError:  # 29 February of a common year: can only be last year's
        settled = None
    if settled is None or settled > day:
        settled = date(day.year - 1, month, dom)  # ValueError when no such day
    return settled
