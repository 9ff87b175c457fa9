"""The store-record cache (verification/recordcache.py): a record served for at most ttl seconds, only found
records kept, ttl 0 keeping nothing, a bounded LRU. tests/http/test_verifier.py checks revocation through it."""

from tests.support import FakeClock
from token_exchange.verification.recordcache import RecordCache


def test_a_record_is_served_until_its_ttl_has_passed():
    clock = FakeClock()
    cache = RecordCache(5, clock=clock)
    assert cache.get(("acme", "ki_1")) is None
    cache.put(("acme", "ki_1"), "record")
    clock.now += 4.9
    assert cache.get(("acme", "ki_1")) == "record"
    clock.now += 0.1  # exactly ttl seconds after it was read: stale
    assert cache.get(("acme", "ki_1")) is None
    clock.now -= 1  # gone for good, not merely hidden
    assert cache.get(("acme", "ki_1")) is None


def test_putting_again_restarts_the_ttl():
    clock = FakeClock()
    cache = RecordCache(5, clock=clock)
    cache.put("k", "old")
    clock.now += 4
    cache.put("k", "new")
    clock.now += 4
    assert cache.get("k") == "new"


def test_ttl_0_and_missing_records_keep_nothing():
    clock = FakeClock()
    cache = RecordCache(0, clock=clock)
    cache.put("k", "record")
    assert cache.get("k") is None
    cache = RecordCache(5, clock=clock)
    cache.put("k", None)  # not found: a key created a moment later works at once
    cache.put("other", "record")
    assert cache.get("k") is None
    assert cache.get("other") == "record"


def test_the_least_recently_used_record_leaves_first():
    cache = RecordCache(5, max_records=2, clock=FakeClock())
    cache.put("a", 1)
    cache.put("b", 2)
    assert cache.get("a") == 1  # used: now the most recent
    cache.put("c", 3)
    assert cache.get("b") is None
    assert (cache.get("a"), cache.get("c")) == (1, 3)
