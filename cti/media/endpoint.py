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


# The largest datagram read whole. Audio RTP is far smaller (G.711 at 20 ms: 172 bytes;
# even 60 ms packets stay under 500); anything longer is cut here and judged as garbage.
MAX_DATAGRAM = 2048


class _Receiver:
    """Counts what arrives, keeps RFC 3550 reception statistics, latches the peer's
    address, and hands packets on.

    Why not an asyncio datagram transport: it reads every datagram into a fresh 256 KiB
    buffer and shrinks it. glibc serves that size with a memory mapping of its own, or
    carves it from the heap once its threshold has moved, so each 172-byte packet costs
    a mapping, or a heap chunk whose neighbours pin memory while the packet lives on (a
    recording keeps packets for a second). Reading into one preallocated buffer and
    copying out an exact-size bytes object keeps packets in Python's small-object
    allocator: the same cost per packet in a fresh or an old process, kept or not."""

    __slots__ = (
        "_buffer", "_view", "last_arrival", "last_source", "loop_time", "octets", "on_packet", "packets",
        "receive_errors", "sock", "statistics",
    )

    def __init__(self, sock: socket.socket, loop_time: Callable[[], float]) -> None:
        self.sock = sock
        self.packets = 0
        self.octets = 0
        self.receive_errors = 0
        self.last_source: tuple[str, int] | None = None
        self.last_arrival: float | None = None
        self.on_packet: Callable[[bytes], None] | None = None
        self.loop_time = loop_time
        self.statistics = ReceiveStatistics()
        self._buffer = bytearray(MAX_DATAGRAM)
        self._view = memoryview(self._buffer)

    def readable(self) -> None:
        """The event loop's reader callback: one datagram per readiness, as asyncio's
        own transports do (a loop until EAGAIN would cost a failed call per packet)."""
        try:
            size, addr = self.sock.recvfrom_into(self._buffer)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as err:  # an ICMP error reported on the socket, for instance
            self.receive_errors += 1
            log.debug("RTP socket %s: %s", self.sock.getsockname(), err)
            return
        self.datagram_received(self._view[:size].tobytes(), addr)

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


def _discard(sock: socket.socket) -> None:
    """The RTCP socket's reader: the hub sends receiver reports but reads none."""
    try:
        sock.recv(MAX_DATAGRAM)
    except OSError:
        pass


class RtpEndpoint:
    """RTP and RTCP sockets of one leg. `remote` comes from the peer's SDP; once the peer
    sends, its real source address wins (symmetric RTP, RFC 4961), which is what gets
    media through NATs. The sockets are read and written directly from the event loop:
    a send that would block is dropped (late audio is worth nothing; RTP has no
    retransmission to wait for), not queued."""

    def __init__(self, host: str, port: int, rtp: socket.socket, rtcp: socket.socket) -> None:
        self.host = host
        self.port = port
        self.remote: tuple[str, int] | None = None
        self.packets_sent = 0
        self.send_errors = 0
        self.ssrc = secrets.randbits(32)  # our identity in RTCP reports
        self.cname = f"ctihub@{host}"
        self._sockets = (rtp, rtcp)
        self._loop = asyncio.get_running_loop()
        self._receiver = _Receiver(rtp, self._loop.time)
        self._closed = False
        self._loop.add_reader(rtp.fileno(), self._receiver.readable)
        self._loop.add_reader(rtcp.fileno(), _discard, rtcp)

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
        if destination is None or self._closed or self.statistics.ssrc is None:
            return False
        report = build_receiver_report(self.ssrc, [self.statistics.report_block()], cname=self.cname)
        try:
            self._sockets[1].sendto(report, (destination[0], destination[1] + 1))
        except OSError as err:
            self.send_errors += 1
            log.debug("RTCP to %s: %s", destination, err)
            return False
        return True

    @property
    def last_arrival(self) -> float | None:
        return self._receiver.last_arrival

    def on_packet(self, handler: Callable[[bytes], None] | None) -> None:
        """Where received RTP goes (the other leg's `send`, a tap...)."""
        self._receiver.on_packet = handler

    def send(self, data: bytes) -> None:
        destination = self._receiver.last_source or self.remote
        if destination is None or self._closed:
            return  # nowhere to send yet: early media is dropped, not queued
        try:
            self._sockets[0].sendto(data, destination)
        except OSError as err:  # a full socket buffer, an unreachable peer: this packet is lost
            self.send_errors += 1
            log.debug("RTP to %s: %s", destination, err)
            return
        self.packets_sent += 1

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._receiver.on_packet = None
        for sock in self._sockets:
            if not self._loop.is_closed():
                self._loop.remove_reader(sock.fileno())
            sock.close()


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
