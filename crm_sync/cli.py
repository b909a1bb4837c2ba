"""`ctihub crm import`, `ctihub crm export` and `ctihub demo-data`.

Owns the commands' arguments, the import pipeline around the pure row validation
(read the CSV, validate, check across rows, write in batches through `bulk`, report),
progress lines on stderr (at most one a second), the summary on stdout and the exit
codes: 0 when every row was imported, 1 when some were rejected (each is in the
report with its line and reasons), 2 with one line on stderr for anything the
operator must fix first (bad settings, an unreadable file or header, an unusable
database). `cti.cli` mounts them with `add_parser(commands)` and dispatches with
`run(args)`. Import and demo-data migrate the schema first, as `serve` does; export
only reads. Must never: print or write a full document number (`importer` refuses
them and masks them in the report), or keep a whole file in memory.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import csv
import gc
import sys
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

from sqlalchemy.exc import SQLAlchemyError

from crm_sync import importer
from crm_sync.bulk import BatchResult, History, cheap_timestamps, prefetch, write_batch
from cti.config import ConfigError, Settings, load_settings
from cti.db import make_engine, make_sessionmaker, migrate

__all__ = ["ImportSummary", "add_parser", "import_csv", "run"]

DEFAULT_BATCH = 5000
SHOWN_REJECTIONS = 10  # on stderr; the report has all of them


class _Refused(Exception):
    """The one line to print before exiting 2."""


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `crm import|export` and `demo-data` to the `ctihub` parser's subcommands."""
    crm = commands.add_parser("crm", help="import and export customers as CSV (docs/crm-import.md)")
    actions = crm.add_subparsers(dest="crm_command", required=True)
    load = actions.add_parser("import", help="import customers from a CSV file; exit 1 if any row was rejected")
    load.add_argument("file", help="the CSV file (UTF-8, header first; see docs/crm-import.md)")
    load.add_argument("--update-existing", action="store_true",
                      help="update customers whose id is already stored (default: reject those rows)")
    load.add_argument("--report", help="where to write the rejected rows with reasons (default <file>.rejected.csv)")
    load.add_argument("--batch-size", type=int, default=DEFAULT_BATCH, help=f"rows per transaction ({DEFAULT_BATCH})")
    load.add_argument("--redis-url", help="Redis URL: drop the cached profiles of imported customers")
    dump = actions.add_parser("export", help="write every customer as CSV, in the format import reads")
    dump.add_argument("-o", "--output", default="-", help="the file to write, or - for stdout (default)")
    demo = commands.add_parser("demo-data", help="fill the CRM with generated, realistic demo customers")
    demo.add_argument("--customers", type=int, required=True, help="how many customers in all (4 fixed ones included)")
    demo.add_argument("--seed", type=int, default=7, help="the generator's seed (default 7)")
    demo.add_argument("--batch-size", type=int, default=2000, help="customers per transaction (default 2000)")
    for sub in (load, dump, demo):
        sub.add_argument("--data-dir", help="the hub's data dir (default ./var)")
        sub.add_argument("--database-url", help="SQLAlchemy URL (default SQLite in the data dir)")


def run(args: argparse.Namespace, *, environ: Mapping[str, str] | None = None, out: TextIO | None = None,
        err: TextIO | None = None) -> int:
    """Run the parsed `crm` or `demo-data` command; returns the exit code."""
    out = out or sys.stdout
    err = err or sys.stderr
    try:
        flags = {"data_dir": args.data_dir, "database_url": args.database_url,
                 "redis_url": getattr(args, "redis_url", None)}
        settings = load_settings(flags, environ=environ)
        if args.command == "demo-data":
            return asyncio.run(_demo_data(settings, args, out, err))
        if args.crm_command == "import":
            return asyncio.run(_import(settings, args, out, err))
        if args.crm_command == "export":
            if args.output == "-":
                return asyncio.run(_export(settings, sys.stdout, err))
            with open(args.output, "w", encoding="utf-8", newline="") as handle:
                return asyncio.run(_export(settings, handle, err))
    except (ConfigError, _Refused, importer.HeaderError) as problem:
        print(f"ctihub: {problem}", file=err)
        return 2
    except (SQLAlchemyError, OSError, UnicodeDecodeError, csv.Error) as problem:
        print(f"ctihub: {_describe(problem)}", file=err)
        return 2
    return 2


