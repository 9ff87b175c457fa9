"""Hashes of API-key secrets at rest: bcrypt for new keys, SHA-256 accepted.

The Go tool writes the lowercase hex SHA-256 of the secret; keys created
here get bcrypt (cost 12 unless told otherwise). A stored value starting
with "$2" is bcrypt, 64 hex digits is SHA-256; anything else never matches.
"""

import hashlib
import hmac
import re

import bcrypt

BCRYPT = "bcrypt"
SHA256 = "sha256"
SCHEMES = (BCRYPT, SHA256)
DEFAULT_BCRYPT_COST = 12
MIN_BCRYPT_COST = 4
MAX_BCRYPT_COST = 31
# bcrypt reads at most 72 bytes; older libraries silently ignored the rest,
# which would let a longer secret match on its first 72 bytes alone.
BCRYPT_MAX_SECRET_BYTES = 72

_SHA256_HEX = re.compile(r"[0-9a-fA-F]{64}")


def sha256_hex(data):
    return hashlib.sha256(data).hexdigest()


def hash_secret(secret, scheme=BCRYPT, bcrypt_cost=DEFAULT_BCRYPT_COST):
    """Hash a secret (bytes) for storage."""
    if scheme == SHA256:
        return sha256_hex(secret)
    if scheme != BCRYPT:
        raise ValueError(f"unknown hash scheme {scheme!r}")
    if len(secret) > BCRYPT_MAX_SECRET_BYTES:
        raise ValueError(f"bcrypt cannot hash secrets longer than {BCRYPT_MAX_SECRET_BYTES} bytes")
    return bcrypt.hashpw(secret, bcrypt.gensalt(rounds=bcrypt_cost)).decode("ascii")


def hash_scheme(stored_hash):
    """Name the scheme of a stored hash, or None when it is neither."""
    if stored_hash.startswith("$2"):
        return BCRYPT
    if _SHA256_HEX.fullmatch(stored_hash):
        return SHA256
    return None


def verify_secret(secret, stored_hash):
    """True when the secret matches the stored hash. Never raises on bad input.

    CPU-heavy for bcrypt hashes (hundreds of milliseconds at cost 12): call
    it from a worker thread, never on the event loop.
    """
    scheme = hash_scheme(stored_hash)
    if scheme == SHA256:
        return hmac.compare_digest(sha256_hex(secret), stored_hash.lower())
    if scheme == BCRYPT:
        if len(secret) > BCRYPT_MAX_SECRET_BYTES:
            return False
        try:
            # checkpw compares in constant time.
            return bcrypt.checkpw(secret, stored_hash.encode("ascii"))
        except ValueError:  # a corrupt stored hash
            return False
    return False
