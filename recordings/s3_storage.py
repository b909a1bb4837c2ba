"""Recordings in an S3-compatible object store (`CTIHUB_RECORDINGS_STORE=s3`).

Owns the bucket side of recordings: object keys (`<prefix><YYYY>/<MM>/<DD>/<id>.<ext>`,
the same relative path as in the local tree), uploading a finished file and checking
the upload, streaming an object's SHA-256 for `verify`, deleting objects for `purge`,
listing what the prefix holds, and presigned GET URLs for playback.
Only plain S3 calls are used -- PutObject, CreateMultipartUpload/UploadPart/
CompleteMultipartUpload/AbortMultipartUpload, GetObject, HeadObject, HeadBucket,
DeleteObject, ListObjectsV2 and a presigned GetObject -- with path-style addressing,
so any S3-compatible service works (AWS S3, MinIO, Ceph RGW...; the tests run against
moto's S3 emulator over real HTTP).

An upload is checked before the local copy may go: the file is re-hashed while it is
read and must still have the SHA-256 recorded at close; every request carries its
Content-MD5 and SHA-256 checksum (a server that supports checksums rejects a body that
does not match); afterwards HeadObject must show the right size, the SHA-256 in the
object's metadata, and, where the server reports them, the matching SHA-256 checksum
or else an MD5 ETag (single or multipart form) that matches.

boto3 blocks: every method is for a worker thread. Uploads get a small executor of
their own (`executor`) so that a slow bucket never holds up the recorders' worker.
Must never: read or write the database, or delete a local file (the store decides).
"""

from __future__ import annotations

import base64
import hashlib
import logging
import os
import re
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from cti.config import Settings

log = logging.getLogger(__name__)

# Files up to this size go up in one PutObject; bigger ones in parts of this size (S3's
# minimum part is 5 MiB). A part is held in memory while it is sent: 16 MiB is about
# eight minutes of WAV.
PART_BYTES = 16 * 1024 * 1024
PRESIGNED_EXPIRY_S = 300  # a playback link lives five minutes
UPLOAD_THREADS = 2
_READ_CHUNK = 1 << 20
_MD5_ETAG = re.compile(r'^"?([0-9a-f]{32})(?:-(\d+))?"?$')


