"""Deciding whether a bcrypt check may start, so bcrypt cannot be used to flood us.

Two limits, checked before a check is queued on the hashing pool:

- all keys: at most max_pending checks queued or running; beyond that the
  request is refused (503) at once instead of waiting without bound;
- one key id: at most MAX_CONCURRENT_PER_KEY checks at once, and after
  MAX_FAILURES_PER_KEY failed checks within FAILURE_WINDOW_SECONDS no more
  until the oldest leaves the window (429). Key ids are not secret (they
  are in every token), so anyone can aim wrong secrets at one; these limits
  keep such a flood from taking the pool away from the other keys.

Only keys that exist and are active reach this point, so the per-key state
is bounded by the number of keys in the store.
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
# Retry-After when the pool is full: about one check's time, rounded up.
OVERLOADED_RETRY_AFTER_SECONDS = 1


class Refused(Exception):
    """The check was not started. retry_after_seconds is a whole number >= 1."""

    def __init__(self, reason, retry_after_seconds):
        super().__init__(reason)
        self.retry_after_seconds = retry_after_seconds


class Overloaded(Refused):
    """Too many checks pending for all keys (503)."""


class Throttled(Refused):
    """Too many checks running or failed recently for this key id (429)."""


class Admission:
    def __init__(
        self, max_pending=DEFAULT_MAX_PENDING, max_failures_per_key=MAX_FAILURES_PER_KEY, clock=time.monotonic
    ):
        self._max_pending = max_pending
        self._max_failures = max_failures_per_key
        self._clock = clock
        self.pending = 0
        self._running: collections.Counter[str] = collections.Counter()  # key id -> checks in progress
        self._failures = {}  # key id -> deque of failure times, oldest first

    def admit(self, key_id):
        """Count a check for key_id as started, or raise Overloaded or Throttled."""
        retry_after = self._failure_retry_after(key_id)
        if retry_after:
            raise Throttled(f"{self._max_failures} failed checks within {FAILURE_WINDOW_SECONDS:g} s", retry_after)
        if self._running[key_id] >= MAX_CONCURRENT_PER_KEY:
            raise Throttled(f"{MAX_CONCURRENT_PER_KEY} checks already running for this key", 1)
        if self.pending >= self._max_pending:
            raise Overloaded(f"{self._max_pending} checks already pending", OVERLOADED_RETRY_AFTER_SECONDS)
        self.pending += 1
        self._running[key_id] += 1

    def finish(self, key_id, matched):
        """Count a check admitted for key_id as done; matched is its outcome, None if it failed to run."""
        self.pending -= 1
        self._running[key_id] -= 1
        if not self._running[key_id]:
            del self._running[key_id]
        if matched is False:
            failures = self._failures.setdefault(key_id, collections.deque())
            failures.append(self._clock())
            # Only the newest max_failures matter to the limit.
            while len(failures) > self._max_failures:
                failures.popleft()

    def _failure_retry_after(self, key_id):
        failures = self._failures.get(key_id)
        if not failures:
            return 0
        now = self._clock()
        while failures and failures[0] + FAILURE_WINDOW_SECONDS <= now:
            failures.popleft()
        if not failures:
            del self._failures[key_id]
            return 0
        if len(failures) < self._max_failures:
            return 0
        return max(1, math.ceil(failures[0] + FAILURE_WINDOW_SECONDS - now))
