"""The Datastore key store, through the real google-cloud-datastore client on gRPC.

The client talks to tests/datastore_server.py, or to the official emulator
when DATASTORE_EMULATOR_HOST is already set (then the fault-injection tests
are skipped). Entities are seeded exactly as the Go tools write them.
"""

import hashlib
import logging
import threading
import time

import grpc
import pytest
from google.cloud import datastore

from tests.consumer import verify_token
from tests.datastore_seed import (
    DEADLINE_SLACK,
    PROJECT,
    STORE_TIMEOUT,
    bcrypt_hash,
    seed_autojoin_key,
    seed_integration_key,
    unique,
)
from tests.datastore_server import DatastoreTestServer
from tests.httpclient import exchange, request
from token_exchange.store import StoreUnavailable, open_store
from token_exchange.verification.apikey import generate_autojoin_key

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
            ("key", value)
        ]
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
        assert f'[Organization "{org}", APIKey "[redacted]"]' in message, message
        assert autojoin_key not in message and new_key not in message, message


@pytest.mark.parametrize("method", ["Lookup", "RunQuery"])
def test_ready_fails_when_either_read_of_an_exchange_fails(ds_service, fault_server, method):
    service = ds_service(integration_ns=unique("ns-i"), platform_ns=unique("ns-p"))
    fault_server.clear_calls()
    assert request(service.base_url, "GET", "/ready").status == 200
    # The reads of the two exchanges: a get of an integration key, a keys-only query on an autojoin key's value,
    # each in its namespace.
    reads = {name: r for name, r in fault_server.requests}
    (key,) = reads["Lookup"].keys
    assert key.partition_id.namespace_id == service.key_store.integration_ns
    assert [element.kind for element in key.path] == ["IntegrationMeta", "IntegrationAPIKey"]
    query = reads["RunQuery"]
    assert query.partition_id.namespace_id == service.key_store.platform_ns
    assert [kind.name for kind in query.query.kind] == ["APIKey"]

    fault_server.fail_with(grpc.StatusCode.PERMISSION_DENIED, methods=[method])
    response = request(service.base_url, "GET", "/ready")
    assert (response.status, response.body) == (503, b"Key store unavailable, retry later\n")
    fault_server.heal()
    assert request(service.base_url, "GET", "/ready").status == 200


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
    waiting = [
        threading.Thread(
            target=lambda: results.append(exchange(service.base_url, "integration", integration_key).status)
        )
        for _ in range(4)
    ]
    lookups = fault_server.calls["Lookup"]
    for thread in waiting:
        thread.start()
    deadline = time.monotonic() + 30  # until the exchanges reach the hanging store
    while fault_server.calls["Lookup"] == lookups:
        assert time.monotonic() < deadline, "no exchange reached the store"
        time.sleep(0.01)
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
