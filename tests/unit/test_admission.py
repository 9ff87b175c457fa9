"""Admission of bcrypt checks (verification/admission.py): the pending bound over all keys (503), one client's
share of it (503), and per key id and client the concurrent checks and the recent failures (429), with their
Retry-After. tests/http/test_verifier.py and tests/http/test_lockout.py check the same limits through requests."""

import tracemalloc

import pytest

from tests.support import FakeClock
from token_exchange.verification import admission as admission_module
from token_exchange.verification.admission import (
    FAILURE_WINDOW_SECONDS,
    MAX_CONCURRENT_PER_KEY,
    MAX_FAILURES_PER_KEY,
    MAX_TRACKED_FAILURES,
    Admission,
    Overloaded,
    Refused,
    Throttled,
)

CLIENT = "192.0.2.1"
OTHER_CLIENT = "192.0.2.2"


def test_concurrent_checks_of_one_key_are_limited_and_other_keys_are_not():
    admission = Admission()
    for _ in range(MAX_CONCURRENT_PER_KEY):
        admission.admit("ki_a", CLIENT)
    with pytest.raises(Throttled) as refused:
        admission.admit("ki_a", CLIENT)
    assert refused.value.retry_after_seconds == 1
    admission.admit("ki_b", CLIENT)
    assert admission.pending == MAX_CONCURRENT_PER_KEY + 1
    admission.finish("ki_a", CLIENT, True)
    admission.admit("ki_a", CLIENT)  # a finished check makes room


def test_beyond_the_pending_bound_every_key_and_client_is_refused_until_one_finishes():
    admission = Admission(max_pending=2)
    admission.admit("ki_a", CLIENT)
    admission.admit("ki_b", OTHER_CLIENT)
    with pytest.raises(Overloaded, match="^2 checks already pending$") as refused:
        admission.admit("ki_c", "192.0.2.3")
    assert isinstance(refused.value, Refused)
    assert refused.value.retry_after_seconds == 1
    admission.finish("ki_b", OTHER_CLIENT, None)
    admission.admit("ki_c", "192.0.2.3")
    assert admission.pending == 2


def test_recent_failures_throttle_that_key_until_the_oldest_leaves_the_window():
    clock = FakeClock()
    admission = Admission(clock=clock)
    for _ in range(MAX_FAILURES_PER_KEY):
        admission.admit("ki_a", CLIENT)
        admission.finish("ki_a", CLIENT, False)
        clock.now += 1
    # The oldest failure was MAX_FAILURES_PER_KEY seconds ago.
    with pytest.raises(Throttled) as refused:
        admission.admit("ki_a", CLIENT)
    assert refused.value.retry_after_seconds == FAILURE_WINDOW_SECONDS - MAX_FAILURES_PER_KEY
    admission.admit("ki_b", CLIENT)
    admission.finish("ki_b", CLIENT, True)
    assert admission.pending == 0
    clock.now += FAILURE_WINDOW_SECONDS - MAX_FAILURES_PER_KEY  # the oldest failure leaves the window
    admission.admit("ki_a", CLIENT)


def test_a_retry_after_is_a_whole_second_at_least():
    clock = FakeClock()
    admission = Admission(max_failures_per_key=1, clock=clock)
    admission.admit("ki_a", CLIENT)
    admission.finish("ki_a", CLIENT, False)
    clock.now += FAILURE_WINDOW_SECONDS - 0.25
    with pytest.raises(Throttled) as refused:
        admission.admit("ki_a", CLIENT)
    assert refused.value.retry_after_seconds == 1


def test_matches_and_checks_that_failed_to_run_are_no_failures():
    admission = Admission(max_failures_per_key=1)
    for matched in (True, None, True, None):
        admission.admit("ki_a", CLIENT)
        admission.finish("ki_a", CLIENT, matched)
    admission.admit("ki_a", CLIENT)


def fail(admission, key_id, times=1, client=CLIENT):
    for _ in range(times):
        admission.admit(key_id, client)
        admission.finish(key_id, client, False)


