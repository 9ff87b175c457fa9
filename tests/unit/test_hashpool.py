"""The bcrypt pool runs below the event loop's priority."""

import os
import sys
import threading

import pytest

from token_exchange.verification.hashpool import make_hash_executor


def own_niceness():
    return os.getpriority(os.PRIO_PROCESS, threading.get_native_id())


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="per-thread priority is Linux's")
def test_hash_threads_are_nicer_than_the_caller():
    with make_hash_executor(2) as pool:
        assert pool.submit(own_niceness).result(10) > own_niceness()
    # The caller's own priority is untouched.
    assert own_niceness() == os.getpriority(os.PRIO_PROCESS, 0)
