"""The recording tap: caller left, agent right, silence where a side sent nothing."""

from __future__ import annotations

import struct

import pytest

from cti.media.mix import MediaTap, Side


def mono(*values: int) -> bytes:
    return struct.pack(f"<{len(values)}h", *values)


def stereo(data: bytes) -> list[tuple[int, int]]:
    values = struct.unpack(f"<{len(data) // 2}h", data)
    return list(zip(values[0::2], values[1::2]))


def test_both_sides_interleave() -> None:
    tap = MediaTap()
    tap.add(Side.CALLER, 0, mono(1, 2, 3))
    tap.add(Side.AGENT, 0, mono(-1, -2, -3))
    assert stereo(tap.drain(3)) == [(1, -1), (2, -2), (3, -3)]
    assert tap.position == 3


def test_missing_frames_are_silence() -> None:
    tap = MediaTap(start=100)
    tap.add(Side.CALLER, 102, mono(5, 6))
    tap.add(Side.AGENT, 100, mono(7))
    assert stereo(tap.drain(105)) == [(0, 7), (0, 0), (5, 0), (6, 0), (0, 0)]


def test_frames_out_of_order_and_split_across_drains() -> None:
    tap = MediaTap()
    tap.add(Side.AGENT, 4, mono(40, 41, 42, 43))
    tap.add(Side.AGENT, 0, mono(10, 11, 12, 13))
    assert [r for _, r in stereo(tap.drain(6))] == [10, 11, 12, 13, 40, 41]
    assert [r for _, r in stereo(tap.drain(8))] == [42, 43]


def test_late_frames_are_trimmed_or_dropped() -> None:
    tap = MediaTap()
    tap.drain(4)
    tap.add(Side.CALLER, 2, mono(1, 2, 3, 4))  # half of it is in the past
    tap.add(Side.CALLER, 0, mono(9, 9))  # all of it is
    assert tap.late_samples == 4
    assert [left for left, _ in stereo(tap.drain(6))] == [3, 4]


def test_drain_backwards_is_empty_and_odd_pcm_refused() -> None:
    tap = MediaTap(start=10)
    assert tap.drain(10) == b"" and tap.drain(5) == b""
    with pytest.raises(ValueError, match="odd length"):
        tap.add(Side.CALLER, 10, b"\x00")
