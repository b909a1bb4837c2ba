"""One contract for every binding store: in-process and Redis (a real Redis, one fresh
key prefix per test), so several hub processes share the registrations."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable

import pytest

from cti.registrar import (
    AddBinding,
    Binding,
    BindingStore,
    InMemoryBindingStore,
    RedisBindingStore,
    RefreshBinding,
    RemoveAllBindings,
    RemoveBinding,
)
from cti.registrar.bindings import contact_key
from cti.sip.uri import parse_uri

NOW = 1_700_000_000.0
AOR = "sip:alice@example.com"

StoreFactory = Callable[[], BindingStore]


def binding(
    contact: str = "sip:alice@192.0.2.10:5060",
    *,
    aor: str = AOR,
    expires_in: float = 3600,
    now: float = NOW,
    cseq: int = 1,
    registered_at: float | None = None,
) -> Binding:
    return Binding(
        aor=aor,
        contact=contact,
        key=contact_key(parse_uri(contact)),
        params=(("unknownparam", None), ("q", "0.5"), ("+sip.instance", '"<urn:uuid:00000000-0000-0000-0000-000000000001>"')),
        expires_at=now + expires_in,
        call_id="call-1",
        cseq=cseq,
        received=("203.0.113.5", 40123),
        transport="UDP",
        username="alice",
        registered_at=now if registered_at is None else registered_at,
    )


@pytest.fixture(params=["memory", "redis"])
async def stores(request: pytest.FixtureRequest) -> AsyncIterator[StoreFactory]:
    """Each call gives one more store on the same backend (a second hub process)."""
    made: list[BindingStore] = []
    if request.param == "memory":
        shared = InMemoryBindingStore()
        made.append(shared)

        def factory() -> BindingStore:
            return shared
    else:
        url = request.getfixturevalue("redis_url")
        prefix = f"ctihub:test:{uuid.uuid4().hex[:12]}:reg:"

        def factory() -> BindingStore:
            store = RedisBindingStore(url, prefix=prefix)
            made.append(store)
            return store
    yield factory
    if request.param == "redis":
        import redis.asyncio as aioredis

        client = aioredis.from_url(request.getfixturevalue("redis_url"))
        keys = [k async for k in client.scan_iter(match=prefix + "*")]
        if keys:
            await client.delete(*keys)
        await client.aclose()
    for store in made:
        await store.close()


async def test_add_then_lookup(stores: StoreFactory) -> None:
    store = stores()
    b = binding()
    await store.apply(AOR, [AddBinding(binding=b)], NOW)
    assert await store.lookup(AOR, NOW) == [b]
    assert await store.get(AOR) == [b]
    assert await store.lookup("sip:bob@example.com", NOW) == []


async def test_binding_round_trips_every_field(stores: StoreFactory) -> None:
    store = stores()
    b = binding("sip:user@example.com?Route=%3Csip:sip.example.com%3E")
    await store.apply(AOR, [AddBinding(binding=b)], NOW)
    [got] = await store.lookup(AOR, NOW)
    assert got == b and got.instance_id == "urn:uuid:00000000-0000-0000-0000-000000000001"
    assert got.q == 0.5 and got.received == ("203.0.113.5", 40123)


async def test_refresh_replaces_the_binding(stores: StoreFactory) -> None:
    store = stores()
    await store.apply(AOR, [AddBinding(binding=binding())], NOW)
    later = NOW + 100
    fresh = binding(now=later, expires_in=600, cseq=2, registered_at=NOW)
    await store.apply(AOR, [RefreshBinding(binding=fresh)], later)
    assert await store.lookup(AOR, later) == [fresh]


async def test_several_devices_and_removal(stores: StoreFactory) -> None:
    store = stores()
    desk, laptop, mobile = (
        binding("sip:alice@192.0.2.10"),
        binding("sip:alice@192.0.2.11", registered_at=NOW + 1),
        binding("sip:alice@192.0.2.12", registered_at=NOW + 2),
    )
    await store.apply(AOR, [AddBinding(binding=desk), AddBinding(binding=laptop), AddBinding(binding=mobile)], NOW)
    assert await store.lookup(AOR, NOW) == [desk, laptop, mobile]
    await store.apply(AOR, [RemoveBinding(aor=AOR, key=laptop.key)], NOW)
    assert await store.lookup(AOR, NOW) == [desk, mobile]
    await store.apply(AOR, [RemoveBinding(aor=AOR, key="no-such-contact")], NOW)
    assert await store.lookup(AOR, NOW) == [desk, mobile]
    await store.apply(AOR, [RemoveAllBindings(aor=AOR)], NOW)
    assert await store.lookup(AOR, NOW) == []
    assert await store.get(AOR) == []


async def test_changes_apply_in_order(stores: StoreFactory) -> None:
    store = stores()
    old, new = binding("sip:alice@192.0.2.10"), binding("sip:alice@192.0.2.11")
    await store.apply(AOR, [AddBinding(binding=old)], NOW)
    await store.apply(AOR, [RemoveAllBindings(aor=AOR), AddBinding(binding=new)], NOW)
    assert await store.lookup(AOR, NOW) == [new]


async def test_aors_are_separate(stores: StoreFactory) -> None:
    store = stores()
    bob = binding("sip:bob@192.0.2.20", aor="sip:bob@example.com")
    await store.apply(AOR, [AddBinding(binding=binding())], NOW)
    await store.apply(bob.aor, [AddBinding(binding=bob)], NOW)
    await store.apply(AOR, [RemoveAllBindings(aor=AOR)], NOW)
    assert await store.lookup(bob.aor, NOW) == [bob]


async def test_expiry(stores: StoreFactory) -> None:
    store = stores()
    short, long = binding("sip:alice@192.0.2.10", expires_in=60), binding("sip:alice@192.0.2.11", expires_in=3600)
    await store.apply(AOR, [AddBinding(binding=short), AddBinding(binding=long)], NOW)
    assert await store.lookup(AOR, NOW + 59) == [short, long]
    assert await store.lookup(AOR, NOW + 60) == [long]
    assert len(await store.get(AOR)) == 2  # expired, but not purged yet
    assert await store.purge_expired(NOW + 60) == 1
    assert await store.get(AOR) == [long]
    assert await store.purge_expired(NOW + 3600) == 1
    assert await store.get(AOR) == []


async def test_apply_drops_expired_bindings(stores: StoreFactory) -> None:
    store = stores()
    await store.apply(AOR, [AddBinding(binding=binding("sip:alice@192.0.2.10", expires_in=10))], NOW)
    await store.apply(AOR, [AddBinding(binding=binding("sip:alice@192.0.2.11", now=NOW + 20))], NOW + 20)
    assert [b.contact for b in await store.get(AOR)] == ["sip:alice@192.0.2.11"]


async def test_two_stores_on_one_backend_see_the_same_bindings(stores: StoreFactory) -> None:
    first, second = stores(), stores()
    b = binding()
    await first.apply(AOR, [AddBinding(binding=b)], NOW)
    assert await second.lookup(AOR, NOW) == [b]
    await second.apply(AOR, [RemoveBinding(aor=AOR, key=b.key)], NOW)
    assert await first.lookup(AOR, NOW) == []


async def test_redis_key_expires_with_the_longest_binding(redis_url: str) -> None:
    prefix = f"ctihub:test:{uuid.uuid4().hex[:12]}:reg:"
    store = RedisBindingStore(redis_url, prefix=prefix)
    import redis.asyncio as aioredis

    client = aioredis.from_url(redis_url)
    try:
        await store.apply(AOR, [AddBinding(binding=binding(expires_in=60)),
                                AddBinding(binding=binding("sip:alice@192.0.2.99", expires_in=120))], NOW)
        ttl = await client.pttl(prefix + AOR)
        assert 119_000 < ttl <= 120_000
        await store.apply(AOR, [RemoveBinding(aor=AOR, key=binding("sip:alice@192.0.2.99").key)], NOW)
        ttl = await client.pttl(prefix + AOR)
        assert 59_000 < ttl <= 60_000
        # A field this hub version cannot read is skipped, not fatal.
        await client.hset(prefix + AOR, "junk", "{not json")
        assert len(await store.get(AOR)) == 1
    finally:
        await client.delete(prefix + AOR)
        await client.aclose()
        await store.close()
