"""Admission of bcrypt checks (verification/admission.py): the pending bound over all keys (503), and per key
id the concurrent checks and the recent failures (429), with their Retry-After. tests/http/test_verifier.py
checks the same limits through requests."""

import pytest

from tests.support import FakeClock
from token_exchange.verification.admission import (
    FAILURE_WINDOW_SECONDS,
    MAX_CONCURRENT_PER_KEY,
    MAX_FAILURES_PER_KEY,
    Admission,
    Overloaded,
    Refused,
    Throttled,
)


def test_concurrent_checks_of_one_key_are_limited_and_other_keys_are_not():
    admission = Admission()
    for _ in range(MAX_CONCURRENT_PER_KEY):
        admission.admit("ki_a")
    with pytest.raises(Throttled) as refused:
        admission.admit("ki_a")
    assert refused.value.retry_after_seconds == 1
    admission.admit("ki_b")
    assert admission.pending == MAX_CONCURRENT_PER_KEY + 1
    admission.finish("ki_a", True)
    admission.admit("ki_a")  # a finished check makes room


def test_beyond_the_pending_bound_every_key_is_refused_until_one_finishes():
    admission = Admission(max_pending=2)
    admission.admit("ki_a")
    admission.admit("ki_b")
    with pytest.raises(Overloaded) as refused:
        admission.admit("ki_c")
    assert isinstance(refused.value, Refused)
    assert refused.value.retry_after_seconds == 1
    admission.finish("ki_b", None)
    admission.admit("ki_c")
    assert admission.pending == 2


def test_recent_failures_throttle_that_key_until_the_oldest_leaves_the_window():
    clock = FakeClock()
    admission = Admission(clock=clock)
    for _ in range(MAX_FAILURES_PER_KEY):
        admission.admit("ki_a")
        admission.finish("ki_a", False)
        clock.now += 1
    # The oldest failure was MAX_FAILURES_PER_KEY seconds ago.
    with pytest.raises(Throttled) as refused:
        admission.admit("ki_a")
    assert refused.value.retry_after_seconds == FAILURE_WINDOW_SECONDS - MAX_FAILURES_PER_KEY
    admission.admit("ki_b")
    admission.finish("ki_b", True)
    assert admission.pending == 0
    clock.now += FAILURE_WINDOW_SECONDS - MAX_FAILURES_PER_KEY  # the oldest failure leaves the window
    admission.admit("ki_a")


def test_a_retry_after_is_a_whole_second_at_least():
    clock = FakeClock()
    admission = Admission(max_failures_per_key=1, clock=clock)
    admission.admit("ki_a")
    admission.finish("ki_a", False)
    clock.now += FAILURE_WINDOW_SECONDS - 0.25
    with pytest.raises(Throttled) as refused:
        admission.admit("ki_a")
    assert refused.value.retry_after_seconds == 1


def test_matches_and_checks_that_failed_to_run_are_no_failures():
    admission = Admission(max_failures_per_key=1)
    for matched in (True, None, True, None):
        admission.admit("ki_a")
        admission.finish("ki_a", matched)
    admission.admit("ki_a")
