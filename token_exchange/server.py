"""Start-up: configuration, signing key, key store, then serve until signalled."""

import asyncio
import concurrent.futures
import logging
import os
import signal
import sys

import tornado.httpserver

from token_exchange.app import make_app
from token_exchange.handlers.base import MAX_BODY_BYTES
from token_exchange.config import parse_config
from token_exchange.signingkey import KeyFileError, load_key_set
from token_exchange.store import StoreError, open_store
from token_exchange.tokens import TokenIssuer
from token_exchange.verifier import KeyVerifier

log = logging.getLogger("token_exchange")

PROG = "token-exchange"
# Store calls wait on the network or a file lock: many may be in flight.
STORE_THREADS = 16


def fail(message):
    """Stop start-up with one line naming the problem."""
    sys.stderr.write(f"{PROG}: error: {message}\n")
    sys.exit(1)


def main(argv=None):
    config = parse_config(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        key_set = load_key_set(config.private_key_path)
    except KeyFileError as e:
        fail(str(e))
    try:
        store = open_store(config.store, project=config.project_id, integration_ns=config.client_integration_ns,
                           platform_ns=config.platform_ns, timeout_seconds=config.store_timeout)
    except StoreError as e:
        fail(str(e))
    log.info("signing with key kid=%s alg=%s from %s; JWKS publishes kids %s", key_set.signing_key.kid,
             key_set.signing_key.alg, config.private_key_path, ", ".join(key_set.kids))
    log.info("key store %s (project %s, integration namespace %s, platform namespace %s, timeout %g s)",
             config.store, config.project_id, config.client_integration_ns, config.platform_ns,
             config.store_timeout)
    try:
        asyncio.run(serve(config, key_set, store))
    finally:
        store.close()


async def serve(config, key_set, store):
    store_executor = concurrent.futures.ThreadPoolExecutor(STORE_THREADS, thread_name_prefix="store")
    # bcrypt releases the GIL: one thread per core uses them all, more would only queue.
    hash_executor = concurrent.futures.ThreadPoolExecutor(os.cpu_count() or 1, thread_name_prefix="hash")
    verifier = KeyVerifier(store, store_executor, hash_executor, config.store_timeout)
    app = make_app(verifier, TokenIssuer(key_set.signing_key), key_set.public_jwks)
    server = tornado.httpserver.HTTPServer(app, max_body_size=MAX_BODY_BYTES)
    try:
        server.listen(config.port)
    except OSError as e:
        fail(f"cannot listen on port {config.port}: {e.strerror}")
    log.info("listening on port %d", config.port)

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    await stop.wait()
    log.info("shutting down")
    server.stop()
    await server.close_all_connections()
    for executor in (store_executor, hash_executor):
        executor.shutdown(wait=False, cancel_futures=True)
