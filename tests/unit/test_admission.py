"""Admission of bcrypt checks (verification/admission.py): the pending bound over all keys (503), and per key
id the concurrent checks and the recent failures (429), with their Retry-After. tests/http/test_verifier.py
checks the same limits through requests."""

import tracemalloc

import pytest

from tests.support import FakeClock
from token_exchange.verification import admission as admission_module
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


def fail(admission, key_id, times=1):
    for _ in range(times):
        admission.admit(key_id)
        admission.finish(key_id, False)


def retry_after(admission, key_id):
    with pytest.raises(Throttled) as refused:
        admission.admit(key_id)
    return refused.value.retry_after_seconds


def test_the_documented_limits():
    # The README's figures, written out: a change to a constant must change this test too.
    assert (MAX_CONCURRENT_PER_KEY, MAX_FAILURES_PER_KEY, FAILURE_WINDOW_SECONDS) == (2, 5, 60.0)
    admission = Admission(clock=FakeClock())
    admission.admit("ki_a")
    admission.admit("ki_a")
    with pytest.raises(Throttled, match="2 checks already running for this key"):
        admission.admit("ki_a")
    for n in range(62):  # 64 pending in all
        admission.admit(f"ki_{n}")
    with pytest.raises(Overloaded, match="64 checks already pending") as refused:
        admission.admit("ki_other")
    assert refused.value.retry_after_seconds == 1


def test_five_failures_throttle_for_60_seconds_to_the_second():
    clock = FakeClock()
    admission = Admission(clock=clock)
    fail(admission, "ki_a", 4)
    admission.admit("ki_a")  # four failures: still admitted
    admission.finish("ki_a", False)
    with pytest.raises(Throttled, match="5 failed checks within 60 s") as refused:
        admission.admit("ki_a")
    assert refused.value.retry_after_seconds == 60
    clock.now += 59
    assert retry_after(admission, "ki_a") == 1
    clock.now += 0.5
    assert retry_after(admission, "ki_a") == 1
    clock.now += 0.5  # exactly 60 s after the failures: they have left the window
    admission.admit("ki_a")


def test_retry_after_rounds_the_time_left_up():
    clock = FakeClock()
    admission = Admission(max_failures_per_key=1, clock=clock)
    fail(admission, "ki_a")
    clock.now += 10.5
    assert retry_after(admission, "ki_a") == 50  # 49.5 s left
    clock.now += 39.25
    assert retry_after(admission, "ki_a") == 11  # 10.25 s left


def test_retry_after_counts_from_the_oldest_failure_that_still_counts():
    clock = FakeClock()
    admission = Admission(clock=clock)
    for _ in range(4):  # failures at 0, 1, 2, 3 s
        fail(admission, "ki_a")
        clock.now += 1
    # Two checks admitted together, both failing, at 4 s and 5 s: six failures, of which the newest five count.
    admission.admit("ki_a")
    admission.admit("ki_a")
    admission.finish("ki_a", False)
    clock.now += 1
    admission.finish("ki_a", False)
    assert retry_after(admission, "ki_a") == 56  # the oldest that counts was at 1 s: 61 - 5
    clock.now += 55.5
    assert retry_after(admission, "ki_a") == 1
    clock.now += 0.5
    admission.admit("ki_a")


def test_failures_leave_the_window_one_at_a_time():
    clock = FakeClock()
    admission = Admission(max_failures_per_key=2, clock=clock)
    fail(admission, "ki_a")
    clock.now += 30
    fail(admission, "ki_a")
    assert retry_after(admission, "ki_a") == 30
    clock.now += 30  # the first leaves: one failure left, below the limit
    admission.admit("ki_a")
    admission.finish("ki_a", False)  # two again: the second (30 s ago) and this one
    assert retry_after(admission, "ki_a") == 30


def test_failures_of_one_key_do_not_throttle_another():
    clock = FakeClock()
    admission = Admission(max_failures_per_key=1, clock=clock)
    fail(admission, "ki_a")
    admission.admit("ki_b")
    admission.finish("ki_b", False)
    assert retry_after(admission, "ki_a") == 60
    assert retry_after(admission, "ki_b") == 60


def test_a_check_that_failed_to_run_counts_as_no_failure():
    clock = FakeClock()
    admission = Admission(max_failures_per_key=2, clock=clock)
    fail(admission, "ki_a")
    admission.admit("ki_a")
    admission.finish("ki_a", None)
    admission.admit("ki_a")  # one failure only
    admission.finish("ki_a", True)
    admission.admit("ki_a")


def test_running_checks_are_counted_per_key_until_each_finishes():
    admission = Admission()
    admission.admit("ki_a")
    admission.admit("ki_a")
    admission.finish("ki_a", True)
    admission.admit("ki_a")  # one running, one more admitted
    with pytest.raises(Throttled):
        admission.admit("ki_a")
    admission.finish("ki_a", True)
    admission.finish("ki_a", True)
    assert admission.pending == 0
    admission.admit("ki_a")
    admission.admit("ki_a")
    assert admission.pending == 2


def test_per_key_state_is_dropped_once_a_key_is_idle():
    # The module's promise: per-key state stays bounded. A key with no check running and no failure in the
    # window must leave nothing behind, or a stream of distinct key ids would grow memory without bound.
    # Measured as memory allocated by admission.py over a second round of 20,000 fresh keys: the first round
    # sizes the tables, which Python does not shrink.
    clock = FakeClock()
    admission = Admission(clock=clock)

    def round_of_idle_keys(first):
        for n in range(first, first + 20_000):
            fail(admission, f"ki_{n:016x}")
        clock.now += FAILURE_WINDOW_SECONDS
        for n in range(first, first + 20_000):
            admission.admit(f"ki_{n:016x}")  # finds its failure out of the window
            admission.finish(f"ki_{n:016x}", True)

    only_admission = [tracemalloc.Filter(True, admission_module.__file__)]
    tracemalloc.start()
    try:
        round_of_idle_keys(0)
        before = tracemalloc.take_snapshot().filter_traces(only_admission)
        round_of_idle_keys(20_000)
        after = tracemalloc.take_snapshot().filter_traces(only_admission)
    finally:
        tracemalloc.stop()
    grown = sum(stat.size_diff for stat in after.compare_to(before, "filename"))
    assert grown < 50_000, f"{grown} bytes kept for 20,000 idle keys"
