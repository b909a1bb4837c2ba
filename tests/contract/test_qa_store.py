"""QaStore against real databases (SQLite and PostgreSQL): the search over recordings
with their interactions, customers and scores; forms and their versions; evaluations;
pinned comments; the streamed CSV export."""

from __future__ import annotations

import csv
import io
import struct
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from crm_sync.schema import Customer, Interaction
from cti.db import make_engine, make_sessionmaker, migrate
from recordings.assembler import AssemblerStats
from recordings.policy import PausedInterval
from recordings.qa_store import (
    CSV_COLUMNS,
    QaConflict,
    QaNotFound,
    QaStore,
    RecordingSearch,
    csv_header,
    csv_line,
)
from recordings.recorder import RecordingResult
from recordings.scoring import FormError, parse_form
from recordings.storage import FileStorage, new_recording_id
from recordings.store import RecordingStore
from recordings.writer import StereoWavWriter

T = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
QA_TABLES = {"qa_forms", "qa_evaluations", "qa_comments"}

FORM = {
    "name": "Sales call",
    "sections": [
        {"id": "opening", "title": "Opening", "weight": 1, "questions": [
            {"id": "greeting", "text": "Greeted the caller", "kind": "yes_no", "weight": 1},
            {"id": "rapport", "text": "Built rapport", "kind": "scale", "scale_max": 5, "na_allowed": True},
        ]},
    ],
}


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    engine = make_engine(database_url)
    await migrate(engine)
    yield engine
    await engine.dispose()


@pytest.fixture
def recordings(engine: AsyncEngine, tmp_path: Path) -> RecordingStore:
    return RecordingStore(make_sessionmaker(engine), FileStorage(tmp_path / "recordings"))


@pytest.fixture
def qa(engine: AsyncEngine) -> QaStore:
    return QaStore(make_sessionmaker(engine))


async def add_recording(
    store: RecordingStore, *, at: datetime, seconds: float, agent: str, queue: str, paused: tuple[int, int] | None = None
) -> str:
    recording_id = new_recording_id()
    path = store.storage.new_path(recording_id, at)
    path.parent.mkdir(parents=True, exist_ok=True)
    writer = StereoWavWriter(path)
    frames = round(seconds * 8000)
    writer.append(struct.pack(f"<{2 * frames}h", *([500, -500] * frames)))
    closed = writer.close()
    result = RecordingResult(
        path=path, sha256=closed.sha256, size_bytes=closed.size_bytes, duration_s=closed.duration_s,
        paused_intervals=(PausedInterval(start=paused[0] * 8, end=paused[1] * 8),) if paused else (),  # samples
        started_at=at, ended_at=at + timedelta(seconds=closed.duration_s), stats=AssemblerStats(), dropped_packets=0,
    )
    await store.add(recording_id, result, call_id=f"call-{recording_id}", queue=queue, agent_id=agent)
    return recording_id


async def add_customer(engine: AsyncEngine, customer_id: str, first: str, last: str) -> None:
    async with make_sessionmaker(engine)() as session, session.begin():
        session.add(Customer(
            id=customer_id, first_name=first, last_name=last, language="en", country="GB", tier="retail",
            created_at=T, updated_at=T,
        ))


async def add_interaction(
    engine: AsyncEngine, recordings: RecordingStore, recording_id: str, *, customer_id: str | None,
    disposition: str | None, notes: str | None = None,
) -> str:
    info = await recordings.get(recording_id)
    interaction_id = "int_" + recording_id[4:]
    async with make_sessionmaker(engine)() as session, session.begin():
        session.add(Interaction(
            id=interaction_id, customer_id=customer_id, channel="voice", direction="inbound", caller_number="+441",
            queue=info.queue, agent_id=info.agent_id, started_at=info.started_at, ended_at=info.ended_at,
            outcome="completed", disposition=disposition, notes=notes, call_id=info.call_id, recording_id=recording_id,
        ))
    assert await recordings.link_interaction(info.call_id, interaction_id, at=info.ended_at) == 1
    return interaction_id


