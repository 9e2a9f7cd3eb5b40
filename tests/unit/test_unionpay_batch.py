"""UnionPay 批量代收 (batch withholding) and 批量查询 (batch query) against the fake gateway.

The fake gateway, the keys and the ACP signer come from test_channel_unionpay, so the
signature is checked with ``cryptography`` directly; batch files are packed and
unpacked here with zlib and base64 directly, not with the adapter's own helpers.
"""

from __future__ import annotations

import base64
import re
import socket
import zlib
from collections.abc import Callable
from datetime import datetime, timedelta
from decimal import Decimal

import pytest

from repayments.channels.base import (
    BatchDebitChannel,
    ChannelDeclined,
    ChannelError,
    ChannelOutcomeUnknown,
    ChannelUnavailable,
    DebitBatchLine,
    TradeResult,
)
from repayments.channels.unionpay import (
    MAX_BATCH_FILE_BYTES,
    MAX_BATCH_LINES,
    ORDER_NOT_FOUND,
    UnionPayChannel,
    decode_batch_file,
)
from repayments.domain.states import AttemptStatus
from tests.unit import test_channel_unionpay as acp

# Fixtures shared with the single-order tests: the same keys and the same fake gateway.
keys = acp.keys
gateway = acp.gateway
channel = acp.channel

FakeGateway = acp.FakeGateway
Keys = acp.Keys
Reply = acp.Reply
MER_ID = acp.MER_ID
NOW = acp.NOW
SHANGHAI = acp.SHANGHAI

BATCH_NO = "0007"
ORDERS = [f"AX20260105FFFFFFFFFFFFFFFFFFF{n}" for n in range(1, 6)]
BATCH_PATH = "/unionpay/gateway/api/batchTrans.do"


# --- Helpers ----------------------------------------------------------------------------


def pack(text: str) -> str:
    """A batch file as UnionPay sends one: deflated, then base64."""
    return base64.b64encode(zlib.compress(text.encode("utf-8"))).decode("ascii")


def unpack(content: str) -> list[list[str]]:
    text = zlib.decompress(base64.b64decode(content)).decode("utf-8")
    return [line.split("|") for line in text.splitlines() if line]


def line(n: int, amount: str = "123.45", token: str = "") -> DebitBatchLine:
    return DebitBatchLine(ORDERS[n], Decimal(amount), token or f"tok{n}_6f3a9c0e1d2b4a58")


def batch_answer(gateway: FakeGateway, request: dict[str, str], **overrides: str) -> Reply:
    """The realistic answer, echoing the batch number as UnionPay does."""
    return gateway.answer(request, **({"batchNo": request.get("batchNo", "")} | overrides))


def respond_batch(gateway: FakeGateway, **overrides: str) -> None:
    gateway.responder = lambda _path, request: batch_answer(gateway, request, **overrides)


def submit(
    channel: UnionPayChannel, lines: list[DebitBatchLine], batch_no: str = BATCH_NO
) -> list[TradeResult | ChannelError]:
    return channel.submit_debit_batch(batch_no=batch_no, placed_at=NOW, lines=lines)


def query(
    channel: UnionPayChannel, orders: list[str], placed_at: datetime = NOW
) -> dict[str, TradeResult]:
    return channel.query_debit_batch(batch_no=BATCH_NO, placed_at=placed_at, out_trade_nos=orders)


# --- Sending a batch ------------------------------------------------------------------------


def test_the_adapter_takes_batches_of_up_to_the_limit(keys: Keys) -> None:
    adapter = acp.make_channel(keys)
    assert isinstance(adapter, BatchDebitChannel)
    assert adapter.max_batch_lines == MAX_BATCH_LINES


