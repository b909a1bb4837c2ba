"""One leg's RTP and RTCP sockets (asyncio adapter).

Sockets are bound synchronously, so that the SDP answer can name the port at once, and
then handed to the event loop. Received packets go to one handler: the other leg's
`send` while bridged (the relay), later also prompts' and recordings' taps.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import socket
import struct
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from cti.media.ports import PortPairAllocator
from cti.media.rtp import build_receiver_report
from cti.media.stats import ReceiveStatistics

_RTP_HEADER = struct.Struct("!HII")  # sequence, timestamp, SSRC after the first two bytes

log = logging.getLogger(__name__)


class _Receiver(asyncio.DatagramProtocol):
    """Counts what arrives, keeps RFC 3550 reception statistics, latches the peer's
    address, and hands packets on."""

    def __init__(self) -> None:
        self.packets = 0
        self.octets = 0
        self.last_source: tuple[str, int] | None = None
        self.last_arrival: float | None = None
        self.on_packet: Callable[[bytes], None] | None = None
        self.loop_time: Callable[[], float] = lambda: 0.0
        self.statistics = ReceiveStatistics()

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.packets += 1
        self.octets += len(data)
        self.last_source = (addr[0], addr[1])
        now = self.last_arrival = self.loop_time()
        if len(data) >= 12 and data[0] >> 6 == 2:
            sequence, timestamp, ssrc = _RTP_HEADER.unpack_from(data, 2)
            # Arrival in RTP clock units; G.711 and telephone-event run at 8 kHz.
            self.statistics.update(ssrc=ssrc, sequence=sequence, timestamp=timestamp, arrival=now * 8000)
        if self.on_packet is not None:
            self.on_packet(data)


class RtpEndpoint:
    """RTP and RTCP sockets of one leg. `remote` comes from the peer's SDP; once the peer
    sends, its real source address wins (symmetric RTP, RFC 4961), which is what gets
    media through NATs."""

    def __init__(self, host: str, port: int, rtp: socket.socket, rtcp: socket.socket) -> None:
        self.host = host
        self.port = port
        self.remote: tuple[str, int] | None = None
        self.packets_sent = 0
        self.ssrc = secrets.randbits(32)  # our identity in RTCP reports
        self.cname = f"ctihub@{host}"
        self._sockets = (rtp, rtcp)
        self._receiver = _Receiver()
        self._transports: list[asyncio.DatagramTransport] = []
        self._closed = False
        loop = asyncio.get_running_loop()
        self._receiver.loop_time = loop.time
        self._attach = loop.create_task(self._attach_to_loop())

    async def _attach_to_loop(self) -> None:
        loop = asyncio.get_running_loop()
        rtp, _ = await loop.create_datagram_endpoint(lambda: self._receiver, sock=self._sockets[0])
        rtcp, _ = await loop.create_datagram_endpoint(asyncio.DatagramProtocol, sock=self._sockets[1])
        self._transports = [rtp, rtcp]
        if self._closed:
            self._close_transports()

    @property
    def packets_received(self) -> int:
        return self._receiver.packets

    @property
    def statistics(self) -> ReceiveStatistics:
        return self._receiver.statistics

    def send_receiver_report(self) -> bool:
        """An RTCP receiver report about the peer's stream, to the peer's RTCP port (RTP
        port + 1, RFC 3550 §11). False when there is nothing to report yet."""
        destination = self._receiver.last_source or self.remote
        if destination is None or len(self._transports) < 2 or self._closed or self.statistics.ssrc is None:
            return False
        report = build_receiver_report(self.ssrc, [self.statistics.report_block()], cname=self.cname)
        self._transports[1].sendto(report, (destination[0], destination[1] + 1))
        return True

    @property
    def last_arrival(self) -> float | None:
        return self._receiver.last_arrival

    def on_packet(self, handler: Callable[[bytes], None] | None) -> None:
        """Where received RTP goes (the other leg's `send`, a tap...)."""
        self._receiver.on_packet = handler

    def send(self, data: bytes) -> None:
        destination = self._receiver.last_source or self.remote
        if destination is None or not self._transports or self._closed:
            return  # nowhere to send yet: early media is dropped, not queued
        self._transports[0].sendto(data, destination)
        self.packets_sent += 1

    def close(self) -> None:
        self._closed = True
        self._receiver.on_packet = None
        if self._transports:
            self._close_transports()
        else:
            self._attach.cancel()
            for sock in self._sockets:
                sock.close()

    def _close_transports(self) -> None:
        for transport in self._transports:
            transport.close()
        self._transports = []


def _bind_udp(host: str, port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_DGRAM)
    try:
        sock.setblocking(False)
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    return sock


@dataclass(frozen=True, slots=True, kw_only=True)
class ClosedEndpoint:
    port: int
    received: int
    sent: int


class MediaPorts:
    """Opens RTP endpoints on port pairs from the allocator; the one owner of RTP sockets."""

    def __init__(self, host: str, allocator: PortPairAllocator) -> None:
        self._host = host
        self._allocator = allocator
        self._open: dict[int, RtpEndpoint] = {}
        # Totals of closed endpoints, for metrics and for tests that prove media flowed.
        self.packets_received_total = 0
        self.packets_sent_total = 0
        self.recently_closed: deque[ClosedEndpoint] = deque(maxlen=64)

    @property
    def open_endpoints(self) -> int:
        return len(self._open)

    def open(self) -> RtpEndpoint:
        """Bind a free RTP/RTCP pair; raises PortsExhausted when none is left."""
        busy: set[int] = set()
        while True:
            port = self._allocator.allocate(skip=frozenset(busy))
            try:
                rtp = _bind_udp(self._host, port)
                try:
                    rtcp = _bind_udp(self._host, port + 1)
                except OSError:
                    rtp.close()
                    raise
            except OSError:
                # Taken by another program on this host: skip it and try the next pair.
                self._allocator.release(port)
                busy.add(port)
                if len(busy) >= self._allocator.capacity:
                    raise
                continue
            endpoint = RtpEndpoint(self._host, port, rtp, rtcp)
            self._open[port] = endpoint
            return endpoint

    def close(self, endpoint: RtpEndpoint) -> None:
        if self._open.pop(endpoint.port, None) is not None:
            self.packets_received_total += endpoint.packets_received
            self.packets_sent_total += endpoint.packets_sent
            self.recently_closed.append(
                ClosedEndpoint(port=endpoint.port, received=endpoint.packets_received, sent=endpoint.packets_sent)
            )
            endpoint.close()
            self._allocator.release(endpoint.port)

    def send_receiver_reports(self) -> int:
        """One receiver report per open leg that has heard its peer (every few seconds)."""
        return sum(endpoint.send_receiver_report() for endpoint in list(self._open.values()))

    def close_all(self) -> None:
        for endpoint in list(self._open.values()):
            self.close(endpoint)
