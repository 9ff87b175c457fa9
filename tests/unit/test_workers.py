"""cli/workers.py: a worker whose supervisor dies is not left behind, even when it dies right after the fork."""

import subprocess
import sys
import textwrap

# A supervisor that forks one child and exits at once; the child waits until it is orphaned, then asks for
# the supervisor's death signal as a worker does, and prints what die_with_parent() says.
ORPHANED_BEFORE_ASKING = textwrap.dedent(
    """
    import os, sys
    from token_exchange.cli.workers import die_with_parent

    supervisor = os.getpid()
    read_end, write_end = os.pipe()
    if os.fork() == 0:
        os.close(write_end)
        os.read(read_end, 1)  # end of file once the supervisor has exited
        while os.getppid() == supervisor:  # the kernel reparents the child as the parent is reaped
            os.sched_yield()
        print(die_with_parent(supervisor), flush=True)
        os._exit(0)
    os._exit(0)
    """
)

STILL_SUPERVISED = textwrap.dedent(
    """
    import os
    from token_exchange.cli.workers import die_with_parent

    supervisor = os.getpid()
    pid = os.fork()
    if pid == 0:
        print(die_with_parent(supervisor), flush=True)
        os._exit(0)
    os.waitpid(pid, 0)
    """
)


def run_script(script):
    # stdout is a pipe the orphan inherits: reading to its end waits for the orphan too.
    return subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True)


def test_a_worker_orphaned_before_asking_for_the_death_signal_knows_it():
    assert run_script(ORPHANED_BEFORE_ASKING).stdout == "False\n"


def test_a_worker_whose_supervisor_lives_keeps_running():
    assert run_script(STILL_SUPERVISED).stdout == "True\n"