def test_batch_request_is_signed_carries_only_tokens_and_its_totals_match_the_file(
    channel: UnionPayChannel, gateway: FakeGateway
) -> None:
    respond_batch(gateway)
    lines = [line(0, "123.45"), line(1, "0.01"), line(2, "5000.00")]
    results = submit(channel, lines)

    [(path, sent)] = gateway.calls
    assert path == BATCH_PATH
    assert acp.acp_verify(sent, gateway.keys.merchant_public)
    assert not acp.acp_verify({**sent, "totalAmt": "1"}, gateway.keys.merchant_public)
    expected = {"version": "5.1.0", "encoding": "UTF-8", "signMethod": "01", "merId": MER_ID}
    expected |= {"txnType": "21", "txnSubType": "02", "bizType": "000501", "accessType": "0"}
    expected |= {"batchNo": BATCH_NO, "txnTime": "20260105100000"}
    assert expected.items() <= sent.items()
    rows = unpack(sent["fileContent"])
    assert rows == [
        [ORDERS[0], "12345", lines[0].card_token],
        [ORDERS[1], "1", lines[1].card_token],
        [ORDERS[2], "500000", lines[2].card_token],
    ]
    assert sent["totalQty"] == str(len(rows)) == "3"
    assert sent["totalAmt"] == str(sum(int(row[1]) for row in rows)) == "512346"
    # A token only: no card number (accNo) in a field or in the file.
    assert "accNo" not in sent
    visible = [v for k, v in sent.items() if k not in ("signature", "fileContent")]
    file_text = zlib.decompress(base64.b64decode(sent["fileContent"])).decode()
    assert not any(re.search(r"\d{16,19}", text) for text in [*visible, file_text])
    assert [(r.out_trade_no, r.status) for r in results if isinstance(r, TradeResult)] == [
        (number, AttemptStatus.PENDING) for number in ORDERS[:3]
    ]


@pytest.mark.parametrize("code", ["00", "03", "04", "05"])
def test_an_accepted_batch_leaves_every_line_pending(
    channel: UnionPayChannel, gateway: FakeGateway, code: str
) -> None:
    respond_batch(gateway, respCode=code)
    results = submit(channel, [line(n) for n in range(4)])
    assert len(results) == 4
    for number, result in zip(ORDERS, results, strict=False):
        assert isinstance(result, TradeResult)
        assert (result.out_trade_no, result.status) == (number, AttemptStatus.PENDING)
        assert result.accepted_at is None  # accepted is not paid


@pytest.mark.parametrize("code", ["39", "64", "11"])
def test_a_declined_batch_declines_each_line_sent_and_unusable_lines_keep_their_code(
    channel: UnionPayChannel, gateway: FakeGateway, code: str
) -> None:
    respond_batch(gateway, respCode=code, respMsg="refused")
    lines = [
        line(0),
        line(1, token="tok&accNo=6222020000000000000"),
        line(2),
        DebitBatchLine(ORDERS[3], Decimal("1.001"), "tok3_ok"),
        DebitBatchLine(ORDERS[4], Decimal("10.00"), ""),
    ]
    results = submit(channel, lines)

    codes = [(type(r), r.code) for r in results if isinstance(r, ChannelError)]
    assert codes == [
        (ChannelDeclined, code),
        (ChannelDeclined, "invalid_card_token"),
        (ChannelDeclined, code),
        (ChannelDeclined, "invalid_amount"),
        (ChannelDeclined, "no_card_token"),
    ]
    [(_, sent)] = gateway.calls
    assert [row[0] for row in unpack(sent["fileContent"])] == [ORDERS[0], ORDERS[2]]
    assert (sent["totalQty"], sent["totalAmt"]) == ("2", "24690")


def test_a_batch_of_only_unusable_lines_is_not_sent(
    channel: UnionPayChannel, gateway: FakeGateway
) -> None:
    respond_batch(gateway)
    results = submit(channel, [line(0, token="bad token"), line(1, amount="0")])
    assert [r.code for r in results if isinstance(r, ChannelDeclined)] == [
        "invalid_card_token",
        "invalid_amount",
    ]
    assert gateway.calls == []


@pytest.mark.parametrize("code", ["12", "06", "99"])
def test_an_unrecognised_batch_answer_leaves_each_line_unknown(
    channel: UnionPayChannel, gateway: FakeGateway, code: str
) -> None:
    # 12 (a batch number taken) or a system error: the file may have been debited.
    respond_batch(gateway, respCode=code)
    results = submit(channel, [line(0), line(1)])
    assert [(type(r), getattr(r, "code", None)) for r in results] == [
        (ChannelOutcomeUnknown, code)
    ] * 2


