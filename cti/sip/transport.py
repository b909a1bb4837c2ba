"""The SIP endpoint: the thin asyncio shell around `TransactionLayer`, with UDP and TCP
plugged in (RFC 3261 §18).

It turns arriving messages into calls of the pure layer and the layer's commands into
I/O: `SendDatagram` -> the UDP socket (`transport_udp`) or a TCP connection (by the command's transport),
`StartTimer`/`CancelTimer` -> loop.call_later handles, `Deliver*`/`ReportTimeout` -> the
transaction user, `Log` -> logging. Nothing a peer sends can stop a listener: every
failure is logged and the next message is served.

Which transport a request goes out on (`send_request`, `send_stateless`) is decided
here, so the transaction user never knows: TCP when the next hop's URI (the first
Route, else the Request-URI) says `;transport=tcp`, or when the destination address was
last heard from over TCP; otherwise UDP. Responses follow their request's transport.

The UDP socket gets a receive buffer with room for a burst, and tells how full it is
(`udp_receive_queue`, from Linux's SO_MEMINFO), which overload control reads.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import struct
import sys
from collections import OrderedDict
from collections.abc import Iterable
from typing import Protocol

from cti.sip.errors import SipParseError
from cti.sip.message import SipRequest, SipResponse
from cti.sip.transaction import (
    TCP,
    UDP,
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
from cti.sip.transport_tcp import SipTcpEndpoint
from cti.sip.transport_udp import SipUdpSocket
from cti.sip.uri import parse_name_addr, parse_uri

log = logging.getLogger("cti.sip")

_LOG_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING}

MAX_REMEMBERED_PEERS = 10_000  # addresses whose last transport we remember (oldest forgotten first)

# Linux's SO_MEMINFO (since 4.6): the socket's memory, read in one cheap getsockopt.
_SO_MEMINFO = 55
# Room for a burst of a few hundred messages (the usual default holds about 90 of 1 KB):
# enough to ride out a short stall, small enough that what waits is not stale.
UDP_RECEIVE_BUFFER = 512 * 1024  # Linux doubles it for its bookkeeping, within rmem_max
_MEMINFO = struct.Struct("9I")  # rmem_alloc, rcvbuf, wmem_alloc, sndbuf, fwd_alloc, wmem_queued, optmem, backlog, drops


class TransactionUser(Protocol):
    def on_request(self, delivered: DeliverRequest) -> None: ...
    def on_ack(self, delivered: DeliverAck) -> None: ...
    def on_response(self, delivered: DeliverResponse) -> None: ...
    def on_timeout(self, report: ReportTimeout) -> None: ...


def uri_transport(request: SipRequest) -> str | None:
    """The `transport` parameter of the next hop's URI: the first Route (loose routing,
    §16.12), else the Request-URI. None when it names none (or is unreadable)."""
    try:
        routes = request.headers.get_all("Route")
        uri = parse_name_addr(routes[0]).uri if routes else parse_uri(request.uri)
    except SipParseError:
        return None
    value = uri.param("transport")
    return value.upper() if value else None


def choose_transport(request: SipRequest | None, last_seen: str | None, *, tcp_available: bool) -> str:
    """The transport policy: the URI's `transport` parameter, else the transport the
    destination was last heard on, else UDP. TCP only while the TCP listener runs."""
    wanted = (uri_transport(request) if request is not None else None) or last_seen or UDP
    return TCP if wanted == TCP and tcp_available else UDP


class SipEndpoint:
    """One SIP endpoint (one host:port) on UDP and TCP, sharing one transaction layer."""

    def __init__(
        self,
        layer: TransactionLayer,
        user: TransactionUser,
        *,
        tcp_idle_timeout: float = 300.0,
        tcp_max_connections: int = 1024,
    ) -> None:
        self.layer = layer
        self._user = user
        self._udp: SipUdpSocket | None = None
        self._local_address: Address | None = None
        self.tcp: SipTcpEndpoint | None = None
        self._tcp_idle_timeout = tcp_idle_timeout
        self._tcp_max_connections = tcp_max_connections
        self._timers: dict[str, asyncio.TimerHandle] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._last_seen: OrderedDict[Address, str] = OrderedDict()
        self.datagrams_received = 0  # messages, UDP and TCP
        self.datagrams_failed = 0

    async def start(self, host: str, port: int, *, tcp: bool = True) -> Address:
        """Listen on UDP, then on TCP on the same port number (a port of 0 picks UDP's)."""
        self._loop = asyncio.get_running_loop()
        udp = SipUdpSocket(self._udp_message)
        await udp.start(host, port)
        self._udp, self._local_address = udp, None
        try:
            self._udp_socket().setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, UDP_RECEIVE_BUFFER)
        except OSError as err:
            log.debug("SIP UDP receive buffer left as it is: %s", err)
        address = self.local_address
        if tcp:
            self.tcp = SipTcpEndpoint(
                self._tcp_message, idle_timeout=self._tcp_idle_timeout, max_connections=self._tcp_max_connections
            )
            try:
                await self.tcp.start(host, address[1])
            except OSError:
                self.close()
                raise
        return address

    @property
    def local_address(self) -> Address:
        """Where the UDP socket is bound (read once: every call's Contact and Via ask)."""
        assert self._udp is not None, "endpoint not started"
        if self._local_address is None:
            host, port = self._udp.sock.getsockname()[:2]
            self._local_address = (str(host), int(port))
        return self._local_address

    def udp_receive_queue(self) -> tuple[int, int, int] | None:
        """The UDP socket's receive queue: (bytes in it, the buffer's size, datagrams the
        kernel dropped so far). None where the platform cannot tell (not Linux)."""
        if self._udp is None or self._udp.closing or not sys.platform.startswith("linux"):
            return None
        sock = self._udp_socket()
        try:
            raw = sock.getsockopt(socket.SOL_SOCKET, _SO_MEMINFO, _MEMINFO.size)
        except (OSError, AttributeError):
            return None
        fields = _MEMINFO.unpack(raw[: _MEMINFO.size].ljust(_MEMINFO.size, b"\0"))
        return fields[0], fields[1], fields[8]

    def _udp_socket(self) -> socket.socket:
        assert self._udp is not None, "endpoint not started"
        return self._udp.sock

    @property
    def running(self) -> bool:
        return self._udp is not None and not self._udp.closing

    def close(self) -> None:
        for handle in self._timers.values():
            handle.cancel()
        self._timers.clear()
        if self._udp is not None:
            self._udp.close()
        if self.tcp is not None:
            self.tcp.close()

    async def wait_closed(self) -> None:
        if self.tcp is not None:
            await self.tcp.wait_closed()

    # --- arriving messages -----------------------------------------------------------

    def message_received(self, data: bytes, source: Address, transport: str) -> None:
        self.datagrams_received += 1
        try:
            commands = self.layer.datagram_received(data, source, self._now(), transport=transport)
            for command in commands:
                if isinstance(command, (DeliverRequest, DeliverAck)):
                    self._remember(command.request, source, transport)
            self.run(commands)
        except Exception:  # the listener must survive any message
            self.datagrams_failed += 1
            log.exception("%s message from %s:%s could not be processed; dropped", transport, source[0], source[1])

    def _udp_message(self, data: bytes, source: Address) -> None:
        self.message_received(data, source, UDP)

    def _tcp_message(self, data: bytes, source: Address) -> None:
        self.message_received(data, source, TCP)

    def _remember(self, request: SipRequest, source: Address, transport: str) -> None:
        """Note the transport a peer used, under its source address and its Via sent-by
        (the source host, which the network vouches for, with the Via's port): requests
        to its Contact then take the same transport, and over TCP the same connection."""
        sent_by = (source[0], request.top_via.port or 5060)
        for address in (source, sent_by):
            self._last_seen[address] = transport
            self._last_seen.move_to_end(address)
        while len(self._last_seen) > MAX_REMEMBERED_PEERS:
            self._last_seen.popitem(last=False)
        if transport == TCP and self.tcp is not None and sent_by != source:
            self.tcp.alias(sent_by, source)

    # --- the transaction user's side -------------------------------------------------

    def transport_for(self, request: SipRequest | None, destination: Address) -> str:
        return choose_transport(
            request, self._last_seen.get(destination), tcp_available=self.tcp is not None and self.tcp.serving
        )

    def send_response(self, transaction: str, response: SipResponse) -> None:
        self.run(self.layer.send_response(transaction, response, self._now()))

    def send_request(self, request: SipRequest, destination: Address) -> str:
        transport = self.transport_for(request, destination)
        key, commands = self.layer.send_request(request, destination, self._now(), transport=transport)
        self.run(commands)
        return key

    def send_stateless(self, message: SipRequest | SipResponse, destination: Address) -> None:
        request = message if isinstance(message, SipRequest) else None
        self.run(self.layer.send_stateless(message, destination, transport=self.transport_for(request, destination)))

    # --- command dispatch ------------------------------------------------------------

    def _now(self) -> float:
        return self._loop.time() if self._loop is not None else 0.0

    def run(self, commands: Iterable[Command]) -> None:
        for command in commands:
            match command:
                case SendDatagram(data=data, destination=destination, transport=transport, fallback=fallback):
                    self._send(data, destination, transport, fallback)
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

    def _send(self, data: bytes, destination: Address, transport: str, fallback: Address | None) -> None:
        if transport == UDP:
            if self._udp is not None:
                self._udp.sendto(data, destination)
        elif self.tcp is not None:
            self.tcp.send(data, destination, fallback=fallback)
        else:
            log.warning("no %s listener: message to %s:%s dropped", transport, destination[0], destination[1])

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
