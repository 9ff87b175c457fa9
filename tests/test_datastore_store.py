"""The Datastore key store, through the real google-cloud-datastore client on gRPC.

The client talks to tests/datastore_server.py, or to the official emulator
when DATASTORE_EMULATOR_HOST is already set (then the fault-injection tests
are skipped). Entities are seeded exactly as the Go tools write them.
"""

import datetime
import hashlib
import logging
import os
import threading
import time
import uuid

import grpc
import pytest
from google.cloud import datastore

from tests.conftest import TEST_BCRYPT_COST
from tests.consumer import verify_token
from tests.datastore_server import DatastoreTestServer
from tests.httpclient import exchange, request
from tests.zipapp_service import free_port, run_zipapp, zipapp_home, zipapp_services  # noqa: F401 (fixtures)
from token_exchange.verification.apikey import format_integration_key, generate_autojoin_key, generate_secret
from token_exchange.verification.secrethash import hash_secret
from token_exchange.store import StoreUnavailable, open_store

PROJECT = "test-project"
INTEGRATION_NS = "client-integration"
PLATFORM_NS = "platform-credentials"
CREATED = datetime.datetime(2025, 11, 17, 17, 24, 0, tzinfo=datetime.timezone.utc)
STORE_TIMEOUT = 1.0
# A refused call answers within the store timeout plus scheduling slack.
DEADLINE_SLACK = 1.5


class Target:
    def __init__(self, address, server):
        self.address = address
        self.server = server  # None against an external emulator


@pytest.fixture(scope="module")
def datastore_target():
    external = os.environ.get("DATASTORE_EMULATOR_HOST")
    if external:
        yield Target(external, None)
        return
    server = DatastoreTestServer(project=PROJECT)
    server.start()
    yield Target(server.address, server)
    server.stop()


@pytest.fixture
def target(datastore_target, monkeypatch):
    monkeypatch.setenv("DATASTORE_EMULATOR_HOST", datastore_target.address)
    if datastore_target.server:
        datastore_target.server.reset()
    return datastore_target


@pytest.fixture
def fault_server(target):
    if target.server is None:
        pytest.skip("fault injection needs the test server, not an external emulator")
    yield target.server
    target.server.heal()


@pytest.fixture
def client(target):
    client = datastore.Client(project=PROJECT)
    yield client
    client.close()


@pytest.fixture
def ds_service(start_service, target):
    """The real app on a real socket, on the Datastore store."""
    def start(**namespaces):
        store = open_store("datastore", project=PROJECT, timeout_seconds=STORE_TIMEOUT, **namespaces)
        return start_service(store=store, store_timeout=STORE_TIMEOUT)
    return start


def unique(prefix):
    # Unique per test, so an external emulator's leftovers never matter.
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def seed_integration_key(client, integration_id, *, key_hash=None, status="active", tier=0,
                         namespace=INTEGRATION_NS):
    """Entities as the Go create-integration writes them; returns the API key."""
    key_id = "ki_" + uuid.uuid4().hex[:16]
    secret = generate_secret()
    meta = datastore.Entity(client.key("IntegrationMeta", integration_id, namespace=namespace))
    meta.update({"created_at": CREATED, "description": "Acme speed test"})
    api_key = datastore.Entity(client.key("IntegrationMeta", integration_id, "IntegrationAPIKey", key_id,
                                          namespace=namespace))
    api_key.update({"key_hash": key_hash(secret) if key_hash else hashlib.sha256(secret.encode()).hexdigest(),
                    "created_at": CREATED, "description": "production", "status": status, "tier": tier})
    client.put_multi([meta, api_key])
    return format_integration_key(integration_id, key_id, secret), key_id


def seed_autojoin_key(client, org, namespace=PLATFORM_NS):
    """Entities as the Go DatastoreOrgManager (and autojoin's admin tool) write them."""
    value = generate_autojoin_key()
    organization = datastore.Entity(client.key("Organization", org, namespace=namespace))
    organization.update({"name": org, "email": "ops@example.org", "created_at": CREATED,
                         "probability_multiplier": 1.0})
    key = datastore.Entity(client.key("Organization", org, "APIKey", value, namespace=namespace))
    key.update({"created_at": CREATED, "key": value})
    client.put_multi([organization, key])
    return value