def test_timeout_after_sending_leaves_every_line_unknown(
    channel: UnionPayChannel, gateway: FakeGateway
) -> None:
    gateway.responder = lambda _path, request: Reply(batch_answer(gateway, request).fields, delay=3)
    unusable = DebitBatchLine(ORDERS[2], Decimal("1.00"), "")
    results = submit(channel, [line(0), line(1), unusable])
    assert [type(r) for r in results] == [
        ChannelOutcomeUnknown,
        ChannelOutcomeUnknown,
        ChannelDeclined,  # never sent, so known not charged
    ]
    assert len(gateway.calls) == 1  # it arrived: the lines may have been debited


def test_connection_dropped_after_sending_leaves_every_line_unknown(
    channel: UnionPayChannel, gateway: FakeGateway
) -> None:
    gateway.responder = lambda _path, _request: Reply({}, hang_up=True)
    results = submit(channel, [line(0), line(1)])
    assert [type(r) for r in results] == [ChannelOutcomeUnknown] * 2


def test_refused_connection_leaves_every_line_unavailable(keys: Keys) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    adapter = acp.make_channel(keys, f"http://127.0.0.1:{port}/unionpay")
    results = submit(adapter, [line(0), line(1)])
    assert [type(r) for r in results] == [ChannelUnavailable] * 2


def test_http_503_before_processing_leaves_every_line_unavailable(
    channel: UnionPayChannel, gateway: FakeGateway
) -> None:
    gateway.responder = lambda _path, request: Reply(
        batch_answer(gateway, request).fields, status=503
    )
    results = submit(channel, [line(0), line(1)])
    assert [type(r) for r in results] == [ChannelUnavailable] * 2


Answer = Callable[[FakeGateway, dict[str, str]], Reply]


@pytest.mark.parametrize(
    "reply",
    [
        pytest.param(
            lambda fake, request: Reply(batch_answer(fake, request).fields, unsigned=True),
            id="unsigned",
        ),
        pytest.param(
            lambda fake, request: Reply(
                batch_answer(fake, request).fields, signer=fake.keys.stranger_private
            ),
            id="wrong-key",
        ),
        pytest.param(lambda fake, request: batch_answer(fake, request, batchNo="0008"), id="batch"),
        pytest.param(
            lambda fake, request: batch_answer(fake, request, merId="777290058199999"),
            id="merchant",
        ),
        pytest.param(
            lambda fake, request: Reply(batch_answer(fake, request).fields, status=502), id="502"
        ),
    ],
)
def test_an_untrustworthy_batch_answer_leaves_every_line_unknown(
    channel: UnionPayChannel, gateway: FakeGateway, reply: Answer
) -> None:
    gateway.responder = lambda _path, request: reply(gateway, request)
    results = submit(channel, [line(0), line(1)])
    assert [type(r) for r in results] == [ChannelOutcomeUnknown] * 2


@pytest.mark.parametrize("tamper", [{"respCode": "00"}, {"respCode": "05"}, {"batchNo": "0001"}])
def test_a_tampered_batch_answer_is_not_believed(
    channel: UnionPayChannel, gateway: FakeGateway, tamper: dict[str, str]
) -> None:
    def respond(_path: str, request: dict[str, str]) -> Reply:
        fields = batch_answer(gateway, request, respCode="64").fields
        signed = acp.acp_sign(fields, gateway.keys.platform_private)
        return Reply(signed | tamper, unsigned=True)

    gateway.responder = respond
    results = submit(channel, [line(0), line(1)])
    # Neither the signed decline nor the forged acceptance: the outcome is not known.
    assert [type(r) for r in results] == [ChannelOutcomeUnknown] * 2
    assert all(r.code == "bad_answer_signature" for r in results if isinstance(r, ChannelError))


# --- Batch number and size ---------------------------------------------------------------


