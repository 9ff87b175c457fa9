"""Start-up: configuration, signing key, key store, then serve until signalled.

One process by default (Cloud Run gives an instance one CPU). With
-workers N a small supervisor binds the port, forks N workers that share
it, serves the metrics of all of them, forwards SIGTERM/SIGINT to them and
exits 0 once every worker has finished its requests in flight and exited 0.
"""

import asyncio
import concurrent.futures
import logging
import os
import re
import shutil
import signal
import sys
import tempfile

import tornado.netutil

from token_exchange.web.app import make_app
from token_exchange.verification.hashpool import make_hash_executor
from token_exchange.cli.config import parse_config
from token_exchange.web.handlers.base import MAX_BODY_BYTES
from token_exchange.web.handlers.ready import store_probe
from token_exchange.web.connections import ServiceHTTPServer
from token_exchange.web.inflight import RequestsInFlight
from token_exchange.observability.logs import default_format, setup_logging
from token_exchange.signing.keyfile import KeyFileError, load_key_set
from token_exchange.store import StoreError, open_store
from token_exchange.signing.tokens import TokenIssuer
from token_exchange.verification.verifier import KeyVerifier

log = logging.getLogger("token_exchange")

PROG = "token-exchange"
# Store calls wait on the network or a file lock: many may be in flight.
STORE_THREADS = 16
# Configuration values under names like these never reach the log.
SECRET_NAME = re.compile(r"secret|password|token|credential|api_key", re.IGNORECASE)
# user:password@ in a URL-like value.
URL_PASSWORD = re.compile(r"(//[^/:@]*:)[^/@]*@")
REDACTED = "[redacted]"
# Environment variables that change where the store connects, logged with the flags.
STORE_ENVIRONMENT = ("DATASTORE_EMULATOR_HOST", "GOOGLE_APPLICATION_CREDENTIALS", "GOOGLE_CLOUD_PROJECT")
PR_SET_PDEATHSIG = 1
# Stop the service: forwarded by the supervisor to every worker.
STOP_SIGNALS = frozenset((signal.SIGTERM, signal.SIGINT))


def fail(message):
    """Stop start-up with one line naming the problem."""
    sys.stderr.write(f"{PROG}: error: {message}\n")
    sys.exit(1)


def effective_configuration(config, environ=None):
    """Flag values and store-related environment, secrets redacted: safe to log."""
    environ = os.environ if environ is None else environ
    settings = dict(vars(config))
    settings["log_format"] = settings.get("log_format") or "auto"
    settings.update({name: environ[name] for name in STORE_ENVIRONMENT if name in environ})
    return {name: redact(name, value) for name, value in settings.items()}


def redact(name, value):
    if SECRET_NAME.search(name):
        return REDACTED
    if isinstance(value, str):
        return URL_PASSWORD.sub(rf"\1{REDACTED}@", value)
    return value


def main(argv=None):
    # Until serving takes the signals over (serve(), or the supervisor forwarding them), a service
    # stopped while it starts has no request to finish: it exits 0, with no traceback.
    for signum in STOP_SIGNALS:
        signal.signal(signum, stop_before_serving)
    config = parse_config(argv)
    setup_logging(config.log_format or default_format())
    try:
        keys = load_key_set(config.private_key_path)
    except KeyFileError as e:
        fail(str(e))
    sockets = bind(config.port)
    if config.workers == 1:
        sys.exit(run_worker(config, keys, sockets, metrics_dir=None))
    log_start_up(config, keys)
    sys.exit(supervise(config, keys, sockets))


def log_start_up(config, keys):
    """The effective configuration, once every start-up check has passed (a failure is one line)."""
    settings = effective_configuration(config)
    log.info("configuration: %s", " ".join(f"{name}={value}" for name, value in settings.items()),
             extra={"json_fields": {"configuration": settings}})
    # The path is logged, never the key file's contents.
    log.info("signing with key kid=%s alg=%s from %s; JWKS publishes kids %s", keys.signing_key.kid,
             keys.signing_key.alg, config.private_key_path, ", ".join(keys.published_kids))


def bind(port):
    try:
        return tornado.netutil.bind_sockets(port)
    except OSError as e:
        fail(f"cannot listen on port {port}: {e.strerror}")


def run_worker(config, keys, sockets, metrics_dir):
    """Serve on the bound sockets until signalled; the exit status."""
    # Imported only now: with workers, prometheus_client must see PROMETHEUS_MULTIPROC_DIR.
    from token_exchange.observability import metrics as metrics_module

    try:
        store = open_store(config.store, project=config.project_id, integration_ns=config.client_integration_ns,
                           platform_ns=config.platform_ns, timeout_seconds=config.store_timeout)
    except StoreError as e:
        fail(str(e))
    if metrics_dir is None:
        metrics = metrics_module.ServiceMetrics(metrics_module.prometheus_client.REGISTRY)
        try:
            metrics_module.start_metrics_server(config.prometheusx_listen_address, metrics.registry)
        except OSError as e:
            store.close()
            fail(f"cannot serve metrics on {config.prometheusx_listen_address}: {e.strerror}")
        log_start_up(config, keys)
    else:
        metrics = metrics_module.ServiceMetrics(multiprocess=True)  # values go to the shared directory
    log.info("key store %s (project %s, integration namespace %s, platform namespace %s, timeout %g s)",
             config.store, config.project_id, config.client_integration_ns, config.platform_ns,
             config.store_timeout)
    try:
        asyncio.run(serve(config, keys, metrics.timed_store(store), metrics, sockets))
    finally:
        store.close()
    return 0


