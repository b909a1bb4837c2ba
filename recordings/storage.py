"""Where recording files live on the local filesystem: the recordings tree (the
default store) and, with the S3 store, the spool that files wait in until uploaded.

Owns the layout `<root>/<YYYY>/<MM>/<DD>/<recording id>.<wav|flac>` (by start date,
UTC), the mapping between stored relative paths and files, hashing and deleting files,
and listing what the tree holds for the integrity check. Paths in the database are
relative to the root, so the tree can move; the S3 store (`recordings.s3_storage`)
keys objects by the same relative path under its prefix.
All methods block on file I/O: call them from a worker thread.
Must never: read or write the database, or open a file for writing (the recorder does).
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath

from recordings.writer import file_sha256

# The recording formats (CTIHUB_RECORDING_FORMAT), their file suffixes and MIME types.
FORMATS = ("wav", "flac")
SUFFIXES = {"wav": ".wav", "flac": ".flac"}
MIME_TYPES = {"wav": "audio/wav", "flac": "audio/flac"}
PART = ".part"  # a file still being written, or left unfinished by a crash
_RECORDING_NAMES = tuple(SUFFIXES.values()) + tuple(suffix + PART for suffix in SUFFIXES.values())


def new_recording_id() -> str:
    return "rec_" + secrets.token_hex(16)


def format_of(relative: str) -> str:
    """The format of a recording file, from its name."""
    for file_format, suffix in SUFFIXES.items():
        if relative.endswith(suffix):
            return file_format
    raise ValueError(f"{relative!r} is not a recording file ({', '.join(SUFFIXES.values())})")


class FileStorage:
    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root).resolve()

    def new_path(self, recording_id: str, started_at: datetime, *, file_format: str = "wav") -> Path:
        """The absolute path a new recording is written to (its directories are made by
        the recorder)."""
        if not recording_id or "/" in recording_id or recording_id.startswith("."):
            raise ValueError(f"unusable recording id {recording_id!r}")
        day = started_at.astimezone(UTC)
        if file_format not in SUFFIXES:
            raise ValueError(f"unknown recording format {file_format!r}")
        name = f"{recording_id}{SUFFIXES[file_format]}"
        return self.root / f"{day:%Y}" / f"{day:%m}" / f"{day:%d}" / name

    def relative(self, path: str | os.PathLike[str]) -> str:
        """The path as stored in the database (POSIX, relative to the root)."""
        absolute = Path(path).resolve()
        try:
            return absolute.relative_to(self.root).as_posix()
        except ValueError:
            raise ValueError(f"{absolute} is not under the recordings root {self.root}") from None

    def resolve(self, relative: str) -> Path:
        parts = PurePosixPath(relative)
        if parts.is_absolute() or ".." in parts.parts:
            raise ValueError(f"stored path {relative!r} escapes the recordings root")
        return self.root.joinpath(*parts.parts)

    def exists(self, relative: str) -> bool:
        return self.resolve(relative).is_file()

    def sha256(self, relative: str) -> str | None:
        """The file's SHA-256, or None when it is missing."""
        try:
            return file_sha256(self.resolve(relative))
        except FileNotFoundError:
            return None

    def delete(self, relative: str) -> bool:
        """Delete the file; False when it was already gone."""
        try:
            self.resolve(relative).unlink()
            return True
        except FileNotFoundError:
            return False

    def files(self) -> Iterator[str]:
        """Relative paths of every finished and unfinished recording file in the tree."""
        if not self.root.is_dir():
            return
        for directory, _dirs, names in os.walk(self.root):
            for name in names:
                if name.endswith(_RECORDING_NAMES):
                    yield (Path(directory) / name).relative_to(self.root).as_posix()
