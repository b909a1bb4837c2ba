"""Reception statistics of one RTP source (RFC 3550 appendix A.1, A.3, A.8) (pure).

Owns the sequence-number bookkeeping (extended highest sequence across wrap-around,
probation of a new source, restart after a large jump), packets expected and lost,
interarrival jitter, duplicate and late counts, and the report block these feed. Arrival
times come in as arguments, in RTP clock units, so this module must never read a clock,
touch a socket or import asyncio.
"""

from __future__ import annotations

from cti.media.rtp import RtcpReportBlock

RTP_SEQ_MOD = 1 << 16
MAX_DROPOUT = 3000
MAX_MISORDER = 100
_SEEN_WINDOW = MAX_MISORDER + 1  # bits of the "already seen" map behind the highest


class ReceiveStatistics:
    """Statistics of the packets received from one SSRC; a new SSRC restarts them.

    Unlike the A.1 sample code, duplicates are told apart from late packets (a bitmap
    of the last MAX_MISORDER sequence numbers) and are not counted as received, so that
    a duplicating network does not hide loss.
    """

    def __init__(self, *, min_sequential: int = 2) -> None:
        if min_sequential < 1:
            raise ValueError("min_sequential must be at least 1")
        self._min_sequential = min_sequential
        self.ssrc: int | None = None
        self.ssrc_changes = 0
        self._reset()

    def _reset(self) -> None:
        self._max_seq = 0
        self._cycles = 0
        self._base_seq = 0
        self._bad_seq = RTP_SEQ_MOD + 1  # matches no sequence number
        self._probation = self._min_sequential
        self._seen = 0
        self.received = 0
        self.duplicates = 0
        self.late = 0
        self.rejected = 0  # large jumps not (yet) believed to be a restart
        self._expected_prior = 0
        self._received_prior = 0
        self._transit: int | None = None
        self._jitter = 0.0
        self.last_arrival: float | None = None

    # -- input ---------------------------------------------------------------------

    def update(self, *, ssrc: int, sequence: int, timestamp: int, arrival: float) -> bool:
        """Account one packet; False when it is not (yet) counted as valid.

        `arrival` is the local receive time converted to the source's RTP clock units.
        """
        if ssrc != self.ssrc:
            if self.ssrc is not None:
                self.ssrc_changes += 1
            self.ssrc = ssrc
            self._reset()
            self._max_seq = (sequence - 1) % RTP_SEQ_MOD
        self.last_arrival = arrival
        if not self._update_seq(sequence):
            return False
        self._update_jitter(timestamp, arrival)
        return True

    def _update_seq(self, seq: int) -> bool:
        # RFC 3550 A.1, update_seq(), plus the duplicate/late split.
        if self._probation:
            if seq == (self._max_seq + 1) % RTP_SEQ_MOD:
                self._probation -= 1
                self._max_seq = seq
                if self._probation == 0:
                    self._init_seq(seq)
                    self.received += 1
                    return True
            else:
                self._probation = self._min_sequential - 1
                self._max_seq = seq
            return False
        udelta = (seq - self._max_seq) % RTP_SEQ_MOD
        if udelta == 0:
            self.duplicates += 1
            return False
        if udelta < MAX_DROPOUT:
            if seq < self._max_seq:
                self._cycles += RTP_SEQ_MOD
            self._max_seq = seq
            self._seen = ((self._seen << udelta) | 1) & ((1 << _SEEN_WINDOW) - 1)
        elif udelta <= RTP_SEQ_MOD - MAX_MISORDER:
            # A very large jump: the source may have restarted. Believe it only when the
            # next packet follows on from this one.
            if seq == self._bad_seq:
                self._init_seq(seq)
            else:
                self._bad_seq = (seq + 1) % RTP_SEQ_MOD
                self.rejected += 1
                return False
        else:
            behind = RTP_SEQ_MOD - udelta
            if self._seen >> behind & 1:
                self.duplicates += 1
                return False
            self._seen |= 1 << behind
            self.late += 1
        self.received += 1
        return True

    def _init_seq(self, seq: int) -> None:
        self._base_seq = seq
        self._max_seq = seq
        self._bad_seq = RTP_SEQ_MOD + 1
        self._cycles = 0
        self._seen = 1
        self.received = 0
        self._expected_prior = 0
        self._received_prior = 0

    def _update_jitter(self, timestamp: int, arrival: float) -> None:
        # RFC 3550 A.8; transit differences are taken modulo 2**32 so that a timestamp
        # wrap does not look like a 13-hour jump.
        transit = int(arrival) - timestamp
        if self._transit is not None:
            d = (transit - self._transit) % (1 << 32)
            if d >= 1 << 31:
                d = (1 << 32) - d
            self._jitter += (d - self._jitter) / 16
        self._transit = transit

    # -- figures -------------------------------------------------------------------

    @property
    def extended_highest_sequence(self) -> int:
        return self._cycles + self._max_seq

    @property
    def expected(self) -> int:
        if self._probation:
            return 0
        return self.extended_highest_sequence - self._base_seq + 1

    @property
    def lost(self) -> int:
        """Cumulative packets lost, clamped to the signed 24 bits of a report block."""
        return max(-(1 << 23), min(self.expected - self.received, (1 << 23) - 1))

    @property
    def jitter(self) -> int:
        """Interarrival jitter in RTP clock units."""
        return int(self._jitter)

    def fraction_lost(self) -> int:
        """Loss since the last report block, as a fraction of 256 (RFC 3550 A.3); pure."""
        expected_interval = self.expected - self._expected_prior
        lost_interval = expected_interval - (self.received - self._received_prior)
        if expected_interval <= 0 or lost_interval <= 0:
            return 0
        return min(255, (lost_interval << 8) // expected_interval)

    def report_block(self, *, last_sr: int = 0, delay_since_last_sr: int = 0) -> RtcpReportBlock:
        """The report block for this source; starts the next fraction-lost interval."""
        if self.ssrc is None:
            raise ValueError("no packet received yet: nothing to report")
        block = RtcpReportBlock(
            ssrc=self.ssrc,
            fraction_lost=self.fraction_lost(),
            packets_lost=self.lost,
            highest_sequence=self.extended_highest_sequence & 0xFFFFFFFF,
            jitter=self.jitter & 0xFFFFFFFF,
            last_sr=last_sr,
            delay_since_last_sr=delay_since_last_sr,
        )
        self._expected_prior = self.expected
        self._received_prior = self.received
        return block

    def is_silent(self, now: float, timeout: float) -> bool:
        """True when the peer has sent nothing for `timeout` (same units as arrival)."""
        return is_silent(self.last_arrival, now, timeout)


def is_silent(last_arrival: float | None, now: float, timeout: float) -> bool:
    """The "peer stopped sending" check: never heard from, or quiet for `timeout`."""
    return last_arrival is None or now - last_arrival >= timeout