def retry_after(admission, key_id, client=CLIENT):
    with pytest.raises(Throttled) as refused:
        admission.admit(key_id, client)
    return refused.value.retry_after_seconds


def test_the_documented_limits():
    # The README's figures, written out: a change to a constant must change this test too.
    assert (MAX_CONCURRENT_PER_KEY, MAX_FAILURES_PER_KEY, FAILURE_WINDOW_SECONDS) == (2, 5, 60.0)
    assert MAX_TRACKED_FAILURES == 10_000
    admission = Admission(clock=FakeClock())
    assert admission.max_pending_per_client == 32
    admission.admit("ki_a", CLIENT)
    admission.admit("ki_a", CLIENT)
    with pytest.raises(Throttled, match="^2 checks already running for this key from this client$"):
        admission.admit("ki_a", CLIENT)
    for n in range(30):  # 32 pending for this client
        admission.admit(f"ki_{n}", CLIENT)
    with pytest.raises(Overloaded, match="^32 checks already pending for this client$") as refused:
        admission.admit("ki_other", CLIENT)
    assert refused.value.retry_after_seconds == 1
    for n in range(32):  # 64 pending in all
        admission.admit(f"ki_{n}", f"198.51.100.{n}")
    with pytest.raises(Overloaded, match="^64 checks already pending$") as refused:
        admission.admit("ki_other", "203.0.113.1")
    assert refused.value.retry_after_seconds == 1


def test_five_failures_throttle_for_60_seconds_to_the_second():
    clock = FakeClock()
    admission = Admission(clock=clock)
    fail(admission, "ki_a", 4)
    admission.admit("ki_a", CLIENT)  # four failures: still admitted
    admission.finish("ki_a", CLIENT, False)
    with pytest.raises(Throttled, match="5 failed checks within 60 s") as refused:
        admission.admit("ki_a", CLIENT)
    assert refused.value.retry_after_seconds == 60
    clock.now += 59
    assert retry_after(admission, "ki_a") == 1
    clock.now += 0.5
    assert retry_after(admission, "ki_a") == 1
    clock.now += 0.5  # exactly 60 s after the failures: they have left the window
    admission.admit("ki_a", CLIENT)


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
    admission.admit("ki_a", CLIENT)
    admission.admit("ki_a", CLIENT)
    admission.finish("ki_a", CLIENT, False)
    clock.now += 1
    admission.finish("ki_a", CLIENT, False)
    assert retry_after(admission, "ki_a") == 56  # the oldest that counts was at 1 s: 61 - 5
    clock.now += 55.5
    assert retry_after(admission, "ki_a") == 1
    clock.now += 0.5
    admission.admit("ki_a", CLIENT)


def test_failures_leave_the_window_one_at_a_time():
    clock = FakeClock()
    admission = Admission(max_failures_per_key=2, clock=clock)
    fail(admission, "ki_a")
    clock.now += 30
    fail(admission, "ki_a")
    assert retry_after(admission, "ki_a") == 30
    clock.now += 30  # the first leaves: one failure left, below the limit
    admission.admit("ki_a", CLIENT)
    admission.finish("ki_a", CLIENT, False)  # two again: the second (30 s ago) and this one
    assert retry_after(admission, "ki_a") == 30


def test_failures_of_one_key_do_not_throttle_another():
    clock = FakeClock()
    admission = Admission(max_failures_per_key=1, clock=clock)
    fail(admission, "ki_a")
    admission.admit("ki_b", CLIENT)
    admission.finish("ki_b", CLIENT, False)
    assert retry_after(admission, "ki_a") == 60
    assert retry_after(admission, "ki_b") == 60


def test_a_check_that_failed_to_run_counts_as_no_failure():
    clock = FakeClock()
    admission = Admission(max_failures_per_key=2, clock=clock)
    fail(admission, "ki_a")
    admission.admit("ki_a", CLIENT)
    admission.finish("ki_a", CLIENT, None)
    admission.admit("ki_a", CLIENT)  # one failure only
    admission.finish("ki_a", CLIENT, True)
    admission.admit("ki_a", CLIENT)


