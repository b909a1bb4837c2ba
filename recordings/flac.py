"""A streaming FLAC writer for recordings: 16-bit, 8 kHz, two channels, lossless.

Owns the compressed format (`CTIHUB_RECORDING_FORMAT=flac`): the same interleaved
frames the WAV writer takes (caller left, agent right) go to libsndfile's FLAC encoder
(through `soundfile`) as they come, and the encoder writes each finished FLAC frame to
the file straight away, so the call is never held in memory and the file grows while
the call goes on. Lossless matters: a PCI pause stays exact digital silence and the
audio an auditor decodes is, sample for sample, what the recorder produced.

Integrity at close: the encoder rewrites the STREAMINFO block (total samples and the
MD5 of the audio) when the stream ends, so, as with WAV, the digest of the whole file
can only be taken once it is closed. `close` then decodes the file once and checks
that it holds exactly the frames produced (the MD5 of the decoded audio against the
MD5 kept while appending, and against STREAMINFO's): nothing altered the file while
the call ran and the encoder lost nothing. Decoding a minute of 8 kHz stereo costs
about 13 ms of CPU, in the worker thread. Then it returns the SHA-256 of the whole
file, what `sha256sum` prints.

What a crash leaves: a `.part` FLAC stream whose STREAMINFO still says "length
unknown"; standard decoders (`flac -d`, ffmpeg) read it up to the last complete FLAC
frame (a few hundred milliseconds of audio may be missing at the end).
Blocking file I/O and encoding: call it from a worker thread, never on the event loop
(libsndfile runs without the GIL).
Must never: hold the whole recording in memory, or know about RTP, codecs or databases.
"""

from __future__ import annotations

import hashlib
import os
import sys
from array import array
from dataclasses import dataclass
from pathlib import Path

import soundfile

from recordings.writer import CHANNELS, FRAME_BYTES, SAMPLE_RATE, file_sha256

MIME_TYPE = "audio/flac"
_STREAMINFO_BYTES = 4 + 4 + 34  # "fLaC", the metadata block header, STREAMINFO
_DECODE_FRAMES = 1 << 16


class FlacWriterError(RuntimeError):
    """The writer was misused (closed, odd frames) or the file is not what was written."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ClosedFlac:
    path: Path
    sha256: str  # of the whole file
    audio_md5: str  # of the decoded 16-bit little-endian interleaved audio (FLAC's own digest)
    size_bytes: int
    frames: int

    @property
    def duration_s(self) -> float:
        return self.frames / SAMPLE_RATE


@dataclass(frozen=True, slots=True, kw_only=True)
class StreamInfo:
    sample_rate: int
    channels: int
    bits_per_sample: int
    total_frames: int  # 0: unknown (a stream that was never closed)
    audio_md5: str  # all zeros: not computed


def read_stream_info(head: bytes) -> StreamInfo:
    """STREAMINFO from the first 42 bytes of a FLAC file (RFC 9639 §8.2)."""
    if len(head) < _STREAMINFO_BYTES or head[:4] != b"fLaC" or head[4] & 0x7F != 0:
        raise FlacWriterError("not a FLAC stream starting with STREAMINFO")
    info = head[8:_STREAMINFO_BYTES]
    packed = int.from_bytes(info[10:18], "big")  # rate 20 bits, channels-1 3, bps-1 5, samples 36
    return StreamInfo(
        sample_rate=packed >> 44,
        channels=((packed >> 41) & 0x7) + 1,
        bits_per_sample=((packed >> 36) & 0x1F) + 1,
        total_frames=packed & ((1 << 36) - 1),
        audio_md5=info[18:34].hex(),
    )


def _little_endian(frames: bytes) -> bytes:
    """The frames as the machine's int16 (the recorder produces little-endian PCM)."""
    if sys.byteorder == "little":
        return frames
    samples = array("h", frames)
    samples.byteswap()
    return samples.tobytes()