def bcrypt_hash(secret):
    return hash_secret(secret.encode(), "bcrypt", TEST_BCRYPT_COST)


# Reading what the Go tools wrote, through the HTTP API.

@pytest.mark.parametrize("key_hash", [None, bcrypt_hash], ids=["go-sha256", "bcrypt"])
def test_go_written_integration_key_exchanges(client, ds_service, target, key_hash):
    integration_id = unique("acme")
    api_key, key_id = seed_integration_key(client, integration_id, key_hash=key_hash, tier=2)
    service = ds_service()
    if target.server:
        target.server.clear_calls()

    response = exchange(service.base_url, "integration", api_key)

    assert response.status == 200, response.body
    claims = verify_token(service.base_url, response.json()["token"], "integration")
    assert (claims["int_id"], claims["key_id"], claims["tier"]) == (integration_id, key_id, 2)
    if target.server:
        # One direct get of the two-level key, never a query.
        assert target.server.calls["Lookup"] == 1
        assert target.server.calls["RunQuery"] == 0


def test_go_written_autojoin_key_exchanges(client, ds_service, target):
    org = unique("example-org")
    value = seed_autojoin_key(client, org)
    seed_autojoin_key(client, unique("another-org"))
    service = ds_service()
    if target.server:
        target.server.clear_calls()

    response = exchange(service.base_url, "autojoin", value)

    assert response.status == 200, response.body
    assert verify_token(service.base_url, response.json()["token"], "autojoin")["org"] == org
    if target.server:
        assert target.server.calls["RunQuery"] == 1
        assert target.server.calls["Lookup"] == 0
        (query,) = [r.query for method, r in target.server.requests if method == "RunQuery"]
        assert query.kind[0].name == "APIKey"
        assert query.limit == 1
        filters = query.filter.composite_filter.filters or [query.filter]  # the client wraps it in an AND
        assert [(f.property_filter.property.name, f.property_filter.value.string_value) for f in filters] == [
            ("key", value)]
        assert [p.property.name for p in query.projection] == ["__key__"]  # keys only


def test_refusals_stay_401(client, ds_service):
    integration_id = unique("acme")
    inactive, _ = seed_integration_key(client, integration_id, status="revoked")
    active, _ = seed_integration_key(client, integration_id)
    prefix, secret = active.rsplit(".", 1)
    service = ds_service()
    refused = [
        ("integration", inactive),
        ("integration", f"{prefix}.{secret[:-1]}x"),
        ("integration", f"mlabk.cii_{integration_id}.ki_0000000000000000.{secret}"),
        ("integration", f"mlabk.cii_nobody.{prefix.rsplit('.', 1)[1]}.{secret}"),
        ("integration", f"mlabk.cii___reserved__.ki_1.{secret}"),  # a name Datastore would refuse
        ("autojoin", "no-such-key"),
        ("autojoin", "k" * 1500),
    ]
    for endpoint, api_key in refused:
        response = exchange(service.base_url, endpoint, api_key)
        assert (response.status, response.body) == (401, b"Invalid API key\n"), api_key
    assert exchange(service.base_url, "integration", active).status == 200


def test_namespaces_are_honoured(client, ds_service):
    other_ns = unique("other")
    integration_key, _ = seed_integration_key(client, unique("acme"), namespace=other_ns)
    autojoin_key = seed_autojoin_key(client, unique("org"), namespace=other_ns)

    default = ds_service()
    assert exchange(default.base_url, "integration", integration_key).status == 401
    assert exchange(default.base_url, "autojoin", autojoin_key).status == 401

    matching = ds_service(integration_ns=other_ns, platform_ns=other_ns)
    assert exchange(matching.base_url, "integration", integration_key).status == 200
    assert exchange(matching.base_url, "autojoin", autojoin_key).status == 200