@pytest.fixture
async def calls(engine: AsyncEngine, recordings: RecordingStore) -> dict[str, str]:
    """Four recordings, oldest first: a, b, c (Lena, Oliver, Lena) and d with no interaction yet."""
    await add_customer(engine, "cus_lena", "Lena", "Hoffmann")
    await add_customer(engine, "cus_oliver", "Oliver", "Bennett")
    ids = {
        "a": await add_recording(recordings, at=T, seconds=2.0, agent="agent01", queue="sales", paused=(500, 1000)),
        "b": await add_recording(recordings, at=T + timedelta(hours=1), seconds=0.5, agent="agent02", queue="support"),
        "c": await add_recording(recordings, at=T + timedelta(days=1), seconds=1.0, agent="agent01", queue="sales"),
        "d": await add_recording(recordings, at=T + timedelta(days=2), seconds=1.5, agent="agent03", queue="kyc"),
    }
    await add_interaction(engine, recordings, ids["a"], customer_id="cus_lena", disposition="trade_query",
                          notes='=HYPERLINK("http://evil.example","click"), then "quoted", and\na second line')
    await add_interaction(engine, recordings, ids["b"], customer_id="cus_oliver", disposition="complaint")
    await add_interaction(engine, recordings, ids["c"], customer_id="cus_lena", disposition="complaint", notes="@SUM(1)")
    return ids


async def found(qa: QaStore, **filters: object) -> list[str]:
    page = await qa.search(RecordingSearch(**filters), limit=100)  # type: ignore[arg-type]
    return [row.recording_id for row in page.rows]


async def test_the_migration_matches_the_qa_models(engine: AsyncEngine) -> None:
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    import recordings.qa_schema  # noqa: F401
    from cti.db import Base

    def diff(sync_conn: sa.Connection) -> list[str]:
        context = MigrationContext.configure(sync_conn, opts={"compare_type": True})
        changes = [repr(change) for change in compare_metadata(context, Base.metadata)]
        return [c for c in changes if any(f"'{table}'" in c for table in QA_TABLES)]

    async with engine.connect() as conn:
        assert await conn.run_sync(diff) == []
        tables = await conn.run_sync(lambda c: set(sa.inspect(c).get_table_names()))
    assert QA_TABLES <= tables


async def test_search_filters_and_order(qa: QaStore, calls: dict[str, str]) -> None:
    a, b, c, d = calls["a"], calls["b"], calls["c"], calls["d"]
    assert await found(qa) == [d, c, b, a]  # newest first
    assert await found(qa, agent_id="agent01") == [c, a]
    assert await found(qa, queue="support") == [b]
    assert await found(qa, disposition="complaint") == [c, b]
    assert await found(qa, customer="cus_oliver") == [b]
    assert await found(qa, customer="hoffMANN") == [c, a]  # part of the name, any case
    assert await found(qa, customer="lena h") == [c, a]
    assert await found(qa, customer="%") == []  # a LIKE wildcard is just a character
    assert await found(qa, started_from=T + timedelta(minutes=30), started_before=T + timedelta(days=2)) == [c, b]
    assert await found(qa, started_from=T + timedelta(days=2)) == [d]
    assert await found(qa, min_duration_s=1.0) == [d, c, a]
    assert await found(qa, min_duration_s=0.6, max_duration_s=1.5) == [d, c]
    assert await found(qa, agent_id="agent01", disposition="trade_query", customer="Lena") == [a]
    assert await found(qa, agent_id="nobody") == []


async def test_a_row_carries_the_call_context(qa: QaStore, calls: dict[str, str]) -> None:
    row = await qa.recording(calls["a"])
    assert (row.customer_id, row.customer_name, row.disposition) == ("cus_lena", "Lena Hoffmann", "trade_query")
    assert row.queue == "sales" and row.agent_id == "agent01" and row.duration_s == 2.0
    assert row.paused_intervals == ((0.5, 1.0),)
    assert row.score is None and row.evaluations == 0 and not row.purged
    bare = await qa.recording(calls["d"])
    assert bare.interaction_id is None and bare.customer_name is None and bare.disposition is None
    with pytest.raises(QaNotFound):
        await qa.recording("rec_missing")


async def test_pages(qa: QaStore, calls: dict[str, str]) -> None:
    first = await qa.search(RecordingSearch(), offset=0, limit=3)
    second = await qa.search(RecordingSearch(), offset=3, limit=3)
    assert [r.recording_id for r in first.rows] == [calls["d"], calls["c"], calls["b"]] and first.has_more
    assert [r.recording_id for r in second.rows] == [calls["a"]] and not second.has_more


