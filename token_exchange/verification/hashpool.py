"""The pool that runs bcrypt checks.

bcrypt releases the GIL, so one thread per core uses every core; more
would only queue. Its threads run at a lower scheduling priority than the
event loop: while checks keep every core busy, the loop still gets a core
at once to answer /health, the JWKS and warm exchanges.
"""

import concurrent.futures
import os
import threading

# Nice increment of the hashing threads; any positive value lets the loop win.
HASH_THREAD_NICENESS = 10


def _lower_priority():
    try:
        # On Linux a thread id names one thread for setpriority.
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), HASH_THREAD_NICENESS)
    except (AttributeError, OSError):
        pass  # not Linux, or not allowed: the pool still works, at normal priority


def make_hash_executor(threads=None):
    return concurrent.futures.ThreadPoolExecutor(
        threads or os.cpu_count() or 1, thread_name_prefix="hash", initializer=_lower_priority
    )
