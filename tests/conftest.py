"""Fixtures of every tier: real signing keys, a real SQLite file, the real app on a real socket.

Tests live in three directories, one per tier, and each test is marked with its tier here:
  unit/  a module's logic in process, no sockets           (pytest -m unit)
  http/  the real Tornado app in process over real sockets  (pytest -m http)
  e2e/   built zipapps, subprocesses, the Datastore test server (pytest -m e2e; fixtures in e2e/conftest.py)
"""

import asyncio
import concurrent.futures
import json
import pathlib
import threading

import pytest
import tornado.testing

from tests.support import ALGS, TEST_BCRYPT_COST
from token_exchange.observability.metrics import ServiceMetrics
from token_exchange.signing.keyfile import KeySet, generate_private_jwk, load_key_set
from token_exchange.signing.tokens import TokenIssuer
from token_exchange.store.sqlite import SQLiteKeyStore
from token_exchange.tools.provisioning import create_autojoin_key, create_integration_key
from token_exchange.verification.verifier import KeyVerifier
from token_exchange.web.app import make_app
from token_exchange.web.body import MAX_BODY_BYTES
from token_exchange.web.connections import ServiceHTTPServer
from token_exchange.web.inflight import RequestsInFlight
from token_exchange.web.signingkeys import SigningKeys

TIERS = ("unit", "http", "e2e")
TESTS_DIR = pathlib.Path(__file__).resolve().parent


@pytest.hookimpl(tryfirst=True)  # before -m selects by marker
def pytest_collection_modifyitems(config, items):
    """Mark each test with the tier of the directory it lives in; a test outside the tiers is an error."""
    for item in items:
        tier = pathlib.Path(item.path).resolve().relative_to(TESTS_DIR).parts[0]
        if tier not in TIERS:
            raise pytest.UsageError(f"{item.nodeid}: tests live in tests/unit, tests/http or tests/e2e")
        item.add_marker(tier)


@pytest.fixture(scope="session")
def private_jwks():
    """One generated private JWK (dict) per algorithm, shared by the session."""
    return {alg: generate_private_jwk(alg) for alg in ALGS}


@pytest.fixture
def key_file(tmp_path, private_jwks):
    """Write the private JWK of an algorithm to a file; return its path."""

    def write(alg="RS256"):
        path = tmp_path / f"jwk-priv-{alg}.json"
        path.write_text(json.dumps(private_jwks[alg]))
        return path

    return write


@pytest.fixture
def db_path(tmp_path):
    return tmp_path / "keys.db"


@pytest.fixture
def store(db_path):
    store = SQLiteKeyStore(str(db_path))
    yield store
    store.close()


@pytest.fixture
def integration_key(store):
    """Create an integration key in the store; return its NewIntegrationKey."""

    def create(integration_id="acme", tier=0, **kwargs):
        kwargs.setdefault("bcrypt_cost", TEST_BCRYPT_COST)
        return create_integration_key(store, integration_id, tier=tier, **kwargs)

    return create


@pytest.fixture
def autojoin_key(store):
    def create(org="example-org", email=""):
        return create_autojoin_key(store, org, email)

    return create


class RunningService:
    """The real application on a real socket, its loop in a background thread."""

    def __init__(
        self,
        signing_key,
        store_path,
        issuer_factory=TokenIssuer,
        store_timeout=3.0,
        store=None,
        key_cache_ttl=0,
        verifier_options=None,
        public_jwks=None,
        access_log="all",
        server_options=None,
        trusted_proxies=0,
        **store_options,
    ):
        """verifier_options go to KeyVerifier (verify, events, clock, ...); server_options to ServiceHTTPServer;
        trusted_proxies to make_app.

        key_cache_ttl is 0 unless given, so tests see each store change at once; access_log is
        "all" unless given, so tests see the line of every request.
        """
        self.signing_key = signing_key
        self.metrics = ServiceMetrics()  # a registry of its own
        self.in_flight = RequestsInFlight()
        self.key_store = store or SQLiteKeyStore(str(store_path), **store_options)
        self.store = self.metrics.timed_store(self.key_store)
        self.executor = concurrent.futures.ThreadPoolExecutor(max_workers=4)
        verifier_options = {
            "key_cache_ttl": key_cache_ttl,
            "events": self.metrics.verifier_events,
            **(verifier_options or {}),
        }
        self.verifier = KeyVerifier(self.store, self.executor, self.executor, store_timeout, **verifier_options)
        self.signing_keys = SigningKeys(KeySet(signing_key, public_jwks or [signing_key.public_jwk]), issuer_factory)
        self.app = make_app(
            self.verifier,
            self.signing_keys,
            in_flight=self.in_flight,
            metrics=self.metrics,
            access_log=access_log,
            trusted_proxies=trusted_proxies,
        )
        sock, self.port = tornado.testing.bind_unused_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self._sock = sock
        self._server_options = server_options or {}
        self._started = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        self._started.wait(10)

    def _run(self):
        self.loop = asyncio.new_event_loop()
        asyncio.set_event_loop(self.loop)
        self.server = ServiceHTTPServer(
            self.app, in_flight=self.in_flight, max_body_size=MAX_BODY_BYTES, **self._server_options
        )
        self.server.add_sockets([self._sock])
        self.loop.call_soon(self._started.set)
        self.loop.run_forever()
        self.loop.run_until_complete(self.server.close_all_connections())
        self.loop.close()

    def settle(self):
        """Wait until the loop has run past every answered request: its access line and metrics follow the answer."""
        done = threading.Event()
        self.loop.call_soon_threadsafe(done.set)
        assert done.wait(10)

    def stop(self):
        self.loop.call_soon_threadsafe(self.server.stop)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
        self.executor.shutdown(wait=True)
        self.store.close()


@pytest.fixture
def start_service(tmp_path, key_file, db_path):
    """Start the service in-process: start_service(alg="RS256", **options), or with the key file
    (one JWK or a JWK Set) at key_path."""
    services = []

    def start(alg="RS256", store_path=None, key_path=None, **options):
        keys = load_key_set(str(key_path or key_file(alg)))
        service = RunningService(keys.signing_key, store_path or db_path, public_jwks=keys.public_jwks, **options)
        services.append(service)
        return service

    yield start
    for service in services:
        service.stop()


@pytest.fixture
def service(start_service):
    return start_service()
