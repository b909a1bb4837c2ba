"""SIP over UDP: the thin asyncio shell around `TransactionLayer`.

It turns datagrams into calls of the pure layer and the layer's commands into I/O:
`SendDatagram` -> sendto, `StartTimer`/`CancelTimer` -> loop.call_later handles,
`Deliver*`/`ReportTimeout` -> the transaction user, `Log` -> logging. Nothing a peer
sends can stop the listener: every failure is logged and the next datagram is served.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from typing import Protocol, cast

from cti.sip.message import SipRequest, SipResponse
from cti.sip.transaction import (
    Address,
    CancelTimer,
    Command,
    DeliverAck,
    DeliverRequest,
    DeliverResponse,
    Log,
    ReportTimeout,
    SendDatagram,
    StartTimer,
    TransactionLayer,
)

log = logging.getLogger("cti.sip")

_LOG_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING}


class TransactionUser(Protocol):
    def on_request(self, delivered: DeliverRequest) -> None: ...
    def on_ack(self, delivered: DeliverAck) -> None: ...
    def on_response(self, delivered: DeliverResponse) -> None: ...
    def on_timeout(self, report: ReportTimeout) -> None: ...


class SipUdpEndpoint(asyncio.DatagramProtocol):
    def __init__(self, layer: TransactionLayer, user: TransactionUser) -> None:
        self.layer = layer
        self._user = user
        self._transport: asyncio.DatagramTransport | None = None
        self._timers: dict[str, asyncio.TimerHandle] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self.datagrams_received = 0
        self.datagrams_failed = 0

    async def start(self, host: str, port: int) -> Address:
        self._loop = asyncio.get_running_loop()
        await self._loop.create_datagram_endpoint(lambda: self, local_addr=(host, port))
        return self.local_address

    @property
    def local_address(self) -> Address:
        assert self._transport is not None, "endpoint not started"
        host, port = self._transport.get_extra_info("sockname")[:2]
        return str(host), int(port)

    @property
    def running(self) -> bool:
        return self._transport is not None and not self._transport.is_closing()

    def close(self) -> None:
        for handle in self._timers.values():
            handle.cancel()
        self._timers.clear()
        if self._transport is not None:
            self._transport.close()

    # --- asyncio.DatagramProtocol ----------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # asyncio's selector datagram transport does not subclass DatagramTransport.
        self._transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.datagrams_received += 1
        try:
            self.run(self.layer.datagram_received(data, (addr[0], addr[1]), self._now()))
        except Exception:  # the listener must survive any datagram
            self.datagrams_failed += 1
            log.exception("datagram from %s:%s could not be processed; dropped", addr[0], addr[1])

    def error_received(self, exc: Exception) -> None:
        # ICMP port unreachable and the like: the peer went away; timers will notice.
        log.debug("UDP error: %s", exc)

    # --- the transaction user's side -------------------------------------------------

    def send_response(self, transaction: str, response: SipResponse) -> None:
        self.run(self.layer.send_response(transaction, response, self._now()))

    def send_request(self, request: SipRequest, destination: Address) -> str:
        key, commands = self.layer.send_request(request, destination, self._now())
        self.run(commands)
        return key

    def send_stateless(self, message: SipRequest | SipResponse, destination: Address) -> None:
        self.run(self.layer.send_stateless(message, destination))

    # --- command dispatch ------------------------------------------------------------

    def _now(self) -> float:
        return self._loop.time() if self._loop is not None else 0.0

    def run(self, commands: Iterable[Command]) -> None:
        for command in commands:
            match command:
                case SendDatagram(data=data, destination=destination):
                    if self._transport is not None and not self._transport.is_closing():
                        self._transport.sendto(data, destination)
                case StartTimer(key=key, delay=delay):
                    self._cancel(key)
                    assert self._loop is not None
                    self._timers[key] = self._loop.call_later(delay, self._fire, key)
                case CancelTimer(key=key):
                    self._cancel(key)
                case DeliverRequest():
                    self._deliver(self._user.on_request, command)
                case DeliverAck():
                    self._deliver(self._user.on_ack, command)
                case DeliverResponse():
                    self._deliver(self._user.on_response, command)
                case ReportTimeout():
                    self._deliver(self._user.on_timeout, command)
                case Log(level=level, message=message):
                    log.log(_LOG_LEVELS.get(level, logging.INFO), "%s", message)

    def _deliver(self, handler: object, item: object) -> None:
        try:
            handler(item)  # type: ignore[operator]
        except Exception:
            log.exception("transaction user failed on %s", type(item).__name__)

    def _cancel(self, key: str) -> None:
        handle = self._timers.pop(key, None)
        if handle is not None:
            handle.cancel()

    def _fire(self, key: str) -> None:
        self._timers.pop(key, None)
        try:
            self.run(self.layer.timer_fired(key, self._now()))
        except Exception:
            log.exception("timer %s failed", key)

    @property
    def pending_timers(self) -> int:
        return len(self._timers)