# An unavailable, failing or hanging store is a 503 within the deadline, and the service recovers.

def assert_503_within_deadline(service, endpoint, api_key):
    started = time.monotonic()
    response = exchange(service.base_url, endpoint, api_key)
    elapsed = time.monotonic() - started
    assert response.status == 503, response.body
    assert response.headers["Retry-After"] == "1"
    assert response.body == b"Key store unavailable, retry later\n"
    assert elapsed < STORE_TIMEOUT + DEADLINE_SLACK


@pytest.mark.parametrize("fault", ["unavailable", "internal", "hang"])
def test_store_fault_is_503_and_service_recovers(client, ds_service, fault_server, caplog, fault):
    integration_key, _ = seed_integration_key(client, unique("acme"))
    autojoin_key = seed_autojoin_key(client, unique("org"))
    service = ds_service()
    if fault == "hang":
        fault_server.hang()  # until healed
    else:
        fault_server.fail_with(grpc.StatusCode.UNAVAILABLE if fault == "unavailable" else grpc.StatusCode.INTERNAL)

    with caplog.at_level(logging.INFO):
        assert_503_within_deadline(service, "integration", integration_key)
        assert_503_within_deadline(service, "autojoin", autojoin_key)
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 2, [r.getMessage() for r in errors]
    assert all("key store unavailable" in r.getMessage() for r in errors)
    assert all(integration_key.rsplit(".", 1)[1] not in r.getMessage() for r in caplog.records)
    assert all(autojoin_key not in r.getMessage() for r in caplog.records)

    fault_server.heal()
    assert exchange(service.base_url, "integration", integration_key).status == 200
    assert exchange(service.base_url, "autojoin", autojoin_key).status == 200


def test_a_datastore_error_quoting_an_autojoin_key_never_shows_it(client, ds_service, fault_server, caplog):
    # Datastore's error texts may name the entities they concern, and an autojoin key names its entity:
    # each failure below quotes the key of the operation that fails.
    def quoting(key):
        return f'too much contention on these datastore entities: [Organization "{org}", APIKey "{key}"]'

    org = unique("org")
    autojoin_key = seed_autojoin_key(client, org)
    new_key = generate_autojoin_key()
    service = ds_service()
    fault_server.fail_with(grpc.StatusCode.INTERNAL, details=quoting(autojoin_key))
    with caplog.at_level(logging.INFO):
        assert_503_within_deadline(service, "autojoin", autojoin_key)
    store = open_store("datastore", project=PROJECT, timeout_seconds=STORE_TIMEOUT)
    try:
        fault_server.fail_with(grpc.StatusCode.INTERNAL, details=quoting(new_key))
        with pytest.raises(StoreUnavailable) as adding:
            store.add_autojoin_key(org, new_key)
        fault_server.fail_with(grpc.StatusCode.INTERNAL, details=quoting(autojoin_key), methods=["Commit"])
        with pytest.raises(StoreUnavailable) as deleting:
            store.delete_autojoin_key(hashlib.sha256(autojoin_key.encode()).hexdigest()[:12])
    finally:
        fault_server.heal()
        store.close()
    logged = [r.getMessage() for r in caplog.records if "datastore" in r.getMessage()]
    assert len(logged) == 1
    for message in (*logged, str(adding.value), str(deleting.value)):
        assert '[Organization "%s", APIKey "[redacted]"]' % org in message, message
        assert autojoin_key not in message and new_key not in message, message