def _describe(problem: BaseException) -> str:
    if isinstance(problem, SQLAlchemyError):
        return f"cannot use the database: {_first_line(problem)}"
    if isinstance(problem, UnicodeDecodeError):
        return f"the file is not UTF-8 ({problem.reason} at byte {problem.start})"
    if isinstance(problem, csv.Error):
        return f"the file is not valid CSV: {problem}"
    return _first_line(problem)


def _first_line(problem: BaseException) -> str:
    original = getattr(problem, "orig", None)
    text = str(original if original is not None else problem).strip()
    return text.splitlines()[0] if text else type(problem).__name__


def _database_url(settings: Settings) -> str:
    if not settings.database_url:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
    return settings.effective_database_url


class _Progress:
    """Progress lines on stderr, at most one a second (the last one always)."""

    def __init__(self, err: TextIO, label: str, total: int | None = None, interval_s: float = 1.0,
                 unit: str = "rows") -> None:
        self._err = err
        self._label = label
        self._unit = unit
        self._total = total
        self._interval_s = interval_s
        self.started = time.monotonic()
        self._last = self.started

    def __call__(self, done: int, extra: str = "", *, final: bool = False) -> None:
        now = time.monotonic()
        if not final and now - self._last < self._interval_s:
            return
        self._last = now
        rate = done / max(now - self.started, 1e-9)
        of = f" of {self._total:,}" if self._total is not None else ""
        unit = self._unit
        print(f"{self._label}: {done:,}{of} {unit}, {rate:,.0f} {unit}/s{extra}", file=self._err, flush=True)


@contextlib.contextmanager
def _few_collections() -> Iterator[None]:
    """Collect garbage far less often while rows stream through.

    Each batch is thousands of fresh dicts and tuples, and the default thresholds
    start a collection every 700 of them, scanning the batch again and again (about a
    fifth of the validation's CPU time). The rows form no reference cycles, so
    nothing is lost by waiting; what was alive before is frozen out of the scans.
    """
    thresholds = gc.get_threshold()
    gc.freeze()
    gc.set_threshold(100_000, 50, 1000)
    try:
        yield
    finally:
        gc.set_threshold(*thresholds)
        gc.unfreeze()


# --- import ------------------------------------------------------------------------


@dataclass(slots=True)
class _Batch:
    """One batch of the file: the valid bundles and the rows already rejected."""

    bundles: list[importer.Bundle] = field(default_factory=list)
    lines: list[int] = field(default_factory=list)
    cells: list[dict[str, str]] = field(default_factory=list)
    rejected: list[tuple[int, dict[str, str], list[importer.Problem]]] = field(default_factory=list)
    rows: int = 0


@dataclass(slots=True)
class ImportSummary:
    rows: int = 0
    inserted: int = 0
    updated: int = 0
    rejected: int = 0
    seconds: float = 0.0
    report: Path | None = None
    shown: list[str] = field(default_factory=list)

    @property
    def rows_per_s(self) -> float:
        return self.rows / self.seconds if self.seconds > 0 else 0.0


def _batches(reader: Iterator[list[str]], header: list[str], *, line_of: Callable[[], int], now: datetime,
             size: int) -> Iterator[_Batch]:
    """Validated batches of `size` rows; runs in `prefetch`'s worker thread."""
    checks = importer.FileChecks()
    width = len(header)
    batch = _Batch()
    line = line_of()
    for values in reader:
        first_line, line = line + 1, line_of()
        if not values:
            continue  # a blank line
        batch.rows += 1
        cells = dict(zip(header, values, strict=False))
        if len(values) != width:
            problems = [("-", f"has {len(values)} fields, the header {width}")]
            batch.rejected.append((first_line, cells, problems))
        else:
            outcome = importer.validate_row(cells, now=now, new_id=_new_id)
            if isinstance(outcome, list):
                batch.rejected.append((first_line, cells, outcome))
            else:
                problems = checks.check(outcome, first_line)
                if problems:
                    batch.rejected.append((first_line, cells, problems))
                else:
                    batch.bundles.append(outcome)
                    batch.lines.append(first_line)
                    batch.cells.append(cells)
        if batch.rows >= size:
            yield batch
            batch = _Batch()
    if batch.rows:
        yield batch