async def serve(config, keys, store, metrics, sockets):
    store_executor = concurrent.futures.ThreadPoolExecutor(STORE_THREADS, thread_name_prefix="store")
    hash_executor = make_hash_executor()
    verifier = KeyVerifier(store, store_executor, hash_executor, config.store_timeout,
                           key_cache_ttl=config.key_cache_ttl,
                           max_pending_verifications=config.max_pending_verifications,
                           events=metrics.verifier_events)
    in_flight = RequestsInFlight()
    app = make_app(verifier, TokenIssuer(keys.signing_key), keys.public_jwks,
                   readiness_probe=store_probe(store, store_executor, config.store_timeout),
                   metrics=metrics, in_flight=in_flight, access_log=config.access_log)
    server = ServiceHTTPServer(app, max_body_size=MAX_BODY_BYTES)
    server.add_sockets(sockets)
    log.info("listening on port %d (metrics on %s)", config.port, config.prometheusx_listen_address)

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    await stop.wait()
    log.info("shutting down: %d requests in flight, waiting up to %g s", in_flight.count, config.shutdown_grace)
    server.stop()  # no new connections
    # As Go's Shutdown: a request read from now on is answered with "Connection: close", so its client
    # sends no more on that connection; connections left idle are closed once the requests are done.
    server.conn_params.no_keep_alive = True
    if not await in_flight.wait_idle(config.shutdown_grace):
        log.warning("shutdown grace period over: dropping %d requests in flight", in_flight.count)
    await server.close_all_connections()
    for executor in (store_executor, hash_executor):
        executor.shutdown(wait=False, cancel_futures=True)


def supervise(config, keys, sockets):
    """Fork the workers on the bound sockets, serve their summed metrics, forward signals; the exit status."""
    metrics_dir = tempfile.mkdtemp(prefix="token-exchange-metrics-")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
    workers = set()
    stopping = []

    def forward(signum, frame):
        stopping.append(signum)
        for pid in workers:
            try:
                os.kill(pid, signum)
            except ProcessLookupError:  # reaped by os.wait(), not yet discarded
                pass

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    try:
        # Held back while forking: a signal then reaches every worker once all are forked, and no child
        # runs forward() (on its copy of the supervisor's state) before it has its own handlers.
        signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
        try:
            for _ in range(config.workers):
                pid = os.fork()
                if pid == 0:
                    status = 1
                    try:
                        status = worker_child(config, keys, sockets, metrics_dir)
                    finally:
                        os._exit(status)  # whatever happens, a worker never runs the supervisor's code
                workers.add(pid)
        finally:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)
        for sock in sockets:
            sock.close()  # the workers accept; the supervisor only waits
        from token_exchange.observability import metrics as metrics_module

        try:
            metrics_module.start_metrics_server(config.prometheusx_listen_address,
                                                metrics_module.exposition_registry(metrics_dir))
        except OSError as e:
            forward(signal.SIGTERM, None)
            wait_for_workers(workers, stopping, metrics_dir, metrics_module)
            fail(f"cannot serve metrics on {config.prometheusx_listen_address}: {e.strerror}")
        log.info("supervising %d workers: %s", len(workers), " ".join(map(str, sorted(workers))))
        return wait_for_workers(workers, stopping, metrics_dir, metrics_module)
    finally:
        shutil.rmtree(metrics_dir, ignore_errors=True)


def wait_for_workers(workers, stopping, metrics_dir, metrics_module):
    status = 0
    while workers:
        pid, wait_status = os.wait()  # signal handlers run in between; wait() resumes after them
        workers.discard(pid)
        metrics_module.mark_worker_dead(pid, metrics_dir)
        code = os.waitstatus_to_exitcode(wait_status)
        if code != 0 or not stopping:
            # A worker that dies on its own takes the service down: the
            # process manager (systemd, Cloud Run) restarts it whole.
            log.error("worker %d exited with status %d; stopping the others", pid, code)
            status = 1
            if not stopping:
                stopping.append(signal.SIGTERM)
                for other in workers:
                    os.kill(other, signal.SIGTERM)
    return status


def worker_child(config, keys, sockets, metrics_dir):
    """Body of a forked worker: its exit status."""
    try:
        # Until serve() takes the signals over, a worker stopped while starting
        # has no request to finish: it exits 0, as a stopped service should.
        signal.signal(signal.SIGTERM, stop_before_serving)
        signal.signal(signal.SIGINT, stop_before_serving)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)  # blocked by the supervisor while it forks
        die_with_parent()
        return run_worker(config, keys, sockets, metrics_dir)
    except SystemExit as e:
        return e.code if isinstance(e.code, int) else 1
    except BaseException:
        log.exception("worker failed")
        return 1
    finally:
        logging.shutdown()


def stop_before_serving(signum, frame):
    raise SystemExit(0)


def die_with_parent():
    """On Linux, have the kernel send SIGTERM when the supervisor dies, so no worker is orphaned."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):
        pass
