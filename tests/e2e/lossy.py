"""A UDP relay that loses a fixed share of datagrams in both directions (seeded, so a
failure can be replayed). It stands between a real SIP peer and the hub on loopback."""

from __future__ import annotations

import asyncio
import random
import socket


class _Side(asyncio.DatagramProtocol):
    def __init__(self, relay: "LossyRelay", front: bool) -> None:
        self.relay = relay
        self.front = front
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.relay.arrived(data, addr, self.front)


class LossyRelay:
    """Front: where the peer sends. Back: the relay's own socket towards the target."""

    def __init__(self, target: tuple[str, int], loss: float, seed: int) -> None:
        self.target = target
        self.loss = loss
        self._random = random.Random(seed)
        self.forwarded = 0
        self.dropped = 0
        self._peer: tuple[str, int] | None = None
        self._front: _Side | None = None
        self._back: _Side | None = None

    async def start(self) -> int:
        loop = asyncio.get_running_loop()
        _, self._front = await loop.create_datagram_endpoint(lambda: _Side(self, True), local_addr=("127.0.0.1", 0), family=socket.AF_INET)
        _, self._back = await loop.create_datagram_endpoint(lambda: _Side(self, False), local_addr=("127.0.0.1", 0), family=socket.AF_INET)
        assert self._front.transport is not None
        return int(self._front.transport.get_extra_info("sockname")[1])

    def arrived(self, data: bytes, addr: tuple[str, int], from_front: bool) -> None:
        if from_front:
            self._peer = addr
        if self._random.random() < self.loss:
            self.dropped += 1
            return
        self.forwarded += 1
        if from_front and self._back is not None and self._back.transport is not None:
            self._back.transport.sendto(data, self.target)
        elif not from_front and self._peer is not None and self._front is not None and self._front.transport is not None:
            self._front.transport.sendto(data, self._peer)

    def close(self) -> None:
        for side in (self._front, self._back):
            if side is not None and side.transport is not None:
                side.transport.close()
