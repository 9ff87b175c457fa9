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
