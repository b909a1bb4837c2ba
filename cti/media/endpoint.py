"""One leg's RTP and RTCP sockets (asyncio adapter).

Sockets are bound synchronously, so that the SDP answer can name the port at once, and
then handed to the event loop. In this first slice the endpoint anchors the media at
the hub and counts what it receives; relaying between legs, prompts and the recording
tap attach here later.
"""

from __future__ import annotations

import asyncio
import logging
import socket

from cti.media.ports import PortPairAllocator

log = logging.getLogger(__name__)


class _Counter(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.packets = 0
        self.octets = 0
        self.last_source: tuple[str, int] | None = None

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.packets += 1
        self.octets += len(data)
        self.last_source = addr


class RtpEndpoint:
    def __init__(self, host: str, port: int, rtp: socket.socket, rtcp: socket.socket) -> None:
        self.host = host
        self.port = port
        self._sockets = (rtp, rtcp)
        self._counter = _Counter()
        self._transports: list[asyncio.BaseTransport] = []
        self._closed = False
        self._attach = asyncio.get_running_loop().create_task(self._attach_to_loop())

    async def _attach_to_loop(self) -> None:
        loop = asyncio.get_running_loop()
        rtp, _ = await loop.create_datagram_endpoint(lambda: self._counter, sock=self._sockets[0])
        rtcp, _ = await loop.create_datagram_endpoint(asyncio.DatagramProtocol, sock=self._sockets[1])
        self._transports = [rtp, rtcp]
        if self._closed:
            self._close_transports()

    @property
    def packets_received(self) -> int:
        return self._counter.packets

    def close(self) -> None:
        self._closed = True
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


class MediaPorts:
    """Opens RTP endpoints on port pairs from the allocator; the one owner of RTP sockets."""

    def __init__(self, host: str, allocator: PortPairAllocator) -> None:
        self._host = host
        self._allocator = allocator
        self._open: dict[int, RtpEndpoint] = {}

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
            endpoint.close()
            self._allocator.release(endpoint.port)

    def close_all(self) -> None:
        for endpoint in list(self._open.values()):
            self.close(endpoint)
