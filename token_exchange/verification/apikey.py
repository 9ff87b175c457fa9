"""API key formats: parsing with limits, and generation of new keys.

Design: an integration API key names the record it belongs to,

    mlabk.cii_<integrationID>.ki_<keyID>.<secret>

so the store finds the record with one direct lookup by (integration id,
key id) and only the secret needs to be checked against a stored hash.
Key ids are not secret: they travel inside the issued tokens.

Autojoin keys carry no id: the whole key is the secret. They are found by
a lookup on the key itself (Datastore) or on its SHA-256 (SQLite).
"""

import base64
import secrets
from typing import NamedTuple

INTEGRATION_KEY_PREFIX = "mlabk."
INTEGRATION_ID_PREFIX = "cii_"
KEY_ID_PREFIX = "ki_"

# Defence in depth: every limit is checked before any lookup, so an
# oversized or odd key never costs a store call or a hash.
MAX_INTEGRATION_KEY_BYTES = 300  # the longest valid key is 268 bytes
MAX_INTEGRATION_ID_BYTES = 64  # human-readable ids
MIN_KEY_ID_BYTES = len(KEY_ID_PREFIX) + 1  # "ki_" and at least one byte
MAX_KEY_ID_BYTES = 64  # including "ki_"
MAX_SECRET_BYTES = 128  # 96 random bytes in base64 would still fit
# Generated autojoin keys are 43 bytes; Datastore indexes strings of up to
# 1500 bytes, so anything longer cannot match a stored key anyway.
MAX_AUTOJOIN_KEY_BYTES = 1500

SECRET_RANDOM_BYTES = 32
KEY_ID_RANDOM_BYTES = 8  # 16 hex digits


class MalformedKey(ValueError):
    """The key cannot be a valid key. The message never contains the key."""


class IntegrationKey(NamedTuple):
    """A presented key's parts (a tuple: made once per exchange, it costs less than a frozen dataclass)."""

    integration_id: str  # without "cii_"
    key_id: str  # with "ki_"
    secret: bytes

    def __repr__(self):
        # Keep the secret out of tracebacks and debug output.
        return f"IntegrationKey(integration_id={self.integration_id!r}, key_id={self.key_id!r})"


def _utf8(text):
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:  # lone surrogates from JSON "\ud800" escapes
        raise MalformedKey("key is not valid UTF-8") from None


_INTEGRATION_KEY_PREFIX = INTEGRATION_KEY_PREFIX.encode()
_INTEGRATION_ID_PREFIX = INTEGRATION_ID_PREFIX.encode()
_KEY_ID_PREFIX = KEY_ID_PREFIX.encode()


def parse_integration_key(api_key):
    """Split an integration API key into its parts, enforcing every limit."""
    raw = _utf8(api_key)
    if len(raw) > MAX_INTEGRATION_KEY_BYTES:
        raise MalformedKey(f"key longer than {MAX_INTEGRATION_KEY_BYTES} bytes")
    if not raw.startswith(_INTEGRATION_KEY_PREFIX):
        raise MalformedKey(f"key does not start with {INTEGRATION_KEY_PREFIX!r}")
    parts = raw[len(_INTEGRATION_KEY_PREFIX) :].split(b".", 3)
    if len(parts) != 3:
        raise MalformedKey(f"expected 3 dot-separated parts, got {len(parts)}")
    integration_part, key_id, secret = parts

    if not integration_part.startswith(_INTEGRATION_ID_PREFIX):
        raise MalformedKey(f"integration part does not start with {INTEGRATION_ID_PREFIX!r}")
    integration_id = integration_part[len(_INTEGRATION_ID_PREFIX) :]
    if not 1 <= len(integration_id) <= MAX_INTEGRATION_ID_BYTES:
        raise MalformedKey(f"integration id must be 1..{MAX_INTEGRATION_ID_BYTES} bytes")

    if not key_id.startswith(_KEY_ID_PREFIX):
        raise MalformedKey(f"key id does not start with {KEY_ID_PREFIX!r}")
    if not MIN_KEY_ID_BYTES <= len(key_id) <= MAX_KEY_ID_BYTES:
        raise MalformedKey(f"key id must be {MIN_KEY_ID_BYTES}..{MAX_KEY_ID_BYTES} bytes")

    if not 1 <= len(secret) <= MAX_SECRET_BYTES:
        raise MalformedKey(f"secret must be 1..{MAX_SECRET_BYTES} bytes")

    return IntegrationKey(integration_id.decode(), key_id.decode(), secret)


def check_autojoin_key(api_key):
    """Return the autojoin key as bytes, or raise MalformedKey."""
    raw = _utf8(api_key)
    if not 1 <= len(raw) <= MAX_AUTOJOIN_KEY_BYTES:
        raise MalformedKey(f"autojoin key must be 1..{MAX_AUTOJOIN_KEY_BYTES} bytes")
    return raw


def check_integration_id(integration_id):
    """Refuse an id that would make keys the service cannot parse."""
    _check_id_part(integration_id, "integration id", 1, MAX_INTEGRATION_ID_BYTES)


def check_key_id(key_id):
    if not key_id.startswith(KEY_ID_PREFIX):
        raise MalformedKey(f"key id must start with {KEY_ID_PREFIX!r}")
    _check_id_part(key_id, "key id", MIN_KEY_ID_BYTES, MAX_KEY_ID_BYTES)


def _check_id_part(value, what, min_bytes, max_bytes):
    raw = _utf8(value)
    if not min_bytes <= len(raw) <= max_bytes:
        raise MalformedKey(f"{what} must be {min_bytes}..{max_bytes} bytes")
    if "." in value:
        raise MalformedKey(f"{what} must not contain '.'")
    if any(ch.isspace() or not ch.isprintable() for ch in value):
        raise MalformedKey(f"{what} must not contain spaces or control characters")


def _random_urlsafe(num_bytes):
    return base64.urlsafe_b64encode(secrets.token_bytes(num_bytes)).rstrip(b"=").decode()


def generate_secret():
    """32 random bytes, base64url without padding (43 characters)."""
    return _random_urlsafe(SECRET_RANDOM_BYTES)


def generate_key_id():
    return KEY_ID_PREFIX + secrets.token_hex(KEY_ID_RANDOM_BYTES)


def generate_autojoin_key():
    return _random_urlsafe(SECRET_RANDOM_BYTES)


def format_integration_key(integration_id, key_id, secret):
    return f"{INTEGRATION_KEY_PREFIX}{INTEGRATION_ID_PREFIX}{integration_id}.{key_id}.{secret}"
