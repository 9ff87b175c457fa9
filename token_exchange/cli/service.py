"""Start-up: configuration, signing key, key store, then serve until signalled.

One process by default (Cloud Run gives an instance one CPU); with
-workers N, cli.workers forks N processes that share the port. SIGTERM and
SIGINT stop the service; SIGHUP re-reads the signing key file.
"""

import asyncio
import concurrent.futures
import logging
import os
import re
import resource
import signal
import sys

import tornado.netutil

from token_exchange.cli.config import parse_config
from token_exchange.observability.logs import default_format, setup_logging
from token_exchange.signing.keyfile import KeyFileError, consumer_warning, load_key_set
from token_exchange.store import StoreError, is_datastore, open_store
from token_exchange.verification.hashpool import make_hash_executor
from token_exchange.verification.verifier import KeyVerifier
from token_exchange.web.accepting import open_file_limit
from token_exchange.web.app import make_app
from token_exchange.web.body import MAX_BODY_BYTES
from token_exchange.web.connections import ServiceHTTPServer
from token_exchange.web.inflight import RequestsInFlight
from token_exchange.web.signingkeys import SigningKeys

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
# Stop the service: forwarded by the supervisor to every worker.
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)
# Re-read the signing key file: forwarded by the supervisor to every worker, which reads it itself.
RELOAD_SIGNAL = signal.SIGHUP
# Held back from start-up until serving takes them.
HELD_SIGNALS = (*STOP_SIGNALS, RELOAD_SIGNAL)
# After the signal, idle kept-alive connections are closed once no request has come for this long: a
# client busy with us sends its next request within it and gets its answer with "Connection: close".
SHUTDOWN_LINGER_SECONDS = 1.0


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
    # A stop signal is held back until serving can take it (serve(), or the supervisor forwarding it):
    # a service stopped while it starts then stops at once, with nothing in flight, status 0 and no
    # traceback. (Raised from a handler instead, SystemExit may land where Python only prints it.)
    # SIGHUP too, whose default action would end the service: a reload asked for while it starts is
    # done once it serves.
    signal.pthread_sigmask(signal.SIG_BLOCK, HELD_SIGNALS)
    config = parse_config(argv)
    setup_logging(config.log_format or default_format())
    raise_open_file_limit()
    try:
        keys = load_key_set(config.private_key_path)
    except KeyFileError as e:
        fail(str(e))
    sockets = bind(config.port)
    if config.workers == 1:
        sys.exit(run(config, keys, sockets))
    from token_exchange.cli.workers import supervise  # only with workers

    log_start_up(config, keys)
    sys.exit(supervise(config, keys, sockets))


def raise_open_file_limit():
    """The soft limit on open files up to the hard limit, as Go's runtime does at start: every
    connection holds a descriptor, and kept-alive ones stay open."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        except (ValueError, OSError):
            pass  # an unlimited hard limit beyond what the kernel allows: the soft one stays


def log_start_up(config, keys):
    """The effective configuration, once every start-up check has passed (a failure is one line)."""
    settings = effective_configuration(config)
    log.info(
        "configuration: %s",
        " ".join(f"{name}={value}" for name, value in settings.items()),
        extra={"json_fields": {"configuration": settings}},
    )
    log.info("%s", key_set_summary(keys, config.private_key_path))
    log.info("open-file limit %s: at most that many connections and files at once", open_file_limit())
    warn_of_consumers(keys)


def key_set_summary(keys, path):
    """Which kid signs and which the JWKS publishes. The path is logged, never the key file's contents."""
    signing = keys.signing_key
    kids = ", ".join(keys.published_kids)
    return f"signing with key kid={signing.kid} alg={signing.alg} from {path}; JWKS publishes kids {kids}"


def warn_of_consumers(keys):
    warning = consumer_warning(keys.signing_key.alg)
    if warning:
        log.warning("signing key kid=%s: %s", keys.signing_key.kid, warning)


def bind(port):
    try:
        return tornado.netutil.bind_sockets(port)
    except OSError as e:
        fail(f"cannot listen on port {port}: {e.strerror}")


def run(config, keys, sockets, metrics_dir=None):
    """Serve on the bound sockets until signalled; the exit status.

    metrics_dir: None for a single process, which serves its own metrics; a worker's metrics go to
    this directory (PROMETHEUS_MULTIPROC_DIR), which its supervisor serves.
    """
    # Imported only now: with workers, prometheus_client must see PROMETHEUS_MULTIPROC_DIR.
    from token_exchange.observability import metrics as metrics_module

    try:
        store = open_store(
            config.store,
            project=config.project_id,
            integration_ns=config.client_integration_ns,
            platform_ns=config.platform_ns,
            timeout_seconds=config.store_timeout,
        )
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
        metrics = metrics_module.ServiceMetrics()  # values go to the shared directory
    if is_datastore(config.store):
        log.info(
            "key store datastore (project %s, integration namespace %s, platform namespace %s, timeout %g s)",
            config.project_id,
            config.client_integration_ns,
            config.platform_ns,
            config.store_timeout,
        )
    else:
        log.info("key store %s (timeout %g s)", config.store, config.store_timeout)
    try:
        asyncio.run(serve(config, keys, metrics.timed_store(store), metrics, sockets))
    finally:
        store.close()
    log.info("stopped")
    return 0


