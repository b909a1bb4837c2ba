"""Allocation of RTP/RTCP port pairs from the configured range (pure).

RTP takes the even port, RTCP the odd one above it (RFC 3550 §11). Ports are handed out
round-robin so that a just-released pair is not reused at once: late packets of an
ended call must not land in a new one.
"""

from __future__ import annotations


class PortsExhausted(RuntimeError):
    pass


class PortPairAllocator:
    def __init__(self, low: int, high: int) -> None:
        first = low + (low % 2)
        self._pairs = [p for p in range(first, high, 2) if p + 1 <= high]
        if not self._pairs:
            raise ValueError(f"port range {low}-{high} holds no even/odd pair")
        self._in_use: set[int] = set()
        self._next = 0

    @property
    def capacity(self) -> int:
        return len(self._pairs)

    @property
    def in_use(self) -> int:
        return len(self._in_use)

    def allocate(self, *, skip: frozenset[int] = frozenset()) -> int:
        """The RTP port of a free pair; `skip` names ports found busy on the host."""
        for _ in range(len(self._pairs)):
            port = self._pairs[self._next]
            self._next = (self._next + 1) % len(self._pairs)
            if port not in self._in_use and port not in skip:
                self._in_use.add(port)
                return port
        raise PortsExhausted(f"all {len(self._pairs)} RTP port pairs are in use")

    def release(self, port: int) -> None:
        self._in_use.discard(port)