@pytest.mark.parametrize(
    "batch_no", ["0000", "10000", "123", "12345", "abcd", "", "-001", "+001", "1_00", " 001"]
)
def test_a_batch_number_outside_0001_9999_is_refused_before_sending(
    channel: UnionPayChannel, gateway: FakeGateway, batch_no: str
) -> None:
    respond_batch(gateway)
    with pytest.raises(ValueError, match=r"batch number|invalid literal"):
        submit(channel, [line(0), line(1)], batch_no=batch_no)
    assert gateway.calls == []


@pytest.mark.parametrize("batch_no", ["0001", "0999", "9999"])
def test_four_digit_batch_numbers_are_sent(
    channel: UnionPayChannel, gateway: FakeGateway, batch_no: str
) -> None:
    respond_batch(gateway)
    submit(channel, [line(0), line(1)], batch_no=batch_no)
    assert gateway.calls[0][1]["batchNo"] == batch_no


def test_a_batch_over_the_line_limit_is_refused_and_one_at_it_is_sent(
    channel: UnionPayChannel, gateway: FakeGateway
) -> None:
    respond_batch(gateway)
    many = [
        DebitBatchLine(f"AX2026010500{n:018d}", Decimal("1.00"), f"tok{n}") for n in range(1001)
    ]
    assert len(many) == MAX_BATCH_LINES + 1
    with pytest.raises(ValueError, match="lines"):
        submit(channel, many)
    assert gateway.calls == []
    results = submit(channel, many[:MAX_BATCH_LINES])
    assert len(results) == MAX_BATCH_LINES
    [(_, sent)] = gateway.calls
    assert (sent["totalQty"], sent["totalAmt"]) == (str(MAX_BATCH_LINES), str(100 * 1000))
    assert len(unpack(sent["fileContent"])) == MAX_BATCH_LINES


# --- Batch query ----------------------------------------------------------------------------


def result_file(*rows: str) -> str:
    return pack("".join(f"{row}\n" for row in rows))


def test_batch_query_maps_each_lines_orig_resp_code(
    channel: UnionPayChannel, gateway: FakeGateway
) -> None:
    content = result_file(
        f"{ORDERS[0]}|12345|00|Q202601051000000001|0105100003",
        f"{ORDERS[1]}|20000|64|Q202601051000000002|",
        f"{ORDERS[2]}|30000|05|Q202601051000000003|",
        f"{ORDERS[3]}|40000|99|Q202601051000000004|",
        f"{ORDERS[4]}|50000|00|Q202601051000000005|0105100004",  # not asked about
    )
    respond_batch(gateway, respCode="00", fileContent=content)
    placed = NOW - timedelta(minutes=2)
    found = query(channel, ORDERS[:4], placed_at=placed)

    [(path, sent)] = gateway.calls
    assert path == BATCH_PATH
    assert acp.acp_verify(sent, gateway.keys.merchant_public)
    assert (sent["txnType"], sent["txnSubType"], sent["bizType"]) == ("22", "02", "000501")
    assert (sent["batchNo"], sent["txnTime"]) == (BATCH_NO, "20260105095800")
    assert set(found) == set(ORDERS[:4])
    paid = found[ORDERS[0]]
    assert (paid.status, paid.amount, paid.channel_trade_no) == (
        AttemptStatus.SUCCEEDED,
        Decimal("123.45"),
        "Q202601051000000001",
    )
    assert paid.accepted_at == datetime(2026, 1, 5, 10, 0, 3, tzinfo=SHANGHAI)
    declined = found[ORDERS[1]]
    assert (declined.status, declined.failure_code) == (AttemptStatus.FAILED, "64")
    assert declined.failure_message == "insufficient funds"
    assert declined.accepted_at is None
    assert found[ORDERS[2]].status == AttemptStatus.PENDING
    assert (found[ORDERS[3]].status, found[ORDERS[3]].failure_code) == (
        AttemptStatus.UNKNOWN,
        "99",
    )


@pytest.mark.parametrize("code", ["03", "04", "05"])
def test_a_batch_still_processing_leaves_every_line_pending(
    channel: UnionPayChannel, gateway: FakeGateway, code: str
) -> None:
    respond_batch(gateway, respCode=code)
    found = query(channel, ORDERS[:3], placed_at=NOW - timedelta(hours=2))
    assert {n: r.status for n, r in found.items()} == dict.fromkeys(
        ORDERS[:3], AttemptStatus.PENDING
    )


