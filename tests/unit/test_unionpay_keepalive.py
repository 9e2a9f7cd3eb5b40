"""The UnionPay adapter keeps its HTTP connection open between calls, and a connection
the gateway closed meanwhile is replaced, not taken for a lost answer."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from repayments.domain.states import AttemptStatus
from tests.unit.test_channel_unionpay import (  # noqa: F401 - keys is a fixture
    FakeGateway,
    Keys,
    _Handler,
    _Server,
    keys,
    make_channel,
    order,
)


class _KeepAliveHandler(_Handler):
    protocol_version = "HTTP/1.1"
    server: _KeepAliveServer

    def do_POST(self) -> None:
        self.server.client_ports.append(self.client_address[1])
        super().do_POST()
        # Hang up after answering, without saying so: the client's pooled socket dies.
        self.close_connection = self.server.close_after_answer


class _KeepAliveServer(_Server):
    client_ports: list[int]
    close_after_answer: bool


@pytest.fixture
def keepalive(keys: Keys) -> Iterator[tuple[FakeGateway, _KeepAliveServer]]:  # noqa: F811
    server = _KeepAliveServer(("127.0.0.1", 0), _KeepAliveHandler)
    server.client_ports, server.close_after_answer = [], False
    fake = FakeGateway(keys=keys, url=f"http://127.0.0.1:{server.server_address[1]}/unionpay")
    fake.responder = lambda _path, request: fake.answer(request)
    server.fake = fake
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    yield fake, server
    server.shutdown()
    server.server_close()
    thread.join(timeout=2)


def test_calls_share_one_connection(
    keys: Keys,  # noqa: F811
    keepalive: tuple[FakeGateway, _KeepAliveServer],
) -> None:
    fake, server = keepalive
    channel = make_channel(keys, fake.url)
    for _ in range(3):
        assert channel.create_order(order()).result.status == AttemptStatus.PENDING
    assert len(server.client_ports) == 3
    assert len(set(server.client_ports)) == 1


def test_a_connection_the_gateway_closed_is_replaced_not_called_unknown(
    keys: Keys,  # noqa: F811
    keepalive: tuple[FakeGateway, _KeepAliveServer],
) -> None:
    fake, server = keepalive
    server.close_after_answer = True
    channel = make_channel(keys, fake.url)
    for _ in range(2):
        # A debit sent on a dead socket would come back as outcome unknown.
        assert channel.create_order(order()).result.status == AttemptStatus.PENDING
    assert len(set(server.client_ports)) == 2
