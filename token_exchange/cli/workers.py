"""-workers N: a supervisor that forks N worker processes sharing the bound port.

The supervisor serves the summed metrics of all workers (prometheus_client's
multiprocess mode), forwards SIGTERM and SIGINT to them, and exits 0 once
every worker has finished its requests in flight and exited 0. It forwards
SIGHUP too: each worker re-reads the signing key file itself. A worker that
dies on its own stops the others, and the supervisor exits 1, so that the
process manager (systemd, Cloud Run) restarts the service whole.
"""

import logging
import os
import shutil
import signal
import tempfile

from token_exchange.cli.service import HELD_SIGNALS, RELOAD_SIGNAL, STOP_SIGNALS, fail, run

log = logging.getLogger("token_exchange")

PR_SET_PDEATHSIG = 1


def supervise(config, keys, sockets):
    """Fork the workers on the bound sockets, serve their summed metrics, forward signals; the exit status."""
    metrics_dir = tempfile.mkdtemp(prefix="token-exchange-metrics-")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir  # before prometheus_client is imported
    workers: set[int] = set()
    stopping: list[int] = []

    def send_to_workers(signum, frame=None):
        for pid in workers:
            try:
                os.kill(pid, signum)
            except ProcessLookupError:  # reaped by os.wait(), not yet discarded
                pass

    def forward(signum, frame=None):
        stopping.append(signum)
        send_to_workers(signum)

    for signum in STOP_SIGNALS:
        signal.signal(signum, forward)
    signal.signal(RELOAD_SIGNAL, send_to_workers)  # not a stop: each worker reloads its key file
    try:
        # The signals are still held back (main()): one reaches every worker once all are forked, and a
        # worker, which inherits the mask, takes its signals once it serves.
        try:
            supervisor_pid = os.getpid()
            for _ in range(config.workers):
                pid = os.fork()
                if pid == 0:  # the worker: it never runs the supervisor's code
                    os._exit(worker(config, keys, sockets, metrics_dir, supervisor_pid))
                workers.add(pid)
        finally:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, HELD_SIGNALS)
        for sock in sockets:
            sock.close()  # the workers accept; the supervisor only waits
        from token_exchange.observability import metrics

        try:
            metrics.start_metrics_server(config.prometheusx_listen_address, metrics.exposition_registry(metrics_dir))
        except OSError as e:
            forward(signal.SIGTERM)
            wait_for_workers(workers, stopping, metrics_dir)
            fail(f"cannot serve metrics on {config.prometheusx_listen_address}: {e.strerror}")
        log.info("supervising %d workers: %s", len(workers), " ".join(map(str, sorted(workers))))
        status = wait_for_workers(workers, stopping, metrics_dir)
        if status == 0:
            log.info("stopped: every worker has exited")
        return status
    finally:
        shutil.rmtree(metrics_dir, ignore_errors=True)


def wait_for_workers(workers, stopping, metrics_dir):
    """Reap the workers; the supervisor's exit status. One that exits unasked, or fails, stops the rest."""
    from token_exchange.observability import metrics

    status = 0
    while workers:
        pid, wait_status = os.wait()  # signal handlers run in between; wait() resumes after them
        workers.discard(pid)
        metrics.mark_worker_dead(pid, metrics_dir)
        code = os.waitstatus_to_exitcode(wait_status)
        if code != 0 or not stopping:
            log.error("worker %d exited with status %d; stopping the others", pid, code)
            status = 1
            if not stopping:
                stopping.append(signal.SIGTERM)
                for other in workers:
                    os.kill(other, signal.SIGTERM)
    return status


def worker(config, keys, sockets, metrics_dir, supervisor_pid):
    """Body of a forked worker: its exit status, whatever happens."""
    try:
        # The default action until serve() takes the signals; they stay held back until then.
        for signum in HELD_SIGNALS:
            signal.signal(signum, signal.SIG_DFL)
        if not die_with_parent(supervisor_pid):
            return 1  # orphaned between the fork and the request: nobody would ever stop this worker
        return run(config, keys, sockets, metrics_dir)
    except SystemExit as e:
        return e.code if isinstance(e.code, int) else 1
    except BaseException:
        log.exception("worker failed")
        return 1
    finally:
        logging.shutdown()


def die_with_parent(supervisor_pid):
    """On Linux, have the kernel send SIGTERM when the supervisor dies, so no worker is orphaned. False if
    the supervisor (supervisor_pid) has died already: the kernel sends nothing for a death before the request."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):
        pass
    return os.getppid() == supervisor_pid