@pytest.mark.parametrize(
    ("age", "status"),
    [
        (timedelta(minutes=9, seconds=59), AttemptStatus.PENDING),  # may still be on its way
        (timedelta(minutes=10), AttemptStatus.FAILED),  # never arrived
    ],
)
def test_a_batch_unionpay_does_not_know_is_pending_then_failed(
    keys: Keys, gateway: FakeGateway, age: timedelta, status: AttemptStatus
) -> None:
    respond_batch(gateway, respCode="34", respMsg="查无此批次")
    adapter = acp.make_channel(keys, gateway.url, NOW + age)
    found = query(adapter, ORDERS[:2], placed_at=NOW)
    assert {n: (r.status, r.failure_code) for n, r in found.items()} == dict.fromkeys(
        ORDERS[:2], (status, ORDER_NOT_FOUND)
    )


@pytest.mark.parametrize("age", [timedelta(minutes=9), timedelta(hours=3)])
def test_a_line_missing_from_a_held_batch_stays_pending(
    keys: Keys, gateway: FakeGateway, age: timedelta
) -> None:
    # UnionPay holds the batch, so the line arrived; it is only not worked through yet.
    # Failing it would free the row for the next card while this one may still be debited.
    content = result_file(f"{ORDERS[0]}|12345|00|Q202601051000000001|0105100003")
    respond_batch(gateway, respCode="00", fileContent=content)
    adapter = acp.make_channel(keys, gateway.url, NOW + age)
    found = query(adapter, ORDERS[:2], placed_at=NOW)
    assert found[ORDERS[0]].status == AttemptStatus.SUCCEEDED
    assert (found[ORDERS[1]].status, found[ORDERS[1]].failure_code) == (AttemptStatus.PENDING, "")


def test_the_grace_for_an_unknown_batch_counts_from_when_it_was_sent(
    keys: Keys, gateway: FakeGateway
) -> None:
    # Placed at NOW (its txnTime) but sent eight minutes later: eleven minutes after
    # placing, the file has been on its way for three only.
    respond_batch(gateway, respCode="34", respMsg="查无此批次")
    adapter = acp.make_channel(keys, gateway.url, NOW + timedelta(minutes=11))
    found = adapter.query_debit_batch(
        batch_no=BATCH_NO,
        placed_at=NOW,
        out_trade_nos=ORDERS[:1],
        sent_at=NOW + timedelta(minutes=8),
    )
    assert found[ORDERS[0]].status == AttemptStatus.PENDING
    later = acp.make_channel(keys, gateway.url, NOW + timedelta(minutes=18))
    assert (
        later.query_debit_batch(
            batch_no=BATCH_NO,
            placed_at=NOW,
            out_trade_nos=ORDERS[:1],
            sent_at=NOW + timedelta(minutes=8),
        )[ORDERS[0]].status
        == AttemptStatus.FAILED
    )


@pytest.mark.parametrize(
    "content",
    [
        pytest.param("not base64!", id="not-base64"),
        pytest.param(base64.b64encode(b"plain text, not deflated").decode(), id="not-deflate"),
        pytest.param(
            base64.b64encode(zlib.compress(b"AX1|100|00|Q1|\n" * 50)[:-6]).decode(),
            id="truncated",
        ),
        pytest.param(result_file(f"{ORDERS[0]}|12345|00|Q1"), id="four-columns"),
        pytest.param(result_file(f"{ORDERS[0]}|123.45|00|Q1|"), id="amount-in-yuan"),
        pytest.param(result_file(f"{ORDERS[0]}|12345|00|Q1|0105100003|x"), id="six-columns"),
        pytest.param(
            base64.b64encode(zlib.compress("AX1|100|00|Q1|\n".encode("utf-16"))).decode(),
            id="not-utf8",
        ),
        pytest.param("", id="absent"),
    ],
)
def test_an_unusable_result_file_is_unavailable(
    channel: UnionPayChannel, gateway: FakeGateway, content: str
) -> None:
    respond_batch(gateway, respCode="00", fileContent=content)
    with pytest.raises(ChannelUnavailable) as caught:
        query(channel, ORDERS[:1])
    assert caught.value.code == "answer_unparseable"