def test_store_down_is_503_and_service_reconnects_when_it_returns(ds_service, fault_server, monkeypatch):
    # A store of its own, so this test can stop it and bring it back on the same address.
    own = DatastoreTestServer(project=PROJECT)
    own.start()
    monkeypatch.setenv("DATASTORE_EMULATOR_HOST", own.address)
    own_client = datastore.Client(project=PROJECT)
    try:
        integration_key, _ = seed_integration_key(own_client, unique("acme"))
        autojoin_key = seed_autojoin_key(own_client, unique("org"))
        service = ds_service()
        assert exchange(service.base_url, "integration", integration_key).status == 200
        port = own.address.rsplit(":", 1)[1]
        own.stop()
        # Down for several deadlines: gRPC's reconnect back-off grows meanwhile.
        down_until = time.monotonic() + 4 * STORE_TIMEOUT
        while time.monotonic() < down_until:
            assert_503_within_deadline(service, "integration", integration_key)
            assert_503_within_deadline(service, "autojoin", autojoin_key)
        own.start(port=int(port))
        assert exchange(service.base_url, "integration", integration_key).status == 200
        assert exchange(service.base_url, "autojoin", autojoin_key).status == 200
    finally:
        own_client.close()
        own.stop()


def test_health_and_jwks_answer_while_the_store_hangs(client, ds_service, fault_server):
    integration_key, _ = seed_integration_key(client, unique("acme"))
    service = ds_service()
    fault_server.hang()
    results = []
    waiting = [threading.Thread(target=lambda: results.append(
        exchange(service.base_url, "integration", integration_key).status)) for _ in range(4)]
    for thread in waiting:
        thread.start()
    time.sleep(0.2)  # let the exchanges reach the hanging store
    assert request(service.base_url, "GET", "/health", timeout=STORE_TIMEOUT / 2).body == b"ok"
    assert request(service.base_url, "GET", "/.well-known/jwks.json", timeout=STORE_TIMEOUT / 2).status == 200
    for thread in waiting:
        thread.join()
    assert results == [503] * 4
    fault_server.heal()
    assert exchange(service.base_url, "integration", integration_key).status == 200


def test_flapping_store_is_retried_within_the_deadline(client, ds_service, fault_server):
    integration_key, _ = seed_integration_key(client, unique("acme"))
    service = ds_service()
    fault_server.fail_with(grpc.StatusCode.UNAVAILABLE, times=2)
    assert exchange(service.base_url, "integration", integration_key).status == 200
    assert fault_server.calls["Lookup"] == 3


# The tools write what the Go service reads.

def entity(client, *path, namespace):
    return client.get(client.key(*path, namespace=namespace))


def test_create_integration_writes_go_entities(client, built_zipapps, zipapp_home, target, ds_service):
    integration_id = unique("acme")
    completed = run_zipapp(built_zipapps["create-integration"], [
        "-project", PROJECT, "-integration-id", integration_id, "-integration-description", "Acme Inc",
        "-key-description", "production", "-key-tier", "3", "-bcrypt-cost", str(TEST_BCRYPT_COST),
    ], zipapp_home, env={"DATASTORE_EMULATOR_HOST": target.address})
    assert completed.returncode == 0, completed.stderr
    api_key = completed.stdout.split("API Key:", 1)[1].split()[0]
    key_id = completed.stdout.split("Key ID:", 1)[1].split()[0]

    meta = entity(client, "IntegrationMeta", integration_id, namespace=INTEGRATION_NS)
    assert dict(meta) == {"created_at": meta["created_at"], "description": "Acme Inc"}
    assert isinstance(meta["created_at"], datetime.datetime)
    stored = entity(client, "IntegrationMeta", integration_id, "IntegrationAPIKey", key_id,
                    namespace=INTEGRATION_NS)
    assert stored.key.parent == meta.key
    assert set(stored) == {"key_hash", "created_at", "description", "status", "tier"}
    assert stored["status"] == "active" and stored["description"] == "production"
    assert type(stored["tier"]) is int and stored["tier"] == 3
    assert isinstance(stored["created_at"], datetime.datetime)
    assert stored["key_hash"].startswith(f"$2b$0{TEST_BCRYPT_COST}$")
    assert api_key.rsplit(".", 1)[1] not in str(dict(stored))
    if target.server:
        kinds = {(prop, kind) for prop, (kind, _) in target.server.get_properties(
            ("IntegrationMeta", integration_id, "IntegrationAPIKey", key_id), namespace=INTEGRATION_NS).items()}
        assert kinds == {("key_hash", "string_value"), ("created_at", "timestamp_value"),
                         ("description", "string_value"), ("status", "string_value"), ("tier", "integer_value")}

    service = ds_service()
    claims = verify_token(service.base_url, exchange(service.base_url, "integration", api_key).json()["token"],
                          "integration")
    assert (claims["int_id"], claims["key_id"], claims["tier"]) == (integration_id, key_id, 3)