async def test_form_versions(qa: QaStore) -> None:
    first = await qa.create_form(parse_form(FORM), actor="admin", at=T)
    assert (first.name, first.version, first.active) == ("Sales call", 1, True)
    changed = {**FORM, "sections": [{**FORM["sections"][0], "title": "Opening and identification"}]}  # type: ignore[dict-item]
    second = await qa.create_form(parse_form(changed), actor="admin", at=T + timedelta(minutes=1))
    assert (second.version, second.active) == (2, True)
    assert [(f.version, f.active) for f in await qa.forms(include_inactive=True)] == [(2, True), (1, False)]
    assert [f.id for f in await qa.forms()] == [second.id]
    assert (await qa.form(first.id)).form().sections[0].title == "Opening"  # a version never changes
    # Bringing the first version back retires the second.
    assert (await qa.set_form_active(first.id, True)).active
    assert [(f.version, f.active) for f in await qa.forms(include_inactive=True)] == [(2, False), (1, True)]
    assert not (await qa.set_form_active(first.id, False)).active
    assert await qa.forms() == []
    with pytest.raises(QaNotFound):
        await qa.form(9999)


async def test_evaluations_are_scored_kept_and_searched_by_score(qa: QaStore, calls: dict[str, str]) -> None:
    form = await qa.create_form(parse_form(FORM), actor="admin", at=T)
    good = await qa.evaluate(recording_id=calls["a"], form_id=form.id, answers={"greeting": "yes", "rapport": 5},
                             summary=" Clear and friendly. ", evaluator="qa1", at=T)
    assert good.score == 100.0 and good.agent_id == "agent01" and good.summary == "Clear and friendly."
    assert good.interaction_id is not None and good.section_scores == {"opening": 100.0}
    poor = await qa.evaluate(recording_id=calls["b"], form_id=form.id, answers={"greeting": "no", "rapport": "na"},
                             summary=None, evaluator="qa1", at=T + timedelta(minutes=1))
    assert poor.score == 0.0 and poor.agent_id == "agent02"
    # A second evaluation of the same call: the call's score is the mean.
    await qa.evaluate(recording_id=calls["a"], form_id=form.id, answers={"greeting": "yes", "rapport": 3},
                      summary=None, evaluator="admin", at=T + timedelta(minutes=2))
    row = await qa.recording(calls["a"])
    assert row.evaluations == 2 and row.score == 87.5  # (100 + 75) / 2

    assert await found(qa, min_score=50) == [calls["a"]]
    assert await found(qa, max_score=50) == [calls["b"]]
    assert await found(qa, min_score=0, max_score=100) == [calls["b"], calls["a"]]  # unscored calls have no score

    assert [e.agent_id for e in await qa.evaluations(agent_id="agent01")] == ["agent01", "agent01"]
    assert [e.id for e in await qa.evaluations(agent_id="agent02")] == [poor.id]
    assert [e.evaluator for e in await qa.evaluations(recording_id=calls["a"])] == ["admin", "qa1"]  # newest first
    detail = await qa.evaluation(good.id)
    assert detail.form is not None and detail.form["sections"][0]["questions"][0]["id"] == "greeting"
    assert detail.recording_started_at == T


async def test_bad_evaluations_are_refused(qa: QaStore, calls: dict[str, str]) -> None:
    form = await qa.create_form(parse_form(FORM), actor="admin", at=T)
    with pytest.raises(FormError) as caught:
        await qa.evaluate(recording_id=calls["a"], form_id=form.id, answers={"greeting": "na", "rapport": 5},
                          summary=None, evaluator="qa1", at=T)
    assert caught.value.field == "answers.greeting"
    with pytest.raises(QaNotFound) as missing:
        await qa.evaluate(recording_id="rec_missing", form_id=form.id, answers={}, summary=None, evaluator="qa1", at=T)
    assert missing.value.what == "recording"
    with pytest.raises(QaNotFound):
        await qa.evaluate(recording_id=calls["a"], form_id=9999, answers={}, summary=None, evaluator="qa1", at=T)
    await qa.set_form_active(form.id, False)
    with pytest.raises(QaConflict) as retired:
        await qa.evaluate(recording_id=calls["a"], form_id=form.id, answers={"greeting": "yes", "rapport": 5},
                          summary=None, evaluator="qa1", at=T)
    assert retired.value.code == "form_inactive"
    assert await qa.evaluations() == []


