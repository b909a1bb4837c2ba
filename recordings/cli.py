"""`ctihub recordings verify` and `ctihub recordings purge`.

Owns the two commands' arguments, output and exit codes: `verify` prints every
mismatch, one per line, then each S3 recording still waiting for its upload (not a
mismatch), then a summary with the chain head (to anchor outside the database) and
exits 1 when there was any mismatch; `purge` deletes what retention allows, prints
each purged recording and what legal holds kept, and exits 1 when a purge failed.
Exit 2: the settings or the database are unusable. Both work on either store: with
`CTIHUB_RECORDINGS_STORE=s3` (and its settings, in the environment as for the hub)
they check and delete objects in the bucket too. `cti.cli` mounts them with
`add_parser(commands)` and dispatches with `run(args)`.
Must never: migrate or otherwise change the schema (the hub does that when it starts).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import TextIO

from sqlalchemy.exc import SQLAlchemyError

from cti.config import ConfigError, load_settings
from cti.db import make_engine, make_sessionmaker
from recordings.s3_storage import S3Storage, s3_errors, s3_storage_from_settings
from recordings.storage import FileStorage
from recordings.store import RecordingStore


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> argparse.ArgumentParser:
    """Add `recordings verify|purge` to the `ctihub` parser's subcommands."""
    parser = commands.add_parser("recordings", help="integrity check and retention purge of call recordings")
    actions = parser.add_subparsers(dest="recordings_command", required=True)
    for name, help_text in (
        ("verify", "recompute file hashes and the hash chain; exit 1 on any mismatch"),
        ("purge", "delete recordings past retention and not on legal hold; log what went"),
    ):
        sub = actions.add_parser(name, help=help_text)
        sub.add_argument("--data-dir", help="the hub's data dir (default ./var)")
        sub.add_argument("--database-url", help="SQLAlchemy URL (default SQLite in the data dir)")
        sub.add_argument("--recordings-dir", help="the recordings root (default <data dir>/recordings)")
    verify = actions.choices["verify"]
    verify.add_argument("--skip-files", action="store_true", help="check the chain only, not the files")
    purge = actions.choices["purge"]
    purge.add_argument("--actor", default="retention", help="who runs the purge, for the log (default retention)")
    return parser


def run(args: argparse.Namespace, *, environ: Mapping[str, str] | None = None, out: TextIO | None = None) -> int:
    """Run the parsed `recordings` command; returns the exit code."""
    out = out or sys.stdout
    flags = {"data_dir": args.data_dir, "database_url": args.database_url}
    try:
        settings = load_settings(flags, environ=environ)
        objects = s3_storage_from_settings(settings, environ)
    except ConfigError as err:
        print(f"ctihub: {err}", file=sys.stderr)
        return 2
    root = Path(args.recordings_dir) if args.recordings_dir else settings.effective_recordings_dir
    url = settings.effective_database_url
    if args.recordings_command == "verify":
        return asyncio.run(verify_command(url, root, check_files=not args.skip_files, out=out, objects=objects))
    if args.recordings_command == "purge":
        return asyncio.run(purge_command(url, root, actor=args.actor, out=out, objects=objects))
    return 2


async def verify_command(
    database_url: str,
    root: Path,
    *,
    check_files: bool = True,
    out: TextIO | None = None,
    objects: S3Storage | None = None,
) -> int:
    out = out or sys.stdout
    engine = make_engine(database_url)
    try:
        store = RecordingStore(make_sessionmaker(engine), FileStorage(root), objects)
        report = await store.verify(check_files=check_files)
    except SQLAlchemyError as err:
        print(f"ctihub: cannot read the recordings database: {_first_line(err)}", file=sys.stderr)
        return 2
    except s3_errors() as err:
        print(f"ctihub: cannot read the recordings' S3 store: {_first_line(err)}", file=sys.stderr)
        return 2
    finally:
        await engine.dispose()
    for problem in report.problems:
        print(f"MISMATCH {problem}", file=out)
    for pending in report.pending_uploads:
        print(
            f"PENDING upload of {pending.id} ({pending.path}): {pending.upload_error or 'not tried or in progress'}",
            file=out,
        )
    print(
        f"checked {report.checked} recording(s); chain head: sequence {report.head_seq} {report.head_hash}; "
        f"{len(report.problems)} mismatch(es)",
        file=out,
    )
    return 0 if report.ok else 1


async def purge_command(
    database_url: str,
    root: Path,
    *,
    actor: str = "retention",
    now: datetime | None = None,
    out: TextIO | None = None,
    objects: S3Storage | None = None,
) -> int:
    out = out or sys.stdout
    engine = make_engine(database_url)
    moment = now or datetime.now(UTC)
    try:
        store = RecordingStore(make_sessionmaker(engine), FileStorage(root), objects)
        report = await store.purge(moment, actor=actor)
    except SQLAlchemyError as err:
        print(f"ctihub: cannot read the recordings database: {_first_line(err)}", file=sys.stderr)
        return 2
    except s3_errors() as err:
        print(f"ctihub: cannot use the recordings' S3 store: {_first_line(err)}", file=sys.stderr)
        return 2
    finally:
        await engine.dispose()
    for purged in report.purged:
        print(
            f"purged {purged.id} {purged.path} (retention until {purged.retention_until.isoformat()}) "
            f"at {purged.deleted_at.isoformat()}",
            file=out,
        )
    for recording_id in report.held:
        print(f"kept {recording_id}: legal hold", file=out)
    for recording_id in report.swept:
        print(f"deleted the leftover file of {recording_id}", file=out)
    for recording_id, error in report.failed:
        print(f"FAILED {recording_id}: {error}", file=out)
    print(
        f"{len(report.purged)} purged, {len(report.held)} on legal hold, {len(report.failed)} failed", file=out
    )
    return 1 if report.failed else 0


def _first_line(err: Exception) -> str:
    """The driver's own message, without the SQL and background links SQLAlchemy adds."""
    original = getattr(err, "orig", None)
    return str(original if original is not None else err).splitlines()[0]