def test_create_integration_sha256_is_what_the_go_service_reads(client, built_zipapps, zipapp_home, target):
    integration_id = unique("acme")
    completed = run_zipapp(built_zipapps["create-integration"], [
        "-project", PROJECT, "-integration-id", integration_id, "-hash", "sha256", "-key-id", "ki_fixed",
    ], zipapp_home, env={"DATASTORE_EMULATOR_HOST": target.address})
    assert completed.returncode == 0, completed.stderr
    secret = completed.stdout.split("API Key:", 1)[1].split()[0].rsplit(".", 1)[1]
    stored = entity(client, "IntegrationMeta", integration_id, "IntegrationAPIKey", "ki_fixed",
                    namespace=INTEGRATION_NS)
    # Exactly the Go service's check: lowercase hex SHA-256 of the secret.
    assert stored["key_hash"] == hashlib.sha256(secret.encode()).hexdigest()

    again = run_zipapp(built_zipapps["create-integration"], [
        "-project", PROJECT, "-integration-id", integration_id, "-key-id", "ki_fixed",
    ], zipapp_home, env={"DATASTORE_EMULATOR_HOST": target.address})
    assert again.returncode != 0 and "already exists" in again.stderr
    assert entity(client, "IntegrationMeta", integration_id, "IntegrationAPIKey", "ki_fixed",
                  namespace=INTEGRATION_NS)["key_hash"] == stored["key_hash"]


def test_create_autojoin_key_writes_go_entities(client, built_zipapps, zipapp_home, target, ds_service):
    org = unique("example-org")
    completed = run_zipapp(built_zipapps["create-autojoin-key"], [
        "-project", PROJECT, "-org", org, "-email", "ops@example.org",
    ], zipapp_home, env={"DATASTORE_EMULATOR_HOST": target.address})
    assert completed.returncode == 0, completed.stderr
    value = completed.stdout.split("API Key:", 1)[1].split()[0]

    organization = entity(client, "Organization", org, namespace=PLATFORM_NS)
    assert set(organization) == {"name", "email", "created_at", "probability_multiplier"}
    assert (organization["name"], organization["email"]) == (org, "ops@example.org")
    assert type(organization["probability_multiplier"]) is float
    stored = entity(client, "Organization", org, "APIKey", value, namespace=PLATFORM_NS)
    assert stored.key.parent == organization.key
    assert dict(stored) == {"created_at": stored["created_at"], "key": value}
    assert isinstance(stored["created_at"], datetime.datetime)

    service = ds_service()
    response = exchange(service.base_url, "autojoin", value)
    assert verify_token(service.base_url, response.json()["token"], "autojoin")["org"] == org


def test_tools_need_a_project_with_datastore(built_zipapps, zipapp_home, target):
    for tool, args in (("create-integration", ["-integration-id", "x"]), ("create-autojoin-key", ["-org", "x"])):
        completed = run_zipapp(built_zipapps[tool], args, zipapp_home,
                               env={"DATASTORE_EMULATOR_HOST": target.address})
        assert completed.returncode == 2
        assert "-project is required" in completed.stderr


def test_built_service_serves_from_datastore(client, zipapp_services, key_file, target):
    """The zipapp bundles the Datastore client and reads through it."""
    api_key, _ = seed_integration_key(client, unique("acme"))
    port = free_port()
    service = zipapp_services.launch(
        ["-project-id", PROJECT, "-private-key-path", key_file("EdDSA"), "-port", port],
        port, env={"DATASTORE_EMULATOR_HOST": target.address}).wait_healthy()
    response = exchange(service.base_url, "integration", api_key)
    assert response.status == 200, service.output()
    verify_token(service.base_url, response.json()["token"], "integration")
