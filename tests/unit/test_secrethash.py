"""Secret hashes at rest: bcrypt for new keys, the Go tool's SHA-256 accepted."""

import hashlib

import pytest

from tests.support import plain_id
from token_exchange.verification import secrethash
from token_exchange.verification.secrethash import hash_scheme, hash_secret, verify_secret

SECRET = b"WLYjJ6QuheXnPAyeVLjeDA9Ee6P4h1IIUsAkqXFZas8"


def test_bcrypt_hash_round_trip_with_cost():
    stored = hash_secret(SECRET, "bcrypt", bcrypt_cost=4)
    assert stored.startswith("$2b$04$")
    assert hash_scheme(stored) == "bcrypt"
    assert verify_secret(SECRET, stored)
    assert not verify_secret(SECRET[:-1], stored)
    assert not verify_secret(SECRET + b"x", stored)


def test_go_tool_sha256_hash_is_accepted():
    stored = hashlib.sha256(SECRET).hexdigest()
    assert hash_secret(SECRET, "sha256") == stored
    assert hash_scheme(stored) == "sha256"
    assert verify_secret(SECRET, stored)
    assert verify_secret(SECRET, stored.upper())
    assert not verify_secret(SECRET[:-1], stored)


def test_bcrypt_never_matches_past_72_bytes():
    long_secret = b"a" * 72
    stored = hash_secret(long_secret, "bcrypt", bcrypt_cost=4)
    assert verify_secret(long_secret, stored)
    # Truncating libraries would accept these: we refuse, without raising.
    assert not verify_secret(long_secret + b"b", stored)
    assert not verify_secret(b"a" * 128, stored)
    with pytest.raises(ValueError):
        hash_secret(b"a" * 73, "bcrypt", bcrypt_cost=4)


@pytest.mark.parametrize(
    "stored",
    [
        "",
        "plaintext",
        "$2b$garbage",
        "$2b$04$" + "x" * 10,
        "ab" * 31,
        "zz" * 32,
        "$2b$04$é" + "a" * 50,
        hashlib.sha256(SECRET).hexdigest()[:-1],
    ],
    ids=plain_id,
)
def test_corrupt_stored_hash_never_matches_and_never_raises(stored):
    assert not verify_secret(SECRET, stored)


def test_stored_plaintext_never_matches():
    assert not verify_secret(SECRET, SECRET.decode())


def test_unknown_scheme_is_refused():
    with pytest.raises(ValueError):
        hash_secret(SECRET, "md5")


def test_a_new_hash_carries_the_cost_asked_for_and_12_by_default():
    assert hash_secret(SECRET, "bcrypt", bcrypt_cost=5).startswith("$2b$05$")
    default = hash_secret(SECRET)  # bcrypt at cost 12: about a quarter of a second
    assert default.startswith("$2b$12$")
    assert verify_secret(SECRET, default)


@pytest.mark.parametrize(
    "stored, scheme",
    [
        ("ab" * 32, "sha256"),
        ("AB" * 32, "sha256"),
        ("0123456789abcdefABCDEF" * 2 + "0" * 20, "sha256"),
        ("a" * 63, None),  # one digit short
        ("a" * 65, None),  # one digit long: the whole value must be the digest
        ("a" * 64 + "\n", None),
        ("a" * 64 + "x", None),
        ("x" + "a" * 64, None),
        ("g" * 64, None),  # letters beyond f
        ("Z" * 64, None),
        ("$2b$04$" + "x" * 53, "bcrypt"),
        ("$2a$", "bcrypt"),
        ("$1$abc", None),
        ("", None),
        ("2b$04$", None),
    ],
    ids=plain_id,
)
def test_the_scheme_of_a_stored_hash(stored, scheme):
    assert hash_scheme(stored) == scheme


def test_a_sha256_digest_with_a_character_more_or_less_never_matches():
    stored = hashlib.sha256(SECRET).hexdigest()
    for corrupt in (stored + "0", stored[:-1], stored + "\n", stored[:-1] + "g"):
        assert not verify_secret(SECRET, corrupt)


def test_the_sha256_comparison_is_constant_time(monkeypatch):
    # No functional test can tell a constant-time comparison from ==: both give the same answers, and timing is
    # too noisy to assert on. So this test looks at the mechanism: the SHA-256 digest must be compared through
    # hmac.compare_digest, which the module looks up in its own namespace as hmac.compare_digest.
    calls = []
    real = secrethash.hmac.compare_digest

    def recording(a, b):
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(secrethash.hmac, "compare_digest", recording)
    stored = hashlib.sha256(SECRET).hexdigest()
    assert verify_secret(SECRET, stored.upper())
    assert not verify_secret(SECRET + b"x", stored)
    assert calls == [(stored, stored), (hashlib.sha256(SECRET + b"x").hexdigest(), stored)]


def test_bcrypt_refuses_a_secret_of_73_bytes_however_it_was_hashed():
    # bcrypt reads 72 bytes: a 73-byte secret whose first 72 bytes were hashed must not match.
    stored = hash_secret(b"a" * 72, "bcrypt", bcrypt_cost=4)
    assert verify_secret(b"a" * 72, stored)
    assert not verify_secret(b"a" * 73, stored)
    assert hash_secret(b"a" * 72, "bcrypt", bcrypt_cost=4).startswith("$2b$04$")


def test_refusals_to_hash_say_why():
    with pytest.raises(ValueError, match="^unknown hash scheme 'md5'$"):
        hash_secret(SECRET, "md5")
    with pytest.raises(ValueError, match="^bcrypt cannot hash secrets longer than 72 bytes$"):
        hash_secret(b"a" * 73)
