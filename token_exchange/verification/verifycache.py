"""Remembering which secrets have verified, so bcrypt runs once per secret.

An entry is a keyed BLAKE2b digest (a MAC, RFC 7693) of (secret, stored
hash) under a key drawn at random when the process starts: the cache holds no secret, and its entries are
useless outside this process. Keying on the stored hash too means a key
whose hash changes (a new secret) never matches an old entry. The cache
says nothing about whether a key is still active: the caller checks the
store record (fresh, or cached for -key-cache-ttl) before asking it.
"""

import collections
import hashlib
import os

# About 150 bytes an entry: 10,000 keys in use at once cost ~1.5 MB.
DEFAULT_MAX_ENTRIES = 10_000


class VerificationCache:
    """A bounded LRU set of keyed digests of secrets that matched their stored hash."""

    def __init__(self, max_entries=DEFAULT_MAX_ENTRIES):
        self._max_entries = max_entries
        self._digest_key = os.urandom(32)
        self._entries = collections.OrderedDict()

    def digest(self, secret, stored_hash):
        """The entry for a secret (bytes) and a stored hash (str)."""
        # The length prefix keeps (secret, hash) pairs from running into each other.
        message = len(secret).to_bytes(4, "big") + secret + stored_hash.encode("utf-8", "surrogatepass")
        # Keyed BLAKE2b is a MAC in one pass, where HMAC hashes twice.
        return hashlib.blake2b(message, key=self._digest_key, digest_size=32).digest()

    def __contains__(self, digest):
        if digest in self._entries:
            self._entries.move_to_end(digest)
            return True
        return False

    def add(self, digest):
        self._entries[digest] = None
        self._entries.move_to_end(digest)
        while len(self._entries) > self._max_entries:
            self._entries.popitem(last=False)

    def __len__(self):
        return len(self._entries)

    def entries(self):
        """The stored digests (for tests that check what is kept)."""
        return list(self._entries)
