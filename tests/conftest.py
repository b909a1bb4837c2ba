"""Shared fixtures: real Redis, real PostgreSQL, real sipp, a real S3-compatible server (moto).

With CI=true a test that needs one of them fails when it is missing; elsewhere it is
skipped with a message that names what is missing.
"""

from __future__ import annotations

import os
import shutil
import socket
import uuid
from collections.abc import AsyncIterator, Iterator
from urllib.parse import urlparse

import pytest

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")

REDIS_URL = os.environ.get("CTIHUB_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
POSTGRES_URL = os.environ.get(
    "CTIHUB_TEST_POSTGRES_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
)


def missing(what: str) -> None:
    """Fail in CI, skip elsewhere: a missing service never passes silently in CI."""
    if IN_CI:
        pytest.fail(f"{what} is required in CI (CI=true) but is missing", pytrace=False)
    pytest.skip(f"{what} is missing")


def _reachable(url: str, default_port: int) -> bool:
    parsed = urlparse(url.replace("+asyncpg", ""))
    try:
        with socket.create_connection((parsed.hostname or "127.0.0.1", parsed.port or default_port), timeout=1):
            return True
    except OSError:
        return False


@pytest.fixture
def redis_url() -> str:
    if not _reachable(REDIS_URL, 6379):
        missing(f"Redis at {REDIS_URL}")
    return REDIS_URL


@pytest.fixture
async def redis_client(redis_url: str) -> AsyncIterator[object]:
    import redis.asyncio as aioredis

    client = aioredis.from_url(redis_url)
    await client.flushdb()
    yield client
    await client.flushdb()
    await client.aclose()


@pytest.fixture
def postgres_url() -> str:
    if not _reachable(POSTGRES_URL, 5432):
        missing(f"PostgreSQL at {POSTGRES_URL}")
    return POSTGRES_URL


@pytest.fixture
async def fresh_postgres_url(postgres_url: str) -> AsyncIterator[str]:
    """A PostgreSQL database of its own for one test, dropped afterwards."""
    import asyncpg

    parsed = urlparse(postgres_url.replace("+asyncpg", ""))
    admin_dsn = postgres_url.replace("+asyncpg", "")
    name = "ctihub_t_" + uuid.uuid4().hex[:12]
    conn = await asyncpg.connect(admin_dsn)
    await conn.execute(f'CREATE DATABASE "{name}"')
    await conn.close()
    yield postgres_url.rsplit("/", 1)[0] + "/" + name
    conn = await asyncpg.connect(admin_dsn)
    await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    await conn.close()
    del parsed


@pytest.fixture
def sqlite_url(tmp_path: object) -> str:
    return f"sqlite+aiosqlite:///{tmp_path}/hub.db"


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: object) -> str:
    """Runs a test once on SQLite and once on a fresh PostgreSQL database.

    A plain (sync) fixture on purpose: pytest-asyncio cannot resolve the async
    `fresh_postgres_url` through getfixturevalue from inside a running loop otherwise."""
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path}/hub.db"
    return str(request.getfixturevalue("fresh_postgres_url"))


@pytest.fixture
def sipp_path() -> str:
    path = shutil.which("sipp")
    if path is None:
        missing("sipp (Debian package sip-tester)")
    assert path is not None
    return path


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """A real S3-compatible server on loopback: moto's standalone server, in a process
    of its own, spoken to over HTTP (any credentials are accepted)."""
    import importlib.util
    import subprocess
    import sys
    import time

    if importlib.util.find_spec("moto") is None:
        missing("moto[server] (the test extras: pip install -e '.[test]')")
    port = free_tcp_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 30
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                break
        except OSError:
            if server.poll() is not None or time.monotonic() > deadline:
                server.kill()
                pytest.fail(f"moto's S3 server did not start on port {port}", pytrace=False)
            time.sleep(0.1)
    yield f"http://127.0.0.1:{port}"
    server.terminate()
    try:
        server.wait(timeout=10)
    except subprocess.TimeoutExpired:
        server.kill()


S3_TEST_KEYS = {"AWS_ACCESS_KEY_ID": "ctihub-test", "AWS_SECRET_ACCESS_KEY": "ctihub-test-secret"}


@pytest.fixture
def s3_bucket(s3_endpoint: str) -> str:
    """A fresh bucket on the S3 server for one test."""
    import boto3

    name = "ctihub-t-" + uuid.uuid4().hex[:12]
    client = boto3.client(
        "s3", endpoint_url=s3_endpoint, region_name="us-east-1",
        aws_access_key_id=S3_TEST_KEYS["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=S3_TEST_KEYS["AWS_SECRET_ACCESS_KEY"],
    )
    client.create_bucket(Bucket=name)
    return name


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def free_tcp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
