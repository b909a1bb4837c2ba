"""A streaming WAV writer for recordings: 16-bit PCM, 8 kHz, two channels.

Owns the file format and the file's digest. Frames are appended as they come; after
every append the RIFF and data sizes in the 44-byte header are patched, so a process
that dies mid-call leaves a valid WAV holding everything up to the last complete
append (at most one append of audio is lost; `repair_header` fixes a file whose last
append was torn). The SHA-256 of the audio is computed incrementally from the bytes as
they are produced. The header changes on every append and comes first in the file, so
the digest of the whole file can only be taken once the header is final: `close`
reads the file back once, checks that the audio on disk hashes to what was produced
(nothing altered it while the call ran), and returns the SHA-256 of the whole file --
what `sha256sum` prints, so an auditor can check a copy with standard tools.

Blocking file I/O: call it from a worker thread, never on the event loop. Each append
is two system calls, the audio and the whole header, each written at its own offset
(`os.pwrite`): hundreds of recordings append every second, and a buffered
file's seeks and flushes around the header patch cost several more.
Must never: hold the whole recording in memory, or know about RTP, codecs or databases.
"""

from __future__ import annotations

import hashlib
import os
import struct
from dataclasses import dataclass
from pathlib import Path

SAMPLE_RATE = 8000
CHANNELS = 2
SAMPLE_WIDTH = 2
FRAME_BYTES = CHANNELS * SAMPLE_WIDTH
HEADER_BYTES = 44
_READ_CHUNK = 1 << 20


class WavWriterError(RuntimeError):
    """The writer was misused (closed, odd frames) or the file changed under it."""


def wav_header(data_bytes: int) -> bytes:
    """The canonical 44-byte PCM WAV header for `data_bytes` of 16-bit 8 kHz stereo."""
    return struct.pack(
        "<4sI4s4sIHHIIHH4sI",
        b"RIFF",
        36 + data_bytes,
        b"WAVE",
        b"fmt ",
        16,
        1,  # PCM
        CHANNELS,
        SAMPLE_RATE,
        SAMPLE_RATE * FRAME_BYTES,
        FRAME_BYTES,
        8 * SAMPLE_WIDTH,
        b"data",
        data_bytes,
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class ClosedWav:
    path: Path
    sha256: str  # of the whole file
    data_sha256: str  # of the audio after the header
    size_bytes: int
    frames: int

    @property
    def duration_s(self) -> float:
        return self.frames / SAMPLE_RATE


def file_sha256(path: str | os.PathLike[str]) -> str:
    """SHA-256 of a file, read in chunks (blocking)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_READ_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


class StereoWavWriter:
    """Appends interleaved 16-bit stereo frames (caller left, agent right) to a new file.

    `durable=True` fsyncs after every append as well as on close; off by default since
    the header patch already bounds what a crash can lose to one append."""

    def __init__(self, path: str | os.PathLike[str], *, durable: bool = False) -> None:
        self.path = Path(path)
        self._durable = durable
        # "x": never overwrite an existing recording. Unbuffered: every write below is
        # one system call at an explicit offset.
        self._file = open(self.path, "xb", buffering=0)  # noqa: SIM115 -- open across appends, closed by close/abort
        self._fd = self._file.fileno()
        self._data_bytes = 0
        _write_at(self._fd, wav_header(0), 0)
        self._digest = hashlib.sha256()
        self._closed: ClosedWav | None = None

    @property
    def frames(self) -> int:
        return self._data_bytes // FRAME_BYTES

    @property
    def closed(self) -> bool:
        return self._closed is not None

    def append(self, frames: bytes) -> None:
        """Write whole stereo frames at the end and patch the header's sizes."""
        if self._closed is not None:
            raise WavWriterError(f"{self.path} is already closed")
        if len(frames) % FRAME_BYTES:
            raise WavWriterError(f"{len(frames)} bytes is not a whole number of stereo frames")
        if not frames:
            return
        _write_at(self._fd, frames, HEADER_BYTES + self._data_bytes)
        self._digest.update(frames)
        self._data_bytes += len(frames)
        self._patch_header()
        if self._durable:
            os.fsync(self._fd)

    def append_silence(self, count: int) -> None:
        """`count` frames of silence on both channels, in bounded pieces."""
        while count > 0:
            step = min(count, SAMPLE_RATE)
            self.append(bytes(FRAME_BYTES * step))
            count -= step

    def close(self, *, read_only: bool = True) -> ClosedWav:
        """Finish the file: sizes, fsync, digest check; read-only afterwards by default
        (recordings must not be alterable -- the integrity chain catches it if they are)."""
        if self._closed is not None:
            return self._closed
        self._patch_header()
        os.fsync(self._fd)
        self._file.close()
        data_sha256 = self._digest.hexdigest()
        whole, on_disk = self._hash_back()
        if on_disk != data_sha256:
            raise WavWriterError(f"{self.path} changed on disk while it was being written")
        if read_only:
            os.chmod(self.path, 0o440)
        self._closed = ClosedWav(
            path=self.path,
            sha256=whole,
            data_sha256=data_sha256,
            size_bytes=HEADER_BYTES + self._data_bytes,
            frames=self.frames,
        )
        return self._closed

    def abort(self) -> None:
        """Close without the digest check (after an error); the file stays as written."""
        if not self._file.closed:
            try:
                self._patch_header()
            finally:
                self._file.close()

    def _patch_header(self) -> None:
        # The whole header in one write: only the two sizes change, and one system
        # call is cheaper than two that skip the constant bytes between them.
        _write_at(self._fd, wav_header(self._data_bytes), 0)

    def _hash_back(self) -> tuple[str, str]:
        whole, data = hashlib.sha256(), hashlib.sha256()
        with open(self.path, "rb") as f:
            header = f.read(HEADER_BYTES)
            whole.update(header)
            while chunk := f.read(_READ_CHUNK):
                whole.update(chunk)
                data.update(chunk)
        return whole.hexdigest(), data.hexdigest()


def _write_at(fd: int, data: bytes, offset: int) -> None:
    """All of `data` at `offset` (a write to a regular file may still come back short)."""
    written = os.pwrite(fd, data, offset)
    if written == len(data):
        return
    view, offset = memoryview(data)[written:], offset + written
    while view:
        written = os.pwrite(fd, view, offset)
        if written <= 0:
            raise OSError(f"wrote nothing at offset {offset}")
        view, offset = view[written:], offset + written


def repair_header(path: str | os.PathLike[str]) -> int:
    """Make a file left by a crash consistent: drop a torn last frame and set the sizes
    from the file's length. Returns the number of frames kept. For unfinished files only
    (finished ones are read-only and chained)."""
    with open(path, "r+b") as f:
        size = f.seek(0, os.SEEK_END)
        if size < HEADER_BYTES:
            raise WavWriterError(f"{path} is shorter than a WAV header")
        data = (size - HEADER_BYTES) // FRAME_BYTES * FRAME_BYTES
        f.truncate(HEADER_BYTES + data)
        f.seek(0)
        f.write(wav_header(data))
    return data // FRAME_BYTES
