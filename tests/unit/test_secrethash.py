"""Secret hashes at rest: bcrypt for new keys, the Go tool's SHA-256 accepted."""

import hashlib

import pytest

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
)
def test_corrupt_stored_hash_never_matches_and_never_raises(stored):
    assert not verify_secret(SECRET, stored)


def test_stored_plaintext_never_matches():
    assert not verify_secret(SECRET, SECRET.decode())


def test_unknown_scheme_is_refused():
    with pytest.raises(ValueError):
        hash_secret(SECRET, "md5")
