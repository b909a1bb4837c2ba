"""The in-process profile tier without a server or an event loop: LRU, TTL, fill
tickets against invalidations and clears, and trust that follows the feed."""

from __future__ import annotations

import pytest

from crm_sync.cache_local import LocalProfileTier

T0 = 1000.0


def live_tier(**options: float) -> LocalProfileTier[bytes]:
    tier: LocalProfileTier[bytes] = LocalProfileTier(**options)  # type: ignore[arg-type]
    tier.feed_started(T0)
    return tier


def test_nothing_is_served_or_kept_before_the_feed_has_subscribed() -> None:
    tier: LocalProfileTier[bytes] = LocalProfileTier()
    assert not tier.put("a", b"1", tier.ticket(), T0)
    assert tier.get("a", T0) is None and len(tier) == 0
    tier.feed_started(T0)
    assert tier.put("a", b"1", tier.ticket(), T0)
    assert tier.get("a", T0) == b"1"


def test_entries_expire_after_the_ttl() -> None:
    tier = live_tier(ttl_s=10, max_silence_s=100)
    assert tier.put("a", b"1", tier.ticket(), T0)
    assert tier.get("a", T0 + 9.9) == b"1"
    assert tier.get("a", T0 + 10) is None
    assert len(tier) == 0  # an expired entry is dropped when seen


def test_the_least_recently_used_entry_goes_first() -> None:
    tier = live_tier(max_entries=2)
    for key in "ab":
        assert tier.put(key, key.encode(), tier.ticket(), T0)
    assert tier.get("a", T0) == b"a"  # a is now the most recent
    assert tier.put("c", b"c", tier.ticket(), T0)
    assert [tier.get(k, T0) for k in "abc"] == [b"a", None, b"c"]
    with pytest.raises(ValueError, match="max_entries"):
        LocalProfileTier(max_entries=0)


def test_a_fill_overtaken_by_an_invalidation_of_its_customer_is_refused() -> None:
    tier = live_tier()
    ticket = tier.ticket()  # a read misses and goes to Redis or SQL...
    tier.invalidate("a")  # ...a write lands meanwhile...
    assert not tier.put("a", b"old", ticket, T0)  # ...so what it read may predate the write
    assert tier.get("a", T0) is None
    # Other customers' fills from before are unaffected; a fill that began after is fine.
    assert tier.put("b", b"b", ticket, T0)
    assert tier.put("a", b"new", tier.ticket(), T0)
    assert tier.get("a", T0) == b"new"


def test_an_invalidation_drops_the_entries_and_ignores_unknown_ids() -> None:
    tier = live_tier()
    for key in "abc":
        tier.put(key, key.encode(), tier.ticket(), T0)
    tier.invalidate("a", "c", "zzz")
    tier.invalidate()
    assert [tier.get(k, T0) for k in "abc"] == [None, b"b", None]


def test_a_clear_refuses_every_fill_that_began_before_it() -> None:
    tier = live_tier()
    ticket = tier.ticket()
    tier.put("a", b"a", ticket, T0)
    tier.clear()
    assert len(tier) == 0
    assert not tier.put("b", b"b", ticket, T0)
    assert tier.put("b", b"b", tier.ticket(), T0)


def test_fills_older_than_the_forgotten_invalidations_are_refused() -> None:
    tier = live_tier(remembered_invalidations=2)
    ticket = tier.ticket()
    tier.invalidate("x")
    tier.invalidate("y")
    assert tier.put("a", b"a", ticket, T0)  # x and y are remembered: a was not invalidated
    tier.invalidate("z")  # x is forgotten: was it "a"? It cannot say, so it refuses
    assert not tier.put("b", b"b", ticket, T0)
    assert tier.put("b", b"b", tier.ticket(), T0)


def test_a_lost_feed_empties_the_tier_and_a_new_subscription_starts_empty() -> None:
    tier = live_tier()
    ticket = tier.ticket()
    tier.put("a", b"a", ticket, T0)
    tier.feed_lost()
    assert len(tier) == 0 and not tier.trusted(T0)
    assert not tier.put("a", b"a", tier.ticket(), T0)
    tier.feed_started(T0 + 1)
    assert tier.trusted(T0 + 1)
    # A fill that began before the loss may have missed an invalidation: refused.
    assert not tier.put("a", b"a", ticket, T0 + 1)
    # Entries kept while the feed was up are gone even if nothing said it was lost.
    tier.put("a", b"a", tier.ticket(), T0 + 1)
    tier.feed_started(T0 + 2)
    assert tier.get("a", T0 + 2) is None


def test_a_silent_feed_is_not_trusted_until_heard_from_again() -> None:
    tier = live_tier(max_silence_s=3)
    tier.put("a", b"a", tier.ticket(), T0)
    assert tier.get("a", T0 + 3) == b"a"
    assert tier.silent(T0 + 3.1) and tier.get("a", T0 + 3.1) is None
    assert not tier.put("b", b"b", tier.ticket(), T0 + 3.1)
    # Silence loses nothing on a live connection (messages are only late): the entry
    # is served again once the feed is heard from.
    tier.feed_heard(T0 + 4)
    assert tier.get("a", T0 + 4) == b"a"