class S3StorageError(RuntimeError):
    """The bucket refused or failed a request, or an upload did not check out."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ObjectFacts:
    """What HeadObject says about an object."""

    size: int
    sha256: str | None  # our metadata: the file's SHA-256, hex
    checksum_sha256: str | None  # the server's SHA-256 checksum, base64 (composite for multipart)
    etag: str


def s3_errors() -> tuple[type[Exception], ...]:
    """The exceptions a request to the bucket can end with (for callers that report
    them instead of crashing)."""
    from botocore.exceptions import BotoCoreError, ClientError

    return (S3StorageError, BotoCoreError, ClientError)


def _b64(digest: bytes) -> str:
    return base64.b64encode(digest).decode("ascii")


def _missing(err: Exception) -> bool:
    response = getattr(err, "response", None)
    if not isinstance(response, dict):
        return False
    code = str(response.get("Error", {}).get("Code", ""))
    return code in ("404", "NoSuchKey", "NotFound")


class S3Storage:
    """One bucket and key prefix. `client`: a boto3 S3 client (built from the other
    arguments when None)."""

    def __init__(
        self,
        *,
        bucket: str,
        endpoint: str | None = None,
        prefix: str = "",
        region: str = "us-east-1",
        access_key: str | None = None,
        secret_key: str | None = None,
        client: Any = None,
        part_bytes: int = PART_BYTES,
    ) -> None:
        if prefix and not prefix.endswith("/"):
            prefix += "/"
        self.bucket = bucket
        self.prefix = prefix
        self.endpoint = endpoint
        self._part_bytes = part_bytes
        self._client = client if client is not None else _client(endpoint, region, access_key, secret_key)
        self._executor: ThreadPoolExecutor | None = None

    @property
    def executor(self) -> ThreadPoolExecutor:
        """The uploads' own threads (made on first use)."""
        if self._executor is None:
            self._executor = ThreadPoolExecutor(max_workers=UPLOAD_THREADS, thread_name_prefix="recording-upload")
        return self._executor

    def close(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None

    # --- keys ------------------------------------------------------------------------

    def key_for(self, relative: str) -> str:
        """The object key of a recording stored at `relative` in the local layout."""
        parts = PurePosixPath(relative)
        if parts.is_absolute() or ".." in parts.parts or not relative:
            raise ValueError(f"stored path {relative!r} cannot be an object key")
        return self.prefix + parts.as_posix()

    def describe(self, key: str) -> str:
        return f"s3://{self.bucket}/{key}"

    # --- the bucket ------------------------------------------------------------------

    def check_bucket(self) -> None:
        """Raise `S3StorageError` unless the bucket is there and ours to use."""
        try:
            self._client.head_bucket(Bucket=self.bucket)
        except Exception as err:
            raise S3StorageError(f"bucket {self.bucket} at {self.endpoint or 'AWS'} is not usable: {err}") from err

    def upload(self, local: Path, key: str, *, sha256: str, content_type: str) -> ObjectFacts:
        """Put the finished file at `key` and check that the object is that file."""
        size = local.stat().st_size
        metadata = {"sha256": sha256}
        if size <= self._part_bytes:
            data = local.read_bytes()
            digest = hashlib.sha256(data).digest()
            if digest.hex() != sha256:
                raise S3StorageError(f"{local} no longer has the SHA-256 recorded when it closed; not uploaded")
            md5 = hashlib.md5(data, usedforsecurity=False).digest()
            self._client.put_object(
                Bucket=self.bucket, Key=key, Body=data, ContentType=content_type, Metadata=metadata,
                ContentMD5=_b64(md5), ChecksumSHA256=_b64(digest),
            )
            expected_checksum, expected_etag = _b64(digest), md5.hex()
        else:
            expected_checksum, expected_etag = self._upload_parts(local, key, sha256, content_type, metadata)
        facts = self.head(key)
        if facts is None:
            raise S3StorageError(f"{self.describe(key)} is not there after its upload")
        _check_upload(self.describe(key), facts, size=size, sha256=sha256, checksum=expected_checksum, etag=expected_etag)
        return facts

    def _upload_parts(
        self, local: Path, key: str, sha256: str, content_type: str, metadata: dict[str, str]
    ) -> tuple[str, str]:
        upload_id = self._client.create_multipart_upload(
            Bucket=self.bucket, Key=key, ContentType=content_type, Metadata=metadata, ChecksumAlgorithm="SHA256"
        )["UploadId"]
        whole = hashlib.sha256()
        sha_parts: list[bytes] = []
        md5_parts: list[bytes] = []
        parts: list[dict[str, Any]] = []
        try:
            with open(local, "rb") as f:
                while chunk := f.read(self._part_bytes):
                    whole.update(chunk)
                    digest = hashlib.sha256(chunk).digest()
                    md5 = hashlib.md5(chunk, usedforsecurity=False).digest()
                    number = len(parts) + 1
                    answer = self._client.upload_part(
                        Bucket=self.bucket, Key=key, UploadId=upload_id, PartNumber=number, Body=chunk,
                        ContentMD5=_b64(md5), ChecksumSHA256=_b64(digest),
                    )
                    parts.append({"PartNumber": number, "ETag": answer["ETag"], "ChecksumSHA256": _b64(digest)})
                    sha_parts.append(digest)
                    md5_parts.append(md5)
            if whole.hexdigest() != sha256:
                raise S3StorageError(f"{local} no longer has the SHA-256 recorded when it closed; not uploaded")
            self._client.complete_multipart_upload(
                Bucket=self.bucket, Key=key, UploadId=upload_id, MultipartUpload={"Parts": parts}
            )
        except BaseException:
            try:
                self._client.abort_multipart_upload(Bucket=self.bucket, Key=key, UploadId=upload_id)
            except Exception:  # noqa: BLE001 -- the first error is the one to report
                log.warning("could not abort the multipart upload of %s", self.describe(key))
            raise
        composite = _b64(hashlib.sha256(b"".join(sha_parts)).digest())
        etag = f"{hashlib.md5(b''.join(md5_parts), usedforsecurity=False).hexdigest()}-{len(parts)}"
        return composite, etag

    def head(self, key: str) -> ObjectFacts | None:
        """The object's facts, or None when there is no such object."""
        try:
            answer = self._client.head_object(Bucket=self.bucket, Key=key, ChecksumMode="ENABLED")
        except Exception as err:
            if _missing(err):
                return None
            raise
        return ObjectFacts(
            size=int(answer["ContentLength"]),
            sha256=(answer.get("Metadata") or {}).get("sha256"),
            checksum_sha256=answer.get("ChecksumSHA256"),
            etag=str(answer.get("ETag", "")),
        )

    def exists(self, key: str) -> bool:
        return self.head(key) is not None

    def sha256(self, key: str) -> str | None:
        """The object's SHA-256, computed from its bytes as they stream in; None when
        there is no such object."""
        try:
            answer = self._client.get_object(Bucket=self.bucket, Key=key)
        except Exception as err:
            if _missing(err):
                return None
            raise
        digest = hashlib.sha256()
        body = answer["Body"]
        try:
            for chunk in body.iter_chunks(_READ_CHUNK):
                digest.update(chunk)
        finally:
            body.close()
        return digest.hexdigest()

    def delete(self, key: str) -> bool:
        """Delete the object; False when it was already gone (S3's DeleteObject does
        not say, so HeadObject asks first)."""
        if self.head(key) is None:
            return False
        self._client.delete_object(Bucket=self.bucket, Key=key)
        return True

    def listed_keys(self) -> Iterator[str]:
        """Every object key under the prefix."""
        pages = self._client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=self.prefix)
        for page in pages:
            for item in page.get("Contents", ()):
                yield str(item["Key"])

    def presigned_get(self, key: str, *, content_type: str, expires_s: int = PRESIGNED_EXPIRY_S) -> str:
        """A URL that serves the object (with Range requests) to whoever holds it, for
        `expires_s` seconds. Signing is local: no request is made."""
        return str(
            self._client.generate_presigned_url(
                "get_object",
                Params={"Bucket": self.bucket, "Key": key, "ResponseContentType": content_type},
                ExpiresIn=expires_s,
            )
        )


