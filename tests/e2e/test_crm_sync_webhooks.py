"""CRM webhooks over real HTTP on loopback: signatures, freshness, replays, bad bodies.

The webhook sub-application is mounted the way the hub mounts it
(`app.add_subapp("/webhooks/", ...)`) and spoken to by an aiohttp client.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from aiohttp import ClientResponse, ClientSession, web
from aiohttp.test_utils import TestServer

from crm_sync.signing import HEADER, sign
from crm_sync.store import CrmStore
from crm_sync.webhooks import make_webhook_app
from cti.db import make_engine, make_sessionmaker, migrate

SECRET = b"webhook-secret-0123456789"
NOW = 1_740_830_400.0  # 2025-03-01T12:00:00Z

CUSTOMER = {"id": "cus_1", "first_name": "Ada", "last_name": "Lovelace", "language": "en", "country": "GB",
            "tier": "retail", "phones": [{"number": "+44 20 7946 0018"}]}


class Hook:
    """A client for the mounted webhook, with a clock the test moves."""

    def __init__(self, base: str, http: ClientSession, clock: list[float], store: CrmStore) -> None:
        self.url = base + "/webhooks/crm"
        self.http = http
        self.clock = clock
        self.store = store

    async def post(self, event: Any, *, at: float | None = None, secret: bytes = SECRET,
                   header: str | None = None, raw: bytes | None = None) -> tuple[int, dict[str, Any]]:
        body = raw if raw is not None else json.dumps(event).encode()
        signature = header if header is not None else sign(secret, int(at or self.clock[0]), body)
        async with self.http.post(self.url, data=body, headers={HEADER: signature,
                                                                "Content-Type": "application/json"}) as r:
            return r.status, await _json(r)


async def _json(response: ClientResponse) -> dict[str, Any]:
    return dict(await response.json(content_type=None))


def _event(kind: str, n: int = 1, occurred_at: str = "2025-03-01T12:00:00Z", **body: Any) -> dict[str, Any]:
    return {"id": f"evt_{n}", "type": kind, "occurred_at": occurred_at, **body}


HookFactory = Callable[..., Any]


async def _factories(url: str) -> AsyncIterator[HookFactory]:
    engine = make_engine(url)
    await migrate(engine)
    store = CrmStore(make_sessionmaker(engine))
    servers: list[TestServer] = []
    http = ClientSession()

    async def make(**options: Any) -> Hook:
        clock = [NOW]
        root = web.Application()
        root.add_subapp("/webhooks/", make_webhook_app(store, secret=SECRET, clock=lambda: clock[0], **options))
        server = TestServer(root, host="127.0.0.1")
        await server.start_server()
        servers.append(server)
        return Hook(str(server.make_url("")).rstrip("/"), http, clock, store)

    yield make
    await http.close()
    for server in servers:
        await server.close()
    await engine.dispose()


@pytest.fixture
async def hook_factory(database_url: str) -> AsyncIterator[HookFactory]:
    """For tests whose events reach the database: SQLite and PostgreSQL."""
    async for make in _factories(database_url):
        yield make


@pytest.fixture
async def edge_factory(sqlite_url: str) -> AsyncIterator[HookFactory]:
    """For tests of the HTTP edge (refused before any write): SQLite is enough."""
    async for make in _factories(sqlite_url):
        yield make


async def test_a_signed_event_is_applied(hook_factory: HookFactory) -> None:
    hook = await hook_factory()
    status, body = await hook.post(_event("customer.created", customer=CUSTOMER,
                                          kyc={"status": "verified", "risk_rating": "low"}))
    assert (status, body) == (200, {"status": "applied", "event_id": "evt_1"})
    (match,) = await hook.store.lookup_by_phone("+442079460018")
    assert (match.name, match.kyc_status) == ("Ada Lovelace", "verified")
    status, body = await hook.post(_event("kyc.updated", 2, "2025-03-01T12:05:00Z", customer_id="cus_1",
                                          kyc={"status": "rejected", "risk_rating": "high"}))
    assert (status, body["status"]) == (200, "applied")
    history = await hook.store.kyc_history("cus_1")
    assert [(h["change"], h["status"], h["event_id"]) for h in history] == [
        ("created", "verified", "evt_1"), ("updated", "rejected", "evt_2")]


@pytest.mark.parametrize(
    ("tamper", "reason"),
    [
        (dict(secret=b"not-the-shared-secret!!"), "bad_signature"),
        (dict(at=NOW - 301), "stale_timestamp"),
        (dict(at=NOW + 301), "stale_timestamp"),
        (dict(header=""), "missing_signature"),
        (dict(header="v1=deadbeef"), "malformed_signature"),
    ],
)
async def test_bad_and_stale_signatures_are_401_and_logged(
    edge_factory: HookFactory, caplog: pytest.LogCaptureFixture, tamper: dict[str, Any], reason: str
) -> None:
    hook = await edge_factory()
    with caplog.at_level(logging.WARNING, logger="crm_sync.webhooks"):
        status, body = await hook.post(_event("customer.created", customer=CUSTOMER), **tamper)
    assert (status, body["error"]) == (401, reason)
    assert any(reason in r.getMessage() for r in caplog.records)
    assert await hook.store.count_customers() == 0


async def test_a_body_changed_in_transit_is_refused(edge_factory: HookFactory) -> None:
    hook = await edge_factory()
    signed = json.dumps(_event("customer.created", customer=CUSTOMER)).encode()
    forged = signed.replace(b"retail", b"vip   ")
    status, body = await hook.post(None, raw=forged, header=sign(SECRET, int(NOW), signed))
    assert (status, body["error"]) == (401, "bad_signature")


async def test_a_replayed_request_is_refused_but_a_resent_event_is_acknowledged(
    hook_factory: HookFactory, caplog: pytest.LogCaptureFixture
) -> None:
    hook = await hook_factory()
    raw = json.dumps(_event("customer.created", customer=CUSTOMER)).encode()
    header = sign(SECRET, int(NOW), raw)
    assert (await hook.post(None, raw=raw, header=header))[0] == 200
    hook.clock[0] = NOW + 60  # still fresh: only the replay memory can catch it
    with caplog.at_level(logging.WARNING, logger="crm_sync.webhooks"):
        status, body = await hook.post(None, raw=raw, header=header)
    assert (status, body["error"]) == (401, "replayed")
    assert any("replayed" in r.getMessage() for r in caplog.records)
    # The CRM sending the same event again, freshly signed (it lost our answer): fine.
    status, body = await hook.post(None, raw=raw)
    assert (status, body) == (200, {"status": "duplicate", "event_id": "evt_1"})


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        (b"{not json", "body"),
        (b"\xff\xfe", "body"),
        (json.dumps([1, 2]).encode(), "body"),
        (json.dumps(_event("kyc.updated", customer_id="cus_1", kyc={"status": "approved"})).encode(), "kyc.status"),
        (json.dumps(_event("customer.created", customer={**CUSTOMER, "country": "Britain"})).encode(),
         "customer.country"),
        (json.dumps(_event("customer.updated", customer={"id": "cus_1", "phones": [{"number": "n/a"}]})).encode(),
         "customer.phones[0].number"),
        (json.dumps({"type": "customer.deleted"}).encode(), "id"),
    ],
)
async def test_malformed_bodies_are_422_naming_the_field(edge_factory: HookFactory, raw: bytes, field: str) -> None:
    hook = await edge_factory()
    status, body = await hook.post(None, raw=raw)
    assert status == 422
    assert (body["error"], body["field"]) == ("invalid_field", field)


async def test_unknown_customer_is_rejected_or_created_as_configured(hook_factory: HookFactory) -> None:
    update = _event("customer.updated", customer={**CUSTOMER, "id": "cus_new"})
    partial = _event("customer.updated", 2, customer={"id": "cus_other", "email": "o@example.com"})

    rejecting = await hook_factory(unknown_customer="reject")
    status, body = await rejecting.post(update)
    assert (status, body["error"], body["field"]) == (404, "unknown_customer", "customer.id")
    assert await rejecting.store.count_customers() == 0

    creating = await hook_factory(unknown_customer="create")
    assert (await creating.post(update))[0] == 200
    assert await creating.store.get_profile("cus_new") is not None
    status, body = await creating.post(partial)
    assert (status, body["field"]) == (422, "customer.first_name")
    status, body = await creating.post(_event("kyc.updated", 3, customer_id="cus_nobody",
                                              kyc={"status": "pending", "risk_rating": "low"}))
    assert (status, body["field"]) == (404, "customer_id")


async def test_out_of_order_and_deletes(hook_factory: HookFactory) -> None:
    hook = await hook_factory()
    assert (await hook.post(_event("customer.created", 1, "2025-03-01T12:00:00Z", customer=CUSTOMER)))[0] == 200
    newer = _event("customer.updated", 2, "2025-03-01T12:10:00Z", customer={"id": "cus_1", "tier": "vip"})
    older = _event("customer.updated", 3, "2025-03-01T12:05:00Z", customer={"id": "cus_1", "tier": "professional"})
    assert (await hook.post(newer))[1]["status"] == "applied"
    assert (await hook.post(older))[1]["status"] == "stale"
    profile = await hook.store.get_profile("cus_1")
    assert profile is not None and profile.tier == "vip"
    assert (await hook.post(_event("customer.deleted", 4, "2025-03-01T12:20:00Z", customer_id="cus_1")))[1] == {
        "status": "applied", "event_id": "evt_4"}
    assert await hook.store.get_profile("cus_1") is None
    assert (await hook.post(_event("kyc.deleted", 5, customer_id="cus_1")))[1]["status"] == "absent"


async def test_an_oversized_body_is_refused(edge_factory: HookFactory) -> None:
    hook = await edge_factory(max_body_bytes=1024)
    status, body = await hook.post(None, raw=b"{" + b" " * 2048 + b"}")
    assert (status, body["error"]) == (413, "body_too_large")


def test_the_factory_refuses_weak_settings() -> None:
    store = CrmStore(None)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        make_webhook_app(store, secret=b"short")
    with pytest.raises(ValueError):
        make_webhook_app(store, secret=SECRET, unknown_customer="ignore")


# --- several hubs behind one webhook address: the replay memory in Redis ---------------


@pytest.fixture
async def shared_keys(redis_url: str) -> AsyncIterator[Callable[..., Any]]:
    import redis.asyncio as aioredis

    from crm_sync.seen_keys import RedisSeenKeys

    client = aioredis.from_url(redis_url)
    await client.flushdb()

    def make(**hold: float) -> dict[str, Any]:
        return {
            "seen_signatures": RedisSeenKeys(client, namespace="signature", window_s=600, hold_s=600),
            "seen_event_ids": RedisSeenKeys(client, namespace="event", window_s=86_400, **hold),
        }

    yield make
    await client.flushdb()
    await client.aclose()


async def test_a_request_replayed_to_another_hub_is_refused(
    hook_factory: HookFactory, shared_keys: Callable[..., Any]
) -> None:
    first, second = await hook_factory(**shared_keys()), await hook_factory(**shared_keys())
    raw = json.dumps(_event("customer.created", customer=CUSTOMER)).encode()
    header = sign(SECRET, int(NOW), raw)
    assert (await first.post(None, raw=raw, header=header))[0] == 200
    status, body = await second.post(None, raw=raw, header=header)
    assert (status, body["error"]) == (401, "replayed")
    # A fresh signature of the same event at the other hub: acknowledged, not applied twice.
    status, body = await second.post(None, raw=raw, at=NOW + 1)
    assert (status, body) == (200, {"status": "duplicate", "event_id": "evt_1"})


async def test_one_event_sent_to_two_hubs_at_once_is_applied_once(
    hook_factory: HookFactory, shared_keys: Callable[..., Any]
) -> None:
    import asyncio

    first, second = await hook_factory(**shared_keys()), await hook_factory(**shared_keys())
    await first.post(_event("customer.created", 1, customer=CUSTOMER))
    kyc = {"status": "verified", "risk_rating": "low", "verified_at": "2025-02-01T00:00:00Z"}
    event = _event("kyc.updated", 2, customer_id="cus_1", kyc=kyc)
    raw = json.dumps(event).encode()
    answers = await asyncio.gather(first.post(None, raw=raw), second.post(None, raw=raw, at=NOW + 1))
    statuses = sorted(status for status, _ in answers)
    # One applies it; the other is told it is a duplicate or still in progress (409, resend).
    assert statuses[0] == 200 and statuses[1] in (200, 409)
    assert [b.get("status") for s, b in answers if s == 200].count("duplicate") == (1 if statuses[1] == 200 else 0)
    assert len(await first.store.kyc_history("cus_1")) == 1


async def test_a_claim_left_by_a_dead_hub_expires_and_the_resend_is_applied(
    hook_factory: HookFactory, shared_keys: Callable[..., Any]
) -> None:
    import asyncio

    keys = shared_keys(hold_s=0.3)
    # A hub that died after claiming evt_1 and before applying it.
    assert await keys["seen_event_ids"].claim("evt_1", NOW) is None
    hook = await hook_factory(**keys)
    status, body = await hook.post(_event("customer.created", 1, customer=CUSTOMER))
    assert (status, body["error"]) == (409, "in_progress")
    await asyncio.sleep(0.5)
    status, body = await hook.post(_event("customer.created", 1, customer=CUSTOMER), at=NOW + 1)
    assert (status, body["status"]) == (200, "applied")
    assert await hook.store.get_profile("cus_1") is not None


async def test_without_redis_webhooks_answer_503_and_nothing_is_applied(hook_factory: HookFactory) -> None:
    import socket

    import redis.asyncio as aioredis

    from crm_sync.seen_keys import RedisSeenKeys

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    client = aioredis.from_url(f"redis://127.0.0.1:{port}/0", socket_connect_timeout=0.5)
    hook = await hook_factory(
        seen_signatures=RedisSeenKeys(client, namespace="signature", window_s=600),
        seen_event_ids=RedisSeenKeys(client, namespace="event", window_s=600),
    )
    status, body = await hook.post(_event("customer.created", 1, customer=CUSTOMER))
    await client.aclose()
    assert (status, body["error"]) == (503, "replay_store_unavailable")
    assert await hook.store.get_profile("cus_1") is None