def requests(count):
    return f"{count} request" if count == 1 else f"{count} requests"


async def serve(config, keys, store, metrics, sockets):
    store_executor = concurrent.futures.ThreadPoolExecutor(STORE_THREADS, thread_name_prefix="store")
    hash_executor = make_hash_executor()
    verifier = KeyVerifier(
        store,
        store_executor,
        hash_executor,
        config.store_timeout,
        key_cache_ttl=config.key_cache_ttl,
        max_pending_verifications=config.max_pending_verifications,
        events=metrics.verifier_events,
    )
    in_flight = RequestsInFlight()
    signing_keys = SigningKeys(keys)
    app = make_app(
        verifier,
        signing_keys,
        in_flight=in_flight,
        metrics=metrics,
        access_log=config.access_log,
        trusted_proxies=config.trusted_proxies,
    )
    server = ServiceHTTPServer(
        app, in_flight=in_flight, accept_events=metrics.accept_events, max_body_size=MAX_BODY_BYTES
    )
    server.add_sockets(sockets)
    log.info("listening on port %d (metrics on %s)", config.port, config.prometheusx_listen_address)

    stop = asyncio.Event()
    reload_asked = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in STOP_SIGNALS:
        loop.add_signal_handler(signum, stop.set)
    loop.add_signal_handler(RELOAD_SIGNAL, reload_asked.set)
    reloading = asyncio.create_task(reload_when_asked(config.private_key_path, signing_keys, reload_asked))
    signal.pthread_sigmask(signal.SIG_UNBLOCK, HELD_SIGNALS)  # held back since main(); some may be pending
    await stop.wait()
    # A reload is of no use now, and once the loop has closed SIGHUP's default action would end the process:
    # ignored from here on, in every thread (a signal mask would hold for this thread only).
    loop.remove_signal_handler(RELOAD_SIGNAL)
    signal.signal(RELOAD_SIGNAL, signal.SIG_IGN)
    reloading.cancel()
    log.info("shutting down: %s in flight, waiting up to %g s", requests(in_flight.count), config.shutdown_grace)
    server.stop()  # no new connections
    # As Go's Shutdown: a request read from now on is answered with "Connection: close", so its client
    # sends no more on that connection; connections left idle are closed once the requests are done
    # and a linger has passed with no new one.
    server.stop_keep_alive()
    if not await in_flight.wait_quiet(SHUTDOWN_LINGER_SECONDS, config.shutdown_grace):
        log.warning("shutdown grace period over: dropping %s in flight", requests(in_flight.count))
    server.close_idle_connections()  # at once: none can read another request meanwhile
    await server.close_all_connections()  # the rest, whose requests outlasted the grace period
    for executor in (store_executor, hash_executor):
        executor.shutdown(wait=False, cancel_futures=True)
    # What is left (the store closing, threads ending) takes no signal: a second stop signal would otherwise
    # end the process by its default action (status 143) or a KeyboardInterrupt once the loop has closed.
    for signum in STOP_SIGNALS:
        loop.remove_signal_handler(signum)
        signal.signal(signum, signal.SIG_IGN)


async def reload_when_asked(path, signing_keys, asked):
    """Re-read the signing key file each time asked is set (SIGHUP), one reload at a time: a signal that
    comes during a reload asks for one more, so the file's latest contents are always read."""
    while True:
        await asked.wait()
        asked.clear()
        try:
            await reload_signing_keys(path, signing_keys)
        except Exception:  # a bug, not a bad file (that is a KeyFileError): later reloads must still work
            log.exception("reloading the signing key file failed; the keys in use stay")


async def reload_signing_keys(path, signing_keys):
    """Sign with and publish the keys of the file at path from now on; when it cannot be used, keep the
    keys in use and log one line saying why, as start-up would."""
    try:
        # In a thread: loading checks every RSA private key in OpenSSL, with the GIL held, about 30 ms at
        # 2048 bits and 250 ms at 4096, and a 1 MiB file holds hundreds of keys. The event loop then
        # waits at most for one key's check, not for the whole file.
        keys = await asyncio.to_thread(load_key_set, path)
    except KeyFileError as e:
        kept = key_set_summary(signing_keys.current.key_set, path)
        log.error("signing key file not reloaded: %s; still %s", e, kept)
        return
    in_use = signing_keys.replace(keys).key_set
    log.info("signing key file reloaded: %s", key_set_summary(keys, path))
    warn_of_consumers(keys)
    # Consumers cache the JWKS (an hour) and tokens live up to an hour: the runbook's waits (docs/keys.md,
    # "Rotating the signing key") keep every token verifiable. Say when a reload skipped one.
    if keys.signing_key.kid not in in_use.published_kids:
        log.warning(
            "kid=%s signs from now on but was not published before this reload: consumers that cached the "
            "JWKS in the last hour refuse its tokens until they fetch it again; publish a key an hour "
            "before it signs",
            keys.signing_key.kid,
        )
    if in_use.signing_key.kid not in keys.published_kids:
        log.warning(
            "kid=%s signed until this reload and is no longer published: its tokens still valid no longer "
            "verify; keep a key published 2 hours after it stops signing",
            in_use.signing_key.kid,
        )
