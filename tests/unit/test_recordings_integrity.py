"""The recordings' hash chain: what it covers and what its check catches (pure)."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta, timezone

import pytest

from recordings.integrity import (
    GENESIS,
    ChainChecker,
    ChainedRow,
    ChainEntry,
    ProblemKind,
    chain_hash,
)

T = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


def entry(seq: int, **changes: object) -> ChainEntry:
    base = ChainEntry(
        seq=seq, recording_id=f"rec_{seq}", call_id=f"call-{seq}", queue="sales", agent_id="alice",
        path=f"2025/03/01/rec_{seq}.wav", sha256=f"{seq:064x}", size_bytes=44 + 32000 * seq,
        started_at=T + timedelta(minutes=seq), ended_at=T + timedelta(minutes=seq, seconds=30),
        duration_ms=30000, paused_ms=[[1000, 2500]], retention_years=5,
    )
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


def chain(n: int) -> list[ChainedRow]:
    rows, prev = [], GENESIS
    for seq in range(1, n + 1):
        e = entry(seq)
        link = chain_hash(prev, e)
        rows.append(ChainedRow(entry=e, prev_chain_hash=prev, chain_hash=link))
        prev = link
    return rows


def check(rows: list[ChainedRow], head: tuple[int, str] | None = None) -> list[tuple[ProblemKind, str | None]]:
    checker = ChainChecker()
    problems = [p for row in rows for p in checker.feed(row)]
    full = chain(max((r.entry.seq for r in rows), default=0))
    head_seq, head_hash = head or ((full[-1].entry.seq, full[-1].chain_hash) if full else (0, GENESIS))
    problems += checker.finish(head_seq, head_hash)
    return [(p.kind, p.recording_id) for p in problems]


def test_the_hash_is_deterministic_and_covers_every_fact() -> None:
    e = entry(1)
    assert chain_hash(GENESIS, e) == chain_hash(GENESIS, entry(1))
    assert len(chain_hash(GENESIS, e)) == 64
    assert chain_hash("1" * 64, e) != chain_hash(GENESIS, e)
    for field in dataclasses.fields(ChainEntry):
        value = getattr(e, field.name)
        changed: object
        if isinstance(value, datetime):
            changed = value + timedelta(microseconds=1)
        elif isinstance(value, int):
            changed = value + 1
        elif isinstance(value, str):
            changed = value + "x"
        elif value is None:
            changed = "x"
        else:
            changed = [[1000, 2501]]
        altered = dataclasses.replace(e, **{field.name: changed})  # type: ignore[arg-type]
        assert chain_hash(GENESIS, altered) != chain_hash(GENESIS, e), field.name


def test_the_same_instant_in_another_zone_hashes_the_same() -> None:
    paris = timezone(timedelta(hours=1))
    moved = entry(1, started_at=entry(1).started_at.astimezone(paris))
    assert chain_hash(GENESIS, moved) == chain_hash(GENESIS, entry(1))


def test_naive_timestamps_are_refused() -> None:
    with pytest.raises(ValueError):
        chain_hash(GENESIS, entry(1, started_at=datetime(2025, 1, 1)))


def test_an_intact_chain_and_an_empty_one_pass() -> None:
    assert check(chain(5)) == []
    assert check([]) == []


def test_an_edited_row_is_caught_where_it_is() -> None:
    rows = chain(4)
    rows[1] = dataclasses.replace(rows[1], entry=dataclasses.replace(rows[1].entry, duration_ms=1))
    assert check(rows) == [(ProblemKind.ALTERED_RECORD, "rec_2")]


def test_a_row_rehashed_after_an_edit_breaks_the_next_link() -> None:
    rows = chain(4)
    forged = dataclasses.replace(rows[1].entry, sha256="f" * 64)
    rows[1] = ChainedRow(entry=forged, prev_chain_hash=rows[1].prev_chain_hash,
                         chain_hash=chain_hash(rows[1].prev_chain_hash, forged))
    assert check(rows) == [(ProblemKind.BROKEN_LINK, "rec_3")]


def test_a_deleted_middle_row_is_a_gap_and_a_broken_link() -> None:
    rows = chain(5)
    del rows[2]
    assert check(rows) == [(ProblemKind.MISSING_ROWS, None), (ProblemKind.BROKEN_LINK, "rec_4")]


def test_a_deleted_first_row_is_caught() -> None:
    rows = chain(3)[1:]
    assert check(rows) == [(ProblemKind.MISSING_ROWS, None), (ProblemKind.BROKEN_LINK, "rec_2")]


def test_deleted_newest_rows_are_caught_by_the_head() -> None:
    rows = chain(5)
    assert check(rows[:3], head=(5, rows[4].chain_hash)) == [(ProblemKind.HEAD_MISMATCH, None)]


def test_a_head_edited_to_hide_deleted_rows_still_fails_unless_it_matches_exactly() -> None:
    rows = chain(5)
    assert check(rows[:3], head=(3, rows[4].chain_hash)) == [(ProblemKind.HEAD_MISMATCH, None)]
    assert check(rows[:3], head=(3, rows[2].chain_hash)) == []  # why the head must be anchored outside


def test_problem_text_names_the_recording() -> None:
    rows = chain(2)
    rows[0] = dataclasses.replace(rows[0], chain_hash="0" * 64)
    checker = ChainChecker()
    [problem] = checker.feed(rows[0])
    assert str(problem).startswith("altered_record: recording rec_1:")