async def test_an_evaluation_is_revised_only_by_its_evaluator_on_its_own_form(qa: QaStore, calls: dict[str, str]) -> None:
    form = await qa.create_form(parse_form(FORM), actor="admin", at=T)
    mine = await qa.evaluate(recording_id=calls["c"], form_id=form.id, answers={"greeting": "no", "rapport": 1},
                             summary=None, evaluator="qa1", at=T)
    # A new version of the form does not change what the evaluation was scored on.
    await qa.create_form(parse_form({**FORM, "sections": [{**FORM["sections"][0], "weight": 2}]}), actor="admin", at=T)  # type: ignore[dict-item]
    with pytest.raises(QaConflict) as caught:
        await qa.revise(mine.id, answers={"greeting": "yes", "rapport": 5}, summary=None, actor="qa2", at=T)
    assert caught.value.code == "not_your_evaluation"
    later = T + timedelta(hours=1)
    revised = await qa.revise(mine.id, answers={"greeting": "yes", "rapport": 5}, summary="Re-listened", actor="qa1", at=later)
    assert revised.score == 100.0 and revised.form_id == form.id and revised.updated_at == later
    assert revised.created_at == T and revised.summary == "Re-listened"
    with pytest.raises(QaNotFound):
        await qa.revise(9999, answers={}, summary=None, actor="qa1", at=T)


async def test_comments_are_pinned_inside_the_recording(qa: QaStore, calls: dict[str, str]) -> None:
    a = calls["a"]  # 2.0 s long
    late = await qa.add_comment(a, offset_ms=1500, text="Risk warning read here", author="qa1", at=T)
    early = await qa.add_comment(a, offset_ms=0, text="  Greeting  ", author="admin", at=T + timedelta(minutes=1))
    assert early.text == "Greeting"
    assert [c.id for c in await qa.comments(a)] == [early.id, late.id]  # in recording order
    await qa.add_comment(a, offset_ms=2000, text="the very end", author="qa1", at=T)
    with pytest.raises(FormError) as past:
        await qa.add_comment(a, offset_ms=2001, text="after the end", author="qa1", at=T)
    assert past.value.field == "offset_ms"
    with pytest.raises(FormError) as empty:
        await qa.add_comment(a, offset_ms=10, text="   ", author="qa1", at=T)
    assert empty.value.field == "text"
    with pytest.raises(QaNotFound):
        await qa.add_comment("rec_missing", offset_ms=0, text="x", author="qa1", at=T)
    assert await qa.comments(calls["b"]) == []


async def test_the_export_streams_every_match_as_rfc4180_csv_without_formulas(qa: QaStore, calls: dict[str, str]) -> None:
    rows = [row async for row in qa.export(RecordingSearch(), page=2)]  # several pages
    assert [r.recording_id for r in rows] == [calls["d"], calls["c"], calls["b"], calls["a"]]
    assert [r.recording_id async for r in qa.export(RecordingSearch(agent_id="agent01"), page=1)] == [calls["c"], calls["a"]]

    text = csv_header() + "".join(csv_line(r) for r in rows)
    assert text.endswith("\r\n") and "\r\n" in text.split("\n", 1)[0] + "\n"
    parsed = list(csv.DictReader(io.StringIO(text, newline="")))
    assert list(parsed[0]) == list(CSV_COLUMNS)
    by_id = {row["recording_id"]: row for row in parsed}
    a = by_id[calls["a"]]
    # The note starts with "=": a spreadsheet would run it; it comes out as text.
    assert a["notes"] == '\'=HYPERLINK("http://evil.example","click"), then "quoted", and\na second line'
    assert a["customer_name"] == "Lena Hoffmann" and a["disposition"] == "trade_query"
    assert a["duration_s"] == "2.000" and a["paused_s"] == "0.500" and a["score"] == ""
    assert by_id[calls["c"]]["notes"] == "'@SUM(1)"
    assert by_id[calls["d"]]["customer_name"] == "" and by_id[calls["d"]]["interaction_id"] == ""
