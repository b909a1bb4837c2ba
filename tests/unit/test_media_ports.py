"""RTP port pairs: even RTP port, odd RTCP, no reuse of a just-released pair."""

from __future__ import annotations

import pytest

from cti.media.ports import PortPairAllocator, PortsExhausted


def test_pairs_are_even_and_rotate() -> None:
    ports = PortPairAllocator(20001, 20010)
    first = ports.allocate()
    assert first % 2 == 0 and 20002 <= first <= 20008
    ports.release(first)
    assert ports.allocate() != first  # the released pair rests while the others are used


def test_exhaustion_and_skip() -> None:
    ports = PortPairAllocator(20000, 20005)  # pairs 20000/1, 20002/3, 20004/5
    assert ports.capacity == 3
    taken = {ports.allocate(skip=frozenset({20000})) for _ in range(2)}
    assert taken == {20002, 20004}
    with pytest.raises(PortsExhausted):
        ports.allocate(skip=frozenset({20000}))
    assert ports.allocate() == 20000
    assert ports.in_use == 3