def _new_id() -> str:
    return f"cus_{uuid.uuid4().hex[:24]}"


class _Report:
    """The rejected rows with `_line` and `_errors` first; created on the first one."""

    def __init__(self, path: Path, header: list[str], *, always: bool) -> None:
        self.path = path
        self._fields = ["_line", "_errors", *[h for h in header if h not in ("_line", "_errors")]]
        self._file: TextIO | None = None
        self._writer: Any = None
        if always:
            self._open()
        elif path.exists():
            # A report left by an earlier run would describe rows this run imported.
            path.unlink()

    def _open(self) -> None:
        self._file = self.path.open("w", encoding="utf-8", newline="")
        self._writer = csv.DictWriter(self._file, fieldnames=self._fields, lineterminator="\n",
                                      extrasaction="ignore")
        self._writer.writeheader()

    def write(self, line: int, cells: Mapping[str, str], problems: list[importer.Problem]) -> None:
        if self._file is None:
            self._open()
        self._writer.writerow(importer.report_row(cells, line, problems))

    @property
    def written(self) -> bool:
        return self._file is not None

    def close(self) -> None:
        if self._file is not None:
            self._file.close()


class _CachedProfiles:
    """Drops the cached profiles of written customers in Redis; does nothing without Redis.

    A failure is reported once and the import goes on: the rows are committed, and a
    cached profile expires by itself (RedisProfileCache's TTL).
    """

    def __init__(self, redis_url: str | None, err: TextIO) -> None:
        self._err = err
        self._client: Any = None
        self._cache: Any = None
        if redis_url is not None:
            import redis.asyncio as aioredis

            from crm_sync.cache import RedisProfileCache

            self._client = aioredis.from_url(redis_url)
            self._cache = RedisProfileCache(self._client)

    @property
    def active(self) -> bool:
        return self._cache is not None

    async def drop(self, customer_ids: list[str]) -> None:
        if self._cache is None or not customer_ids:
            return
        try:
            await self._cache.invalidate(*customer_ids)
        except Exception as problem:  # noqa: BLE001 - whatever Redis does, the import goes on
            self._cache = None
            print(f"ctihub: warning: could not drop cached profiles in Redis ({_first_line(problem)}); "
                  "they expire by themselves", file=self._err)

    async def close(self) -> None:
        if self._client is not None:
            await self._client.aclose()


async def import_csv(database_url: str, path: Path, *, update_existing: bool = False, report: Path | None = None,
                     batch_size: int = DEFAULT_BATCH, redis_url: str | None = None, now: datetime | None = None,
                     err: TextIO | None = None) -> ImportSummary:
    """Import the CSV file at `path`; returns the counts (the caller prints them).

    Raises `HeaderError` for a header that cannot be imported and OSError for a file
    that cannot be read, before anything is written.
    """
    err = err or sys.stderr
    now = now or datetime.now(UTC).replace(microsecond=0)  # whole seconds: the times the export writes
    summary = ImportSummary()
    with path.open(encoding="utf-8-sig", newline="") as handle:
        reader = csv.reader(handle)
        header = [name.strip() for name in next(reader, [])]
        plan = importer.plan_header(header)
        report_path = report or path.with_name(path.name + ".rejected.csv")
        engine = make_engine(database_url)
        cheap_timestamps(engine)
        cached = _CachedProfiles(redis_url, err)
        sink = _Report(report_path, header, always=report is not None)
        try:
            await migrate(engine)
            progress = _Progress(err, "crm import")  # rows/s from here: the migration is not the import
            sessionmaker = make_sessionmaker(engine)
            # The KYC history's event id of a row: which import, which line.
            source = f"import:{path.name[:150]}:"
            batches = _batches(reader, header, line_of=lambda: reader.line_num, now=now, size=batch_size)
            # aclosing: on an error the worker thread's read finishes before the file closes.
            with _few_collections():
                async with contextlib.aclosing(prefetch(batches)) as stream:
                    async for batch in stream:
                        result = await write_batch(
                            sessionmaker, batch.bundles, now=now,
                            update_columns=plan.update_columns if update_existing else None, replace=plan.replace,
                            history=History(source, batch.lines),
                        )
                        if cached.active:
                            written = result.inserted + result.updated
                            await cached.drop([batch.bundles[i]["customer"]["id"] for i in written])
                        _tally(summary, batch, result, sink)
                        progress(summary.rows, f", {summary.rejected:,} rejected")
        finally:
            sink.close()
            await cached.close()
            await engine.dispose()
    summary.seconds = time.monotonic() - progress.started
    summary.report = sink.path if sink.written else None
    return summary