def test_running_checks_are_counted_per_key_until_each_finishes():
    admission = Admission()
    admission.admit("ki_a", CLIENT)
    admission.admit("ki_a", CLIENT)
    admission.finish("ki_a", CLIENT, True)
    admission.admit("ki_a", CLIENT)  # one running, one more admitted
    with pytest.raises(Throttled):
        admission.admit("ki_a", CLIENT)
    admission.finish("ki_a", CLIENT, True)
    admission.finish("ki_a", CLIENT, True)
    assert admission.pending == 0
    admission.admit("ki_a", CLIENT)
    admission.admit("ki_a", CLIENT)
    assert admission.pending == 2


def address(n):
    return f"10.{n >> 16 & 255}.{n >> 8 & 255}.{n & 255}"


def test_per_key_and_client_state_is_dropped_once_idle():
    # The module's promise: its state stays bounded. A key id and client with no check running and no failure
    # in the window must leave nothing behind, or a stream of distinct ones would grow memory up to the cap on
    # failures at best, and without bound for running counts. Measured as memory allocated by admission.py over
    # a second round of 20,000 fresh keys and clients (the cap lifted, so that only dropping idle state can keep
    # memory flat): the first round sizes the tables, which Python does not shrink.
    clock = FakeClock()
    admission = Admission(clock=clock, max_tracked_failures=10**9)

    def round_of_idle_keys(first):
        for n in range(first, first + 20_000):
            fail(admission, f"ki_{n:016x}", client=address(n))
        clock.now += FAILURE_WINDOW_SECONDS
        for n in range(first, first + 20_000):
            admission.admit(f"ki_{n:016x}", address(n))  # finds its failure out of the window
            admission.finish(f"ki_{n:016x}", address(n), True)

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


# Per client: a flood from one address throttles that address only.


def test_failures_from_one_client_do_not_throttle_another_client_of_that_key():
    clock = FakeClock()
    admission = Admission(clock=clock)
    fail(admission, "ki_a", MAX_FAILURES_PER_KEY, client=CLIENT)
    assert retry_after(admission, "ki_a", CLIENT) == 60
    for _ in range(MAX_FAILURES_PER_KEY - 1):  # the other client's own budget, whole
        fail(admission, "ki_a", client=OTHER_CLIENT)
    admission.admit("ki_a", OTHER_CLIENT)
    admission.finish("ki_a", OTHER_CLIENT, True)
    assert retry_after(admission, "ki_a", CLIENT) == 60
    fail(admission, "ki_a", client=OTHER_CLIENT)  # its fifth failure: now it is throttled too, on its own count
    assert retry_after(admission, "ki_a", OTHER_CLIENT) == 60


def test_concurrent_checks_are_limited_per_key_and_client():
    admission = Admission()
    for _ in range(MAX_CONCURRENT_PER_KEY):
        admission.admit("ki_a", CLIENT)
    with pytest.raises(Throttled) as refused:
        admission.admit("ki_a", CLIENT)
    assert refused.value.retry_after_seconds == 1
    for _ in range(MAX_CONCURRENT_PER_KEY):  # another client of the same key has slots of its own
        admission.admit("ki_a", OTHER_CLIENT)
    with pytest.raises(Throttled):
        admission.admit("ki_a", OTHER_CLIENT)
    admission.admit("ki_b", CLIENT)
    assert admission.pending == 2 * MAX_CONCURRENT_PER_KEY + 1
    admission.finish("ki_a", OTHER_CLIENT, False)
    admission.admit("ki_a", OTHER_CLIENT)  # its finished check made room for it, not for the first client
    with pytest.raises(Throttled):
        admission.admit("ki_a", CLIENT)


@pytest.mark.parametrize("max_pending,share", [(1, 1), (2, 1), (3, 2), (4, 2), (5, 3), (64, 32), (65, 33)])
def test_one_client_holds_at_most_half_the_pending_bound_rounded_up(max_pending, share):
    admission = Admission(max_pending=max_pending)
    assert admission.max_pending_per_client == share
    for n in range(share):
        admission.admit(f"ki_{n}", CLIENT)
    with pytest.raises(Overloaded) as refused:
        admission.admit("ki_next", CLIENT)
    assert refused.value.retry_after_seconds == 1
    if max_pending > share:
        # Refused for its share, not for the bound: another client still gets a check started.
        assert str(refused.value) == f"{share} checks already pending for this client"
        admission.admit("ki_next", OTHER_CLIENT)
    admission.finish("ki_0", CLIENT, True)
    admission.admit("ki_next", CLIENT)  # a finished check gives its place back to its client