@pytest.mark.parametrize(
    "reply",
    [
        pytest.param(lambda fake, request: batch_answer(fake, request, respCode="37"), id="37"),
        pytest.param(lambda fake, request: batch_answer(fake, request, respCode="06"), id="06"),
        pytest.param(
            lambda fake, request: batch_answer(fake, request, batchNo="0008", respCode="34"),
            id="other-batch",
        ),
        pytest.param(
            lambda fake, request: Reply(
                batch_answer(fake, request, respCode="34").fields,
                signer=fake.keys.stranger_private,
            ),
            id="wrong-key",
        ),
        pytest.param(
            lambda fake, request: Reply(batch_answer(fake, request).fields, delay=3), id="timeout"
        ),
    ],
)
def test_a_batch_query_that_says_nothing_is_unavailable(
    channel: UnionPayChannel, gateway: FakeGateway, reply: Answer
) -> None:
    gateway.responder = lambda _path, request: reply(gateway, request)
    # Long past the grace period: a believed "not found" would fail the lines.
    with pytest.raises(ChannelUnavailable):
        query(channel, ORDERS[:2], placed_at=NOW - timedelta(hours=1))


def test_a_tampered_result_file_is_rejected(channel: UnionPayChannel, gateway: FakeGateway) -> None:
    declined = result_file(f"{ORDERS[0]}|12345|64|Q202601051000000001|")
    paid = result_file(f"{ORDERS[0]}|12345|00|Q202601051000000001|0105100003")

    def respond(_path: str, request: dict[str, str]) -> Reply:
        fields = batch_answer(gateway, request, respCode="00", fileContent=declined).fields
        signed = acp.acp_sign(fields, gateway.keys.platform_private)
        return Reply(signed | {"fileContent": paid}, unsigned=True)

    gateway.responder = respond
    with pytest.raises(ChannelUnavailable) as caught:
        query(channel, ORDERS[:1])
    assert caught.value.code == "bad_answer_signature"


# --- Batch file decoding ---------------------------------------------------------------------


def test_decode_batch_file_reads_an_independently_packed_file() -> None:
    content = result_file("AX1|100|00|Q1|0105100003", "", "AX2|200|64|Q2|")
    assert decode_batch_file(content) == [
        ["AX1", "100", "00", "Q1", "0105100003"],
        ["AX2", "200", "64", "Q2", ""],
    ]


def test_decode_batch_file_refuses_a_zip_bomb() -> None:
    bomb = base64.b64encode(zlib.compress(b"0" * (MAX_BATCH_FILE_BYTES + 1024), 9)).decode()
    assert len(bomb) < 64 * 1024  # small on the wire, large once inflated
    with pytest.raises(ValueError, match="beyond the limit"):
        decode_batch_file(bomb)


def test_decode_batch_file_takes_a_file_of_exactly_the_limit() -> None:
    row = b"A" * 99 + b"\n"
    text = row * (MAX_BATCH_FILE_BYTES // len(row)) + b"B" * (MAX_BATCH_FILE_BYTES % len(row))
    assert len(text) == MAX_BATCH_FILE_BYTES
    rows = decode_batch_file(base64.b64encode(zlib.compress(text)).decode())
    assert len(rows) == MAX_BATCH_FILE_BYTES // len(row) + 1


def test_decode_batch_file_refuses_truncated_data() -> None:
    packed = zlib.compress(b"AX1|100|00|Q1|\n" * 200)
    for cut in (1, 4, len(packed) // 2):
        with pytest.raises(ValueError, match="fileContent"):
            decode_batch_file(base64.b64encode(packed[:-cut]).decode())


def test_decode_batch_file_refuses_data_after_the_stream() -> None:
    # A second file glued on would be silently dropped, and its lines read as missing.
    glued = zlib.compress(b"AX1|100|00|Q1|\n") + zlib.compress(b"AX2|200|00|Q2|\n")
    with pytest.raises(ValueError, match="fileContent"):
        decode_batch_file(base64.b64encode(glued).decode())