def _tally(summary: ImportSummary, batch: _Batch, result: BatchResult, sink: _Report) -> None:
    rejected = list(batch.rejected)
    for i in result.existing:
        customer_id = batch.bundles[i]["customer"]["id"]
        rejected.append((batch.lines[i], batch.cells[i],
                         [("id", f"customer {customer_id} already exists (--update-existing updates it)")]))
    for i, column, reason in result.rejected:
        rejected.append((batch.lines[i], batch.cells[i], [(column, reason)]))
    for line, cells, problems in sorted(rejected, key=lambda r: r[0]):
        sink.write(line, cells, problems)
        if len(summary.shown) < SHOWN_REJECTIONS:
            summary.shown.append(f"line {line}: " + "; ".join(f"{c}: {r}" for c, r in problems))
    summary.rows += batch.rows
    summary.inserted += len(result.inserted)
    summary.updated += len(result.updated)
    summary.rejected += len(rejected)


async def _import(settings: Settings, args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    path = Path(args.file)
    if not path.is_file():
        raise _Refused(f"no such file: {args.file}")
    if args.batch_size < 1:
        raise _Refused("--batch-size must be at least 1")
    summary = await import_csv(
        _database_url(settings), path, update_existing=args.update_existing,
        report=Path(args.report) if args.report else None, batch_size=args.batch_size,
        redis_url=settings.redis_url, err=err,
    )
    for line in summary.shown:
        print(f"rejected {line}", file=err)
    if summary.rejected > len(summary.shown):
        print(f"... and {summary.rejected - len(summary.shown):,} more rejected rows", file=err)
    print(f"imported {summary.inserted + summary.updated:,} of {summary.rows:,} rows ({summary.inserted:,} new, "
          f"{summary.updated:,} updated), rejected {summary.rejected:,}; {summary.seconds:.1f} s, "
          f"{summary.rows_per_s:,.0f} rows/s", file=out)
    if summary.report is not None:
        print(f"rejected rows and reasons: {summary.report}", file=out)
    return 1 if summary.rejected else 0


# --- export and demo data -------------------------------------------------------------


async def _export(settings: Settings, output: TextIO, err: TextIO) -> int:
    from crm_sync.exporter import export_customers

    engine = make_engine(_database_url(settings))
    progress = _Progress(err, "crm export", unit="customers")
    try:
        count = await export_customers(make_sessionmaker(engine), output, progress=progress)
        output.flush()
    finally:
        await engine.dispose()
    print(f"exported {count:,} customers", file=err)
    return 0


async def _demo_data(settings: Settings, args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from crm_sync.demo import seed_demo_crm

    if args.customers < 0:
        raise _Refused("--customers must be 0 or more")
    if args.batch_size < 1:
        raise _Refused("--batch-size must be at least 1")
    engine = make_engine(_database_url(settings))
    cheap_timestamps(engine)
    progress = _Progress(err, "demo-data", total=args.customers, unit="customers")
    try:
        await migrate(engine)
        with _few_collections():
            count = await seed_demo_crm(make_sessionmaker(engine), customers=args.customers, seed=args.seed,
                                        batch_size=args.batch_size, progress=progress)
    except RuntimeError as problem:  # a generated customer the database refused: another seed's data
        raise _Refused(str(problem)) from None
    finally:
        await engine.dispose()
    seconds = time.monotonic() - progress.started
    print(f"{count:,} customers in the database (asked for {args.customers:,}, seed {args.seed}); "
          f"{seconds:.1f} s", file=out)
    return 0
