"""The SIP UDP socket, read and written straight from the event loop (RFC 3261 §18).

Owns the socket: binding it, reading one datagram per readiness into one buffer of its
own, and sending, with a queue for what the kernel would not take at once. Must never
parse or judge a message: datagrams go to `on_datagram` as they are.

Why not asyncio's datagram transport: it reads every datagram into a fresh 256 KiB
bytes object and shrinks it, which glibc serves with a memory mapping of its own (a
mmap and a munmap per SIP message, on top of the page faults). Reading into one
preallocated buffer and copying out an exact-size bytes object costs a copy of the
message only.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import socket
from collections.abc import Callable

log = logging.getLogger("cti.sip")

Address = tuple[str, int]

MAX_DATAGRAM = 65_535  # the largest UDP payload: nothing a peer sends is cut
MAX_QUEUED = 10_000  # datagrams waiting for room in the send buffer; beyond, the oldest go


class SipUdpSocket:
    def __init__(self, on_datagram: Callable[[bytes, Address], None]) -> None:
        self._on_datagram = on_datagram
        self._sock: socket.socket | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._buffer = bytearray(MAX_DATAGRAM)
        self._view = memoryview(self._buffer)
        self._queued: collections.deque[tuple[bytes, Address]] = collections.deque()
        self._closed = False
        self.send_errors = 0
        self.send_dropped = 0  # queued datagrams given up because the queue was full

    async def start(self, host: str, port: int) -> None:
        self._loop = asyncio.get_running_loop()
        infos = await self._loop.getaddrinfo(host, port, type=socket.SOCK_DGRAM)
        if not infos:
            raise OSError(f"cannot resolve {host!r}")
        family, kind, proto, _, address = infos[0]
        sock = socket.socket(family, kind, proto)
        try:
            sock.setblocking(False)
            sock.bind(address)
        except OSError:
            sock.close()
            raise
        self._sock = sock
        self._loop.add_reader(sock.fileno(), self._readable)

    @property
    def sock(self) -> socket.socket:
        assert self._sock is not None, "socket not started"
        return self._sock

    @property
    def closing(self) -> bool:
        return self._closed or self._sock is None

    def sendto(self, data: bytes, destination: Address) -> None:
        if self.closing:
            return
        if self._queued:
            self._queue(data, destination)  # keep the order behind what waits already
            return
        try:
            self.sock.sendto(data, destination)
        except (BlockingIOError, InterruptedError):
            self._queue(data, destination)
            assert self._loop is not None
            self._loop.add_writer(self.sock.fileno(), self._writable)
        except OSError as err:  # an ICMP error reported on the socket: the peer went away
            self.send_errors += 1
            log.debug("UDP send to %s:%s: %s", destination[0], destination[1], err)

    def _queue(self, data: bytes, destination: Address) -> None:
        if len(self._queued) >= MAX_QUEUED:
            self._queued.popleft()
            self.send_dropped += 1
        self._queued.append((data, destination))

    def _writable(self) -> None:
        while self._queued:
            data, destination = self._queued[0]
            try:
                self.sock.sendto(data, destination)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as err:
                self.send_errors += 1
                log.debug("UDP send to %s:%s: %s", destination[0], destination[1], err)
            self._queued.popleft()
        assert self._loop is not None
        self._loop.remove_writer(self.sock.fileno())

    def _readable(self) -> None:
        # One datagram per readiness, as asyncio's transports do: a loop until EAGAIN
        # would cost a failed call per message at the rates seen.
        try:
            size, source = self.sock.recvfrom_into(self._buffer)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as err:  # ICMP port unreachable and the like; timers will notice
            log.debug("UDP error: %s", err)
            return
        self._on_datagram(self._view[:size].tobytes(), (source[0], source[1]))

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._queued.clear()
        if self._sock is not None:
            if self._loop is not None and not self._loop.is_closed():
                self._loop.remove_reader(self._sock.fileno())
                self._loop.remove_writer(self._sock.fileno())
            self._sock.close()
