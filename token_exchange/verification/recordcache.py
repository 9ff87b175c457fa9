"""Store records kept for a short, bounded time.

A record read from the store is served from here for at most ttl seconds,
so a revoked key or a changed hash reaches the running service within
that bound (-key-cache-ttl). Only found records are kept: a key created
a moment ago works at once. ttl 0 keeps nothing.
"""

import collections
import time

# Revocation reaches the service within this many seconds by default.
DEFAULT_KEY_CACHE_TTL_SECONDS = 5.0
# A record is a few hundred bytes: 10,000 keys cost a few MB at most.
DEFAULT_MAX_RECORDS = 10_000


class RecordCache:
    def __init__(self, ttl_seconds, max_records=DEFAULT_MAX_RECORDS, clock=time.monotonic):
        self._ttl = ttl_seconds
        self._max_records = max_records
        self._clock = clock
        self._records = collections.OrderedDict()  # lookup key -> (expires at, record)

    def get(self, key):
        """The record cached under key and still fresh, or None."""
        entry = self._records.get(key)
        if entry is None:
            return None
        expires_at, record = entry
        if self._clock() >= expires_at:
            del self._records[key]
            return None
        self._records.move_to_end(key)
        return record

    def put(self, key, record):
        if self._ttl <= 0 or record is None:
            return
        self._records[key] = (self._clock() + self._ttl, record)
        self._records.move_to_end(key)
        while len(self._records) > self._max_records:
            self._records.popitem(last=False)