class StereoFlacWriter:
    """Appends interleaved 16-bit stereo frames to a new FLAC file.

    `durable=True` fsyncs after every append as well as on close."""

    def __init__(self, path: str | os.PathLike[str], *, durable: bool = False) -> None:
        self.path = Path(path)
        self._durable = durable
        # Created here, exclusively, like the WAV writer ("x": never overwrite a
        # recording); read-write because the encoder rewrites STREAMINFO at the end.
        self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o640)
        try:
            self._sound = soundfile.SoundFile(
                self._fd, mode="w", samplerate=SAMPLE_RATE, channels=CHANNELS,
                format="FLAC", subtype="PCM_16", closefd=False,
            )
        except Exception:
            os.close(self._fd)
            self.path.unlink()  # the empty file this constructor just made
            raise
        self._md5 = hashlib.md5(usedforsecurity=False)
        self._frames = 0
        self._closed: ClosedFlac | None = None
        self._open = True

    @property
    def frames(self) -> int:
        return self._frames

    @property
    def closed(self) -> bool:
        return self._closed is not None

    def append(self, frames: bytes) -> None:
        """Encode whole stereo frames; finished FLAC frames go to the file at once."""
        if not self._open:
            raise FlacWriterError(f"{self.path} is already closed")
        if len(frames) % FRAME_BYTES:
            raise FlacWriterError(f"{len(frames)} bytes is not a whole number of stereo frames")
        if not frames:
            return
        self._sound.buffer_write(_little_endian(frames), dtype="int16")
        self._md5.update(frames)
        self._frames += len(frames) // FRAME_BYTES
        if self._durable:
            os.fsync(self._fd)

    def append_silence(self, count: int) -> None:
        while count > 0:
            step = min(count, SAMPLE_RATE)
            self.append(bytes(FRAME_BYTES * step))
            count -= step

    def close(self, *, read_only: bool = True) -> ClosedFlac:
        """End the stream, check the file decodes to exactly what was appended, and
        make it read-only (by default)."""
        if self._closed is not None:
            return self._closed
        self._finish_stream()
        produced = self._md5.hexdigest()
        with open(self.path, "rb") as f:
            info = read_stream_info(f.read(_STREAMINFO_BYTES))
        if (info.sample_rate, info.channels, info.bits_per_sample) != (SAMPLE_RATE, CHANNELS, 16):
            raise FlacWriterError(f"{self.path} is not 8 kHz stereo 16-bit")
        if info.total_frames != self._frames:
            raise FlacWriterError(f"{self.path} says {info.total_frames} frames, {self._frames} were written")
        if info.audio_md5 != produced:
            raise FlacWriterError(f"{self.path}: the encoder's audio digest differs from the audio produced")
        try:
            decoded = decoded_md5(self.path)
        except (soundfile.LibsndfileError, RuntimeError) as err:
            raise FlacWriterError(f"{self.path} does not decode: {err}") from err
        if decoded != produced:
            raise FlacWriterError(f"{self.path} changed on disk while it was being written")
        if read_only:
            os.chmod(self.path, 0o440)
        self._closed = ClosedFlac(
            path=self.path,
            sha256=file_sha256(self.path),
            audio_md5=produced,
            size_bytes=self.path.stat().st_size,
            frames=self._frames,
        )
        return self._closed

    def abort(self) -> None:
        """Close without the checks (after an error); the file stays as written."""
        if self._open:
            self._finish_stream()

    def _finish_stream(self) -> None:
        self._open = False
        try:
            self._sound.close()
            os.fsync(self._fd)
        finally:
            os.close(self._fd)


def decoded_md5(path: str | os.PathLike[str]) -> str:
    """MD5 of a finished FLAC file's decoded audio, as 16-bit little-endian frames
    (what STREAMINFO's digest covers), read a block at a time."""
    digest = hashlib.md5(usedforsecurity=False)
    with soundfile.SoundFile(path) as sound:
        left = sound.frames
        while left > 0:
            block = sound.buffer_read(min(left, _DECODE_FRAMES), dtype="int16")
            if not block:
                break
            digest.update(_little_endian(bytes(block)))
            left -= len(block) // FRAME_BYTES
    return digest.hexdigest()