def test_a_client_share_counts_checks_of_every_outcome_until_each_finishes():
    admission = Admission(max_pending=4)  # a share of 2
    admission.admit("ki_a", CLIENT)
    admission.admit("ki_b", CLIENT)
    with pytest.raises(Overloaded):
        admission.admit("ki_c", CLIENT)
    admission.finish("ki_a", CLIENT, None)  # one place back, no more
    admission.admit("ki_c", CLIENT)
    with pytest.raises(Overloaded):
        admission.admit("ki_d", CLIENT)
    admission.finish("ki_b", CLIENT, False)
    admission.finish("ki_c", CLIENT, True)  # both places back, no more
    admission.admit("ki_d", CLIENT)
    admission.admit("ki_e", CLIENT)
    with pytest.raises(Overloaded, match="for this client"):
        admission.admit("ki_f", CLIENT)
    assert admission.pending == 2


# Bounded memory: failures are remembered for max_tracked_failures (key id, client) pairs.


def test_beyond_the_tracked_pairs_the_pair_that_failed_least_recently_is_forgotten():
    clock = FakeClock()
    admission = Admission(max_failures_per_key=1, clock=clock, max_tracked_failures=3)
    for n in range(3):
        fail(admission, "ki_a", client=address(n))
        clock.now += 1
    for n in range(3):  # exactly as many pairs as tracked: none forgotten
        assert retry_after(admission, "ki_a", address(n)) == 60 - 3 + n
    fail(admission, "ki_b", client=address(0))  # a fourth pair: the oldest, ki_a from client 0, goes
    admission.admit("ki_a", address(0))
    assert retry_after(admission, "ki_a", address(1)) == 58
    assert retry_after(admission, "ki_a", address(2)) == 59
    assert retry_after(admission, "ki_b", address(0)) == 60


def test_a_new_failure_makes_its_pair_the_last_to_be_forgotten():
    clock = FakeClock()
    admission = Admission(max_failures_per_key=2, clock=clock, max_tracked_failures=2)
    fail(admission, "ki_a", client=address(0))
    fail(admission, "ki_a", client=address(1))
    fail(admission, "ki_a", client=address(0))  # client 0 fails again: client 1 is now the least recent
    fail(admission, "ki_a", client=address(2))  # a third pair: client 1's failure is forgotten
    assert retry_after(admission, "ki_a", address(0)) == 60
    fail(admission, "ki_a", client=address(1))  # one failure counted, not two
    admission.admit("ki_a", address(1))


def test_failures_of_a_flood_from_many_clients_take_bounded_memory():
    # Three times as many clients failing within one window as pairs are tracked: the newest pairs are
    # remembered, and memory stays at the cap's size (under 0.6 KB a pair, five failures each), whatever the
    # number of clients. A cap of 2,000 rather than the default 10,000 keeps the test quick.
    tracked = 2_000
    admission = Admission(clock=FakeClock(), max_tracked_failures=tracked)
    only_admission = [tracemalloc.Filter(True, admission_module.__file__)]
    tracemalloc.start()
    try:
        for n in range(3 * tracked):
            fail(admission, "ki_a", MAX_FAILURES_PER_KEY, client=address(n))
        kept = sum(
            stat.size for stat in tracemalloc.take_snapshot().filter_traces(only_admission).statistics("filename")
        )
    finally:
        tracemalloc.stop()
    assert kept < tracked * 600, f"{kept} bytes for {tracked} pairs"
    assert retry_after(admission, "ki_a", address(2 * tracked)) == 60  # the oldest remembered
    admission.admit("ki_a", address(2 * tracked - 1))  # the newest forgotten
