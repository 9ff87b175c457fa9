"""Deciding whether a bcrypt check may start, so that bcrypt can neither flood us nor lock a key's holder out.

A check is counted against the key id it is for and the client asking for
it (web/clientaddr.py: an IPv4 address or an IPv6 /64). Three limits,
checked before a check is queued on the hashing pool:

- all clients: at most max_pending checks queued or running; beyond that
  the request is refused (503) at once instead of waiting without bound;
- one client: at most half of max_pending (rounded up), for all keys
  together (503), so that one address cannot fill the pool by aiming at
  many key ids;
- one key id from one client: at most MAX_CONCURRENT_PER_KEY checks at
  once, and after MAX_FAILURES_PER_KEY failed checks within
  FAILURE_WINDOW_SECONDS no more until the oldest leaves the window (429).

Key ids are not secret (they are in every token), so anyone can aim wrong
secrets at one. Counted per key id alone, such a flood kept the key at 429
for its holder in every process whose verification cache did not yet hold
the holder's secret. Counted per key id and client, the flood throttles its
own address only: the holder's checks are admitted while the pool has room.

Memory stays bounded: a running count lives only while its checks run (at
most max_pending of them), and failures are kept for at most
max_tracked_failures (key id, client) pairs; beyond that the pair whose
latest failure is the oldest is forgotten. A flood from more addresses than
that gets fresh budgets, which buys it bcrypt checks that the pending
bound still caps.
"""

import collections
import math
import time

# A queued check waits at most this many checks' time, divided among the cores: long, yet bounded.
DEFAULT_MAX_PENDING = 64
# The holder of a key sends one secret, and concurrent requests with one
# secret share a single check: two leaves room and still caps a flood.
MAX_CONCURRENT_PER_KEY = 2
# A holder mistyping a secret fails a few times; a guesser fails at once.
MAX_FAILURES_PER_KEY = 5
FAILURE_WINDOW_SECONDS = 60.0
# (key id, client) pairs whose failures are remembered: about 0.4 KB each.
MAX_TRACKED_FAILURES = 10_000
# Retry-After when the pool is full: about one check's time, rounded up.
OVERLOADED_RETRY_AFTER_SECONDS = 1


class Refused(Exception):
    """The check was not started. retry_after_seconds is a whole number >= 1."""

    def __init__(self, reason, retry_after_seconds):
        super().__init__(reason)
        self.retry_after_seconds = retry_after_seconds


class Overloaded(Refused):
    """Too many checks pending for all clients, or for this client (503)."""


class Throttled(Refused):
    """Too many checks running or failed recently for this key id from this client (429)."""


class Admission:
    def __init__(
        self,
        max_pending=DEFAULT_MAX_PENDING,
        max_failures_per_key=MAX_FAILURES_PER_KEY,
        clock=time.monotonic,
        max_tracked_failures=MAX_TRACKED_FAILURES,
    ):
        self._max_pending = max_pending
        self.max_pending_per_client = math.ceil(max_pending / 2)
        self._max_failures = max_failures_per_key
        self._max_tracked_failures = max_tracked_failures
        self._clock = clock
        self.pending = 0
        self._running: collections.Counter[tuple] = collections.Counter()  # (key id, client) -> checks running
        self._pending_by_client: collections.Counter[str] = collections.Counter()  # client -> checks, all keys
        # (key id, client) -> its failure times, oldest first; the pair that failed least recently first.
        self._failures: collections.OrderedDict[tuple, list[float]] = collections.OrderedDict()

    def admit(self, key_id, client):
        """Count a check for key_id asked for by client as started, or raise Overloaded or Throttled."""
        pair = (key_id, client)
        retry_after = self._failure_retry_after(pair)
        if retry_after:
            raise Throttled(f"{self._max_failures} failed checks within {FAILURE_WINDOW_SECONDS:g} s", retry_after)
        if self._running[pair] >= MAX_CONCURRENT_PER_KEY:
            raise Throttled(f"{MAX_CONCURRENT_PER_KEY} checks already running for this key from this client", 1)
        if self.pending >= self._max_pending:
            raise Overloaded(f"{self._max_pending} checks already pending", OVERLOADED_RETRY_AFTER_SECONDS)
        if self._pending_by_client[client] >= self.max_pending_per_client:
            raise Overloaded(
                f"{self.max_pending_per_client} checks already pending for this client", OVERLOADED_RETRY_AFTER_SECONDS
            )
        self.pending += 1
        self._running[pair] += 1
        self._pending_by_client[client] += 1

    def finish(self, key_id, client, matched):
        """Count a check admitted for key_id and client as done; matched is its outcome, None if it failed to run."""
        pair = (key_id, client)
        self.pending -= 1
        self._running[pair] -= 1
        if not self._running[pair]:
            del self._running[pair]
        self._pending_by_client[client] -= 1
        if not self._pending_by_client[client]:
            del self._pending_by_client[client]
        if matched is False:
            failures = self._failures.setdefault(pair, [])
            self._failures.move_to_end(pair)
            failures.append(self._clock())
            # Only the newest max_failures matter to the limit.
            if len(failures) > self._max_failures:
                del failures[0]
            if len(self._failures) > self._max_tracked_failures:
                self._failures.popitem(last=False)

    def _failure_retry_after(self, pair):
        failures = self._failures.get(pair)
        if not failures:
            return 0
        now = self._clock()
        while failures and failures[0] + FAILURE_WINDOW_SECONDS <= now:
            del failures[0]
        if not failures:
            del self._failures[pair]
            return 0
        if len(failures) < self._max_failures:
            return 0
        return max(1, math.ceil(failures[0] + FAILURE_WINDOW_SECONDS - now))
