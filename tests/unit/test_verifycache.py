"""The verification cache (verification/verifycache.py): keyed digests of (secret, stored hash), never the
secret, in a bounded LRU set. tests/http/test_verifier.py checks it spares bcrypt through requests."""

import hashlib

from token_exchange.verification.verifycache import VerificationCache


def test_a_digest_names_one_secret_and_one_stored_hash_in_this_process_only():
    cache = VerificationCache()
    digest = cache.digest(b"s3cret", "$2b$04$hash")
    assert len(digest) == 32
    assert digest == cache.digest(b"s3cret", "$2b$04$hash")
    assert digest != cache.digest(b"s3cret", "$2b$04$other")  # a changed hash never matches an old entry
    assert digest != cache.digest(b"s3creT", "$2b$04$hash")
    assert cache.digest(b"ab", "c") != cache.digest(b"a", "bc")  # the pair is delimited
    assert digest != VerificationCache().digest(b"s3cret", "$2b$04$hash")  # a key of its own per cache
    assert b"s3cret" not in digest and digest != hashlib.sha256(b"s3cret").digest()


def test_only_added_digests_are_members():
    cache = VerificationCache()
    digest = cache.digest(b"s3cret", "h")
    assert digest not in cache
    cache.add(digest)
    assert digest in cache
    assert cache.entries() == [digest]
    cache.add(digest)
    assert len(cache) == 1


def test_the_least_recently_used_digest_leaves_first():
    cache = VerificationCache(max_entries=2)
    first, second, third = (cache.digest(secret, "h") for secret in (b"1", b"2", b"3"))
    cache.add(first)
    cache.add(second)
    assert first in cache  # used: now the most recent
    cache.add(third)
    assert len(cache) == 2
    assert second not in cache
    assert first in cache and third in cache


def test_the_oldest_digest_leaves_first_when_none_was_used():
    cache = VerificationCache(max_entries=3)
    digests = [cache.digest(bytes([n]), "h") for n in range(5)]
    for digest in digests:
        cache.add(digest)
    assert cache.entries() == digests[2:]  # oldest first; the two oldest left
    assert [digest in cache for digest in digests] == [False, False, True, True, True]


def test_a_lookup_refreshes_an_entry_and_a_miss_changes_nothing():
    cache = VerificationCache(max_entries=3)
    first, second, third, fourth = (cache.digest(bytes([n]), "h") for n in range(4))
    for digest in (first, second, third):
        cache.add(digest)
    assert first in cache
    assert cache.entries() == [second, third, first]
    assert fourth not in cache
    assert cache.entries() == [second, third, first]
    cache.add(second)  # adding again refreshes too
    assert cache.entries() == [third, first, second]
    cache.add(fourth)
    assert cache.entries() == [first, second, fourth]


def test_the_default_bound_is_10000_entries():
    cache = VerificationCache()
    digests = [cache.digest(n.to_bytes(4, "big"), "h") for n in range(10_001)]
    for digest in digests[:10_000]:
        cache.add(digest)
    assert len(cache) == 10_000
    cache.add(digests[10_000])
    assert len(cache) == 10_000
    assert digests[0] not in cache and digests[1] in cache


def test_the_secret_length_frames_the_digested_message():
    cache = VerificationCache()
    # Without the length prefix each of these pairs would digest the same message.
    assert cache.digest(b"", "abc") != cache.digest(b"a", "bc")
    assert cache.digest(b"abc", "") != cache.digest(b"ab", "c")
    assert cache.digest(b"\x00\x00\x00\x01a", "b") != cache.digest(b"a", "b")
    # Different secret lengths never collide, whatever the hash.
    seen = {cache.digest(b"s" * n, "s" * (8 - n)) for n in range(9)}
    assert len(seen) == 9


def test_a_stored_hash_with_a_lone_surrogate_still_has_a_digest():
    cache = VerificationCache()
    digest = cache.digest(b"s", "\ud800")
    assert len(digest) == 32
    assert digest != cache.digest(b"s", "\ud801")
