"""The recordings' hash chain and the checks over it (pure).

Owns: which facts of a recording the chain covers and their canonical bytes, the chain
hash (`sha256(prev_chain_hash, this recording's file SHA-256, id, metadata)`), and the
streaming check of the chain in sequence order against the chain head. Every recording
takes the next sequence number; the head row holds the last sequence number and chain
hash, so deleting the newest rows is caught as well as deleting, inserting or editing
any row in the middle. A purged recording keeps its row (a tombstone, with its hashes):
the chain stays whole after purges.
What the chain cannot do alone: someone able to rewrite every row and the head can
forge a new chain. Anchor the head outside the database (`ctihub recordings verify`
prints it; keep it in a write-once log) to close that gap.
Lifecycle fields (legal hold, an extended retention date, the purge tombstone, the
link to the CRM interaction) change after the fact and are outside the chain; the
chained `retention_years` is a floor that an edited retention date cannot lower.
Must never: touch a file, a database or a clock.
"""

from __future__ import annotations

import enum
import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

GENESIS = "0" * 64
CHAIN_FORMAT = 1  # bump when the covered fields change; old rows keep their format


@dataclass(frozen=True, slots=True, kw_only=True)
class ChainEntry:
    """The immutable facts of one recording that its chain hash covers."""

    seq: int
    recording_id: str
    call_id: str
    queue: str | None
    agent_id: str | None
    path: str
    sha256: str
    size_bytes: int
    started_at: datetime
    ended_at: datetime
    duration_ms: int
    paused_ms: Sequence[Sequence[int]]
    retention_years: int

    def canonical(self) -> bytes:
        """Stable bytes: sorted keys, UTC timestamps to the microsecond, no whitespace."""
        fields = {
            "format": CHAIN_FORMAT,
            "seq": self.seq,
            "id": self.recording_id,
            "call_id": self.call_id,
            "queue": self.queue,
            "agent_id": self.agent_id,
            "path": self.path,
            "sha256": self.sha256,
            "size_bytes": self.size_bytes,
            "started_at": _utc(self.started_at),
            "ended_at": _utc(self.ended_at),
            "duration_ms": self.duration_ms,
            "paused_ms": [[int(a), int(b)] for a, b in self.paused_ms],
            "retention_years": self.retention_years,
        }
        return json.dumps(fields, sort_keys=True, separators=(",", ":")).encode()


def _utc(moment: datetime) -> str:
    if moment.tzinfo is None:
        raise ValueError("chained timestamps must be timezone-aware")
    return moment.astimezone(UTC).isoformat(timespec="microseconds")


def chain_hash(prev_chain_hash: str, entry: ChainEntry) -> str:
    digest = hashlib.sha256()
    digest.update(prev_chain_hash.encode("ascii"))
    digest.update(b"\n")
    digest.update(entry.canonical())
    return digest.hexdigest()


class ProblemKind(enum.Enum):
    MISSING_FILE = "missing_file"  # a kept recording's file is gone
    ALTERED_FILE = "altered_file"  # the file's SHA-256 differs from the recorded one
    ALTERED_RECORD = "altered_record"  # the row's facts no longer hash to its chain hash
    BROKEN_LINK = "broken_link"  # prev_chain_hash is not the previous row's chain hash
    MISSING_ROWS = "missing_rows"  # sequence numbers skipped: rows deleted
    HEAD_MISMATCH = "head_mismatch"  # the newest rows were deleted, or the head edited
    PURGED_FILE_PRESENT = "purged_file_present"  # marked purged, file still there
    PURGED_EARLY = "purged_early"  # purged before its retention floor
    UNREGISTERED_FILE = "unregistered_file"  # a finished file no row knows
    UNFINISHED_FILE = "unfinished_file"  # a .part file: a recording cut by a crash


@dataclass(frozen=True, slots=True, kw_only=True)
class Problem:
    kind: ProblemKind
    recording_id: str | None
    detail: str

    def __str__(self) -> str:
        what = f"recording {self.recording_id}" if self.recording_id else "storage"
        return f"{self.kind.value}: {what}: {self.detail}"


@dataclass(frozen=True, slots=True, kw_only=True)
class ChainedRow:
    entry: ChainEntry
    prev_chain_hash: str
    chain_hash: str


class ChainChecker:
    """Feed rows in sequence order, then `finish` with the head; problems come out."""

    def __init__(self) -> None:
        self._expected_seq = 1
        self._last_hash = GENESIS
        self.rows = 0

    def feed(self, row: ChainedRow) -> list[Problem]:
        problems: list[Problem] = []
        entry = row.entry
        self.rows += 1
        if entry.seq > self._expected_seq:
            missing = entry.seq - self._expected_seq
            problems.append(
                Problem(
                    kind=ProblemKind.MISSING_ROWS,
                    recording_id=None,
                    detail=f"{missing} row(s) missing before sequence {entry.seq} "
                    f"(sequence {self._expected_seq}..{entry.seq - 1})",
                )
            )
        if entry.seq >= self._expected_seq and row.prev_chain_hash != self._last_hash:
            problems.append(
                Problem(
                    kind=ProblemKind.BROKEN_LINK,
                    recording_id=entry.recording_id,
                    detail=f"sequence {entry.seq} links to {row.prev_chain_hash[:16]}..., "
                    f"the previous row ends the chain at {self._last_hash[:16]}...",
                )
            )
        if chain_hash(row.prev_chain_hash, entry) != row.chain_hash:
            problems.append(
                Problem(
                    kind=ProblemKind.ALTERED_RECORD,
                    recording_id=entry.recording_id,
                    detail=f"sequence {entry.seq}: its recorded facts do not hash to its chain hash",
                )
            )
        self._expected_seq = max(self._expected_seq, entry.seq + 1)
        self._last_hash = row.chain_hash
        return problems

    def finish(self, head_seq: int, head_hash: str) -> list[Problem]:
        last_seq = self._expected_seq - 1
        if head_seq != last_seq or head_hash != self._last_hash:
            return [
                Problem(
                    kind=ProblemKind.HEAD_MISMATCH,
                    recording_id=None,
                    detail=f"the chain head is sequence {head_seq} ({head_hash[:16]}...), "
                    f"the rows end at sequence {last_seq} ({self._last_hash[:16]}...)",
                )
            ]
        return []