def _check_upload(where: str, facts: ObjectFacts, *, size: int, sha256: str, checksum: str, etag: str) -> None:
    if facts.size != size:
        raise S3StorageError(f"{where} holds {facts.size} bytes after its upload, the file has {size}")
    if facts.sha256 != sha256:
        raise S3StorageError(f"{where} carries SHA-256 {facts.sha256} in its metadata, the file has {sha256}")
    if facts.checksum_sha256:
        reported = facts.checksum_sha256.split("-", 1)[0]  # AWS appends "-<parts>" to composites
        if reported != checksum:
            raise S3StorageError(f"{where}: the server's SHA-256 checksum {reported} is not the file's {checksum}")
        return
    match = _MD5_ETAG.match(facts.etag)
    if match is not None:  # an encrypted object's ETag is no MD5: nothing to compare then
        reported = match.group(1) + (f"-{match.group(2)}" if match.group(2) else "")
        if reported != etag:
            raise S3StorageError(f"{where}: the server's ETag {reported} is not the file's MD5 {etag}")


def _client(endpoint: str | None, region: str, access_key: str | None, secret_key: str | None) -> Any:
    import boto3  # only when an S3 store is configured: it is slow to import
    from botocore.config import Config

    config = Config(
        region_name=region,
        s3={"addressing_style": "path"},
        signature_version="s3v4",
        # Checksums are sent explicitly (see the module docstring); the SDK's own
        # defaults would add CRC32 headers that not every S3-compatible server accepts.
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
        retries={"max_attempts": 3, "mode": "standard"},
        connect_timeout=5,
        read_timeout=60,
    )
    return boto3.session.Session().client(
        "s3", endpoint_url=endpoint, aws_access_key_id=access_key, aws_secret_access_key=secret_key, config=config
    )


def s3_storage_from_settings(settings: Settings, environ: Mapping[str, str] | None = None) -> S3Storage | None:
    """The S3 store the settings ask for, or None for the filesystem store. The keys
    come from the environment variables the settings name; when neither is set, boto3
    looks for credentials its usual way (profile, instance role)."""
    if settings.recordings_store != "s3":
        return None
    from cti.config import ConfigError, setting_label

    env = os.environ if environ is None else environ
    access_key = env.get(settings.s3_access_key_env) or None
    secret_key = env.get(settings.s3_secret_key_env) or None
    if (access_key is None) != (secret_key is None):
        unset = "s3_access_key_env" if access_key is None else "s3_secret_key_env"
        name = settings.s3_access_key_env if access_key is None else settings.s3_secret_key_env
        raise ConfigError(setting_label(unset), f"the variable {name} is not set (the other S3 key is)")
    return S3Storage(
        bucket=settings.s3_bucket,
        endpoint=settings.s3_endpoint,
        prefix=settings.s3_prefix,
        region=settings.s3_region,
        access_key=access_key,
        secret_key=secret_key,
    )
