"""The store-record cache (verification/recordcache.py): a record served for at most ttl seconds, only found
records kept, ttl 0 keeping nothing, a bounded LRU. tests/http/test_verifier.py checks revocation through it."""

from tests.support import FakeClock
from token_exchange.verification.recordcache import DEFAULT_KEY_CACHE_TTL_SECONDS, RecordCache


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


def test_ttl_0_keeps_nothing_even_for_a_clock_that_does_not_move_or_steps_back():
    clock = FakeClock()
    cache = RecordCache(0, clock=clock)
    cache.put("k", "record")
    assert cache.get("k") is None
    cache.put("k", "record")
    clock.now -= 1  # a record kept would now look fresh
    assert cache.get("k") is None
    cache = RecordCache(-1, clock=clock)
    cache.put("k", "record")
    clock.now -= 10
    assert cache.get("k") is None


def test_a_short_ttl_still_caches():
    clock = FakeClock()
    cache = RecordCache(0.5, clock=clock)
    cache.put("k", "record")
    clock.now += 0.4
    assert cache.get("k") == "record"
    clock.now += 0.1
    assert cache.get("k") is None


def test_unknown_keys_take_no_room_from_found_records():
    cache = RecordCache(5, max_records=1, clock=FakeClock())
    cache.put("found", "record")
    for n in range(3):
        cache.put(f"unknown-{n}", None)
    assert cache.get("found") == "record"


def test_an_expired_record_is_dropped_and_takes_no_room():
    clock = FakeClock()
    cache = RecordCache(5, max_records=2, clock=clock)
    cache.put("a", 1)
    clock.now += 3
    cache.put("b", 2)
    clock.now += 2  # "a" expires; reading it drops it
    assert cache.get("a") is None
    cache.put("c", 3)  # room for "c" without pushing out "b"
    assert (cache.get("b"), cache.get("c")) == (2, 3)
    clock.now -= 4  # "a" does not come back
    assert cache.get("a") is None


def test_the_oldest_record_leaves_first_when_none_was_read():
    cache = RecordCache(5, max_records=3, clock=FakeClock())
    for n in range(5):
        cache.put(n, f"record {n}")
    assert [cache.get(n) for n in range(5)] == [None, None, "record 2", "record 3", "record 4"]


def test_putting_again_refreshes_a_record_in_the_lru_order():
    cache = RecordCache(5, max_records=2, clock=FakeClock())
    cache.put("a", 1)
    cache.put("b", 2)
    cache.put("a", 10)
    cache.put("c", 3)
    assert (cache.get("a"), cache.get("b"), cache.get("c")) == (10, None, 3)


def test_a_miss_changes_no_order():
    cache = RecordCache(5, max_records=2, clock=FakeClock())
    cache.put("a", 1)
    cache.put("b", 2)
    assert cache.get("x") is None
    cache.put("c", 3)
    assert (cache.get("a"), cache.get("b"), cache.get("c")) == (None, 2, 3)


def test_the_default_bound_is_10000_records_and_the_default_ttl_5_seconds():
    clock = FakeClock()
    cache = RecordCache(DEFAULT_KEY_CACHE_TTL_SECONDS, clock=clock)
    for n in range(10_001):
        cache.put(n, n)
    assert cache.get(0) is None
    assert cache.get(1) == 1 and cache.get(10_000) == 10_000
    clock.now += 4.99
    assert cache.get(1) == 1
    clock.now += 0.01
    assert cache.get(1) is None


def test_with_the_default_clock_a_record_is_served_at_once():
    cache = RecordCache(60)
    cache.put("k", "record")
    assert cache.get("k") == "record"
