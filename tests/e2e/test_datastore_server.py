"""The Datastore test server, driven only through the real google-cloud-datastore client."""

import datetime
import threading
import time

import grpc
import pytest
from google.api_core import exceptions as gexc
from google.api_core.retry import Retry
from google.auth.credentials import AnonymousCredentials
from google.cloud import datastore
from google.cloud.datastore.query import PropertyFilter

from tests.datastore_server import DatastoreTestServer

PROJECT = "test-project"
INTEGRATION_NS = "client-integration"
PLATFORM_NS = "platform-credentials"
NO_RETRY = Retry(predicate=lambda exc: False)  # retry=None would mean "default retry"
T0 = datetime.datetime(2024, 5, 6, 7, 8, 9, 123456, tzinfo=datetime.timezone.utc)


@pytest.fixture(scope="module")
def server():
    srv = DatastoreTestServer(project=PROJECT)
    srv.start()
    yield srv
    srv.stop()


@pytest.fixture
def ds_server(server):
    server.reset()
    yield server
    server.reset()


@pytest.fixture
def make_client(ds_server, monkeypatch):
    # The client reads DATASTORE_EMULATOR_HOST in __init__, so set it first.
    monkeypatch.setenv("DATASTORE_EMULATOR_HOST", ds_server.address)

    def make(namespace=None):
        return datastore.Client(project=PROJECT, namespace=namespace)

    return make


@pytest.fixture
def client(make_client):
    return make_client()


def put_org_with_keys(client, org, *key_values):
    org_key = client.key("Organization", org, namespace=PLATFORM_NS)
    org_entity = datastore.Entity(org_key)
    org_entity.update({"name": org, "email": f"{org}@example.org", "created_at": T0, "probability_multiplier": 1.0})
    keys = []
    for value in key_values:
        entity = datastore.Entity(client.key("APIKey", value, parent=org_key))
        entity.update({"created_at": T0, "key": value})
        keys.append(entity)
    client.put_multi([org_entity, *keys])
    return org_key


def test_address_and_client_requirements(ds_server, monkeypatch):
    host, port = ds_server.address.split(":")
    assert host == "127.0.0.1" and int(port) > 0
    monkeypatch.setenv("DATASTORE_EMULATOR_HOST", ds_server.address)
    # Surprising but true: explicit credentials are refused with the emulator.
    with pytest.raises(ValueError, match="incompatible with the emulator"):
        datastore.Client(project=PROJECT, credentials=AnonymousCredentials())


def test_put_get_every_schema_type(make_client, ds_server):
    client = make_client(INTEGRATION_NS)
    meta = datastore.Entity(client.key("IntegrationMeta", "int-1"))
    meta.update({"created_at": T0, "description": "an integration"})
    api_key = datastore.Entity(client.key("IntegrationAPIKey", "ki_abc", parent=meta.key))
    api_key.update(
        {
            "key_hash": "ab" * 32,
            "created_at": T0,
            "description": "d",
            "status": "active",
            "tier": 2,
            "weight": 1.5,
            "revoked_at": None,
        }
    )
    client.put_multi([meta, api_key])

    got = client.get(client.key("IntegrationMeta", "int-1", "IntegrationAPIKey", "ki_abc"))
    assert dict(got) == dict(api_key)
    assert got.key.parent.name == "int-1" and got.key.namespace == INTEGRATION_NS
    assert got["created_at"] == T0 and got["created_at"].tzinfo is not None

    stored = ds_server.get_properties(
        ("IntegrationMeta", "int-1", "IntegrationAPIKey", "ki_abc"), namespace=INTEGRATION_NS
    )
    assert stored == {
        "key_hash": ("string_value", "ab" * 32),
        "created_at": ("timestamp_value", T0),
        "description": ("string_value", "d"),
        "status": ("string_value", "active"),
        "tier": ("integer_value", 2),
        "weight": ("double_value", 1.5),
        "revoked_at": ("null_value", None),
    }
    assert ds_server.get_properties(("IntegrationMeta", "int-1")) is None  # default ns


def test_seeded_entities_are_read_with_their_types(make_client, ds_server):
    ds_server.seed(
        ("IntegrationMeta", "int-1", "IntegrationAPIKey", "ki_x"),
        {"tier": 3, "ratio": 2.0, "created_at": T0, "status": "active", "gone": None, "flag": True},
        namespace=INTEGRATION_NS,
    )
    client = make_client(INTEGRATION_NS)
    got = client.get(client.key("IntegrationMeta", "int-1", "IntegrationAPIKey", "ki_x"))
    assert got == {"tier": 3, "ratio": 2.0, "created_at": T0, "status": "active", "gone": None, "flag": True}
    assert type(got["tier"]) is int and type(got["ratio"]) is float
    assert type(got["flag"]) is bool


def test_namespaces_are_separate(make_client, ds_server):
    a, b = make_client("ns-a"), make_client("ns-b")
    entity = datastore.Entity(a.key("Organization", "acme"))
    entity["name"] = "in a"
    a.put(entity)
    assert a.get(a.key("Organization", "acme"))["name"] == "in a"
    assert b.get(b.key("Organization", "acme")) is None
    assert list(b.query(kind="Organization").fetch()) == []
    stored = ds_server.entities(kind="Organization")
    assert [e.key.partition_id.namespace_id for e in stored] == ["ns-a"]


def test_missing_and_found_in_one_lookup(client):
    client.put(datastore.Entity(client.key("K", 1)))
    missing = []
    found = client.get_multi([client.key("K", 1), client.key("K", 2)], missing=missing)
    assert [e.key.id for e in found] == [1]
    assert [e.key.id for e in missing] == [2]


def test_autojoin_style_query_by_key_value(make_client, ds_server):
    client = make_client(PLATFORM_NS)
    put_org_with_keys(client, "acme", "key-a1", "key-a2")
    put_org_with_keys(client, "globex", "key-g1")
    ds_server.clear_calls()

    query = client.query(kind="APIKey")
    query.add_filter(filter=PropertyFilter("key", "=", "key-g1"))
    results = list(query.fetch(limit=1))

    assert len(results) == 1
    assert results[0].key.name == "key-g1" and results[0]["key"] == "key-g1"
    assert results[0].key.parent.kind == "Organization"
    assert results[0].key.parent.name == "globex"
    assert ds_server.calls == {"RunQuery": 1}
    name, request = ds_server.requests[-1]
    assert name == "RunQuery" and request.query.limit == 1
    assert request.partition_id.namespace_id == PLATFORM_NS


def test_filters_on_typed_values_and_and(client):
    for i, (tier, active) in enumerate([(1, True), (2, True), (2, False)], start=1):
        entity = datastore.Entity(client.key("IntegrationAPIKey", f"ki_{i}"))
        entity.update(
            {"tier": tier, "active": active, "tier_str": str(tier), "owner": client.key("IntegrationMeta", "m")}
        )
        client.put(entity)

    def names(*filters):
        query = client.query(kind="IntegrationAPIKey")
        for f in filters:
            query.add_filter(filter=f)
        return [e.key.name for e in query.fetch()]

    assert names(PropertyFilter("tier", "=", 2)) == ["ki_2", "ki_3"]
    assert names(PropertyFilter("tier", "=", 2), PropertyFilter("active", "=", True)) == ["ki_2"]
    assert names(PropertyFilter("tier", "=", "2")) == []  # types must match exactly
    assert names(PropertyFilter("tier_str", "=", "1")) == ["ki_1"]
    assert names(PropertyFilter("owner", "=", client.key("IntegrationMeta", "m"))) == ["ki_1", "ki_2", "ki_3"]
    assert names(PropertyFilter("tier", ">", 1)) == ["ki_2", "ki_3"]
    assert names(PropertyFilter("tier", "IN", [1, 3])) == ["ki_1"]
    assert names(PropertyFilter("tier", "!=", 1)) == ["ki_2", "ki_3"]


def test_limit_cursor_and_key_order(client):
    for ident in [3, "b", 1, "a", 2]:
        client.put(datastore.Entity(client.key("K", ident)))
    iterator = client.query(kind="K").fetch(limit=2)
    first = [e.key.id_or_name for e in iterator]
    assert first == [1, 2]  # ids sort before names
    assert iterator.next_page_token is not None  # MORE_RESULTS_AFTER_LIMIT
    rest = client.query(kind="K").fetch(start_cursor=iterator.next_page_token)
    assert [e.key.id_or_name for e in rest] == [3, "a", "b"]

    everything = client.query(kind="K").fetch()
    assert len(list(everything)) == 5 and everything.next_page_token is None


def test_ancestor_query_keys_only(make_client):
    client = make_client(PLATFORM_NS)
    acme = put_org_with_keys(client, "acme", "k1", "k2")
    put_org_with_keys(client, "globex", "k3")
    query = client.query(kind="APIKey", ancestor=acme)
    query.keys_only()
    results = list(query.fetch())
    assert [e.key.name for e in results] == ["k1", "k2"]
    assert all(dict(e) == {} and e.key.parent == acme for e in results)
    # Kindless ancestor query includes the ancestor itself.
    assert [e.key.flat_path for e in client.query(ancestor=acme).fetch()] == [
        ("Organization", "acme"),
        ("Organization", "acme", "APIKey", "k1"),
        ("Organization", "acme", "APIKey", "k2"),
    ]


def test_transaction_put_and_get(client, ds_server):
    key = client.key("Organization", "acme")
    with client.transaction():
        assert client.get(key) is None
        entity = datastore.Entity(key)
        entity["name"] = "acme"
        client.put(entity)
    assert client.get(key)["name"] == "acme"
    assert ds_server.calls["BeginTransaction"] == 1 and ds_server.calls["Commit"] == 1
    assert ds_server.requests[1][0] == "Lookup" and ds_server.requests[1][1].read_options.transaction

    with pytest.raises(RuntimeError), client.transaction():
        client.put(datastore.Entity(client.key("Organization", "never")))
        raise RuntimeError("boom")
    assert ds_server.calls["Rollback"] == 1
    assert client.get(client.key("Organization", "never")) is None


def test_lazy_transaction_begins_on_first_read(client, ds_server):
    key = client.key("K", "lazy")
    with client.transaction(begin_later=True):
        assert client.get(key) is None  # carries read_options.new_transaction
        client.put(datastore.Entity(key))
    assert client.get(key) is not None
    assert ds_server.calls["BeginTransaction"] == 0 and ds_server.calls["Commit"] == 1


def test_conflicting_transaction_aborts(make_client):
    one, two = make_client(), make_client()
    key = one.key("K", "contended")
    one.put(datastore.Entity(key))
    txn = one.transaction()
    txn.begin()
    one.get(key, transaction=txn)
    two.put(datastore.Entity(key))  # changes what txn read
    txn.put(datastore.Entity(key))
    with pytest.raises(gexc.Aborted):
        txn.commit()


def test_allocate_ids_and_incomplete_put(client, ds_server):
    keys = client.allocate_ids(client.key("Organization", "acme", "APIKey"), 3)
    assert len({k.id for k in keys}) == 3
    assert all(k.parent == client.key("Organization", "acme") and k.id for k in keys)
    entity = datastore.Entity(client.key("K"))
    client.put(entity)
    assert entity.key.id and client.get(entity.key) is not None
    assert ds_server.get_entity(("K", entity.key.id)) is not None


def test_delete(client, ds_server):
    key = client.key("K", "gone")
    client.put(datastore.Entity(key))
    client.delete(key)
    assert client.get(key) is None and ds_server.entities() == []


def test_insert_update_errors_and_atomicity(client, ds_server):
    # The high-level client only upserts; the GAPIC layer it wraps can insert/update.
    api = client._datastore_api
    existing = datastore.Entity(client.key("K", "there"))
    client.put(existing)
    pb = datastore.helpers.entity_to_protobuf

    def commit(*mutations):
        api.commit(request={"project_id": PROJECT, "mode": "NON_TRANSACTIONAL", "mutations": list(mutations)})

    new = datastore.Entity(client.key("K", "new"))
    with pytest.raises(gexc.AlreadyExists):
        commit({"upsert": pb(new)}, {"insert": pb(existing)})
    assert client.get(new.key) is None  # the upsert before the failure did not land
    with pytest.raises(gexc.NotFound):
        commit({"update": pb(new)})
    commit({"insert": pb(new)})
    assert client.get(new.key) is not None


def test_fail_with_unavailable(client, ds_server):
    key = client.key("K", 1)
    ds_server.fail_with(grpc.StatusCode.UNAVAILABLE)
    with pytest.raises(gexc.ServiceUnavailable):
        client.get(key, retry=NO_RETRY, timeout=1)
    # A retry with a deadline gives up with RetryError wrapping the last error.
    with pytest.raises(gexc.RetryError) as info:
        client.get(key, retry=Retry(deadline=1), timeout=1)
    assert isinstance(info.value.cause, gexc.ServiceUnavailable)
    ds_server.fail_with(grpc.StatusCode.INTERNAL)
    with pytest.raises(gexc.InternalServerError):
        client.put(datastore.Entity(key))
    ds_server.heal()
    client.put(datastore.Entity(key))
    assert client.get(key) is not None


def test_fail_a_few_times_then_default_retry_succeeds(client, ds_server):
    client.put(datastore.Entity(client.key("K", 1)))
    ds_server.clear_calls()
    ds_server.fail_with(grpc.StatusCode.UNAVAILABLE, methods={"Lookup"}, times=2)
    assert client.get(client.key("K", 1)) is not None
    assert ds_server.calls == {"Lookup": 3}


def test_hang_times_out(client, ds_server):
    key = client.key("K", "slow")
    ds_server.hang()  # until healed
    started = time.monotonic()
    with pytest.raises(gexc.DeadlineExceeded):
        client.get(key, retry=NO_RETRY, timeout=0.5)
    with pytest.raises(gexc.DeadlineExceeded):
        client.put(datastore.Entity(key), timeout=0.5)  # Commit has no default retry
    assert time.monotonic() - started < 3
    ds_server.heal()
    time.sleep(0.1)
    assert client.get(key) is None  # the abandoned write never landed


def test_hang_for_seconds_then_answers(client, ds_server):
    ds_server.hang(0.3)
    started = time.monotonic()
    assert client.get(client.key("K", 1), timeout=5) is None
    assert time.monotonic() - started >= 0.3


def test_call_counting(make_client, ds_server):
    client = make_client(INTEGRATION_NS)
    client.get(client.key("IntegrationMeta", "m", "IntegrationAPIKey", "ki_1"))
    assert ds_server.calls == {"Lookup": 1}
    assert ds_server.calls["RunQuery"] == 0
    list(client.query(kind="IntegrationAPIKey").fetch())
    assert ds_server.calls == {"Lookup": 1, "RunQuery": 1}


def test_unsupported_features_fail_loudly(client):
    aggregation = client.aggregation_query(client.query(kind="K")).count()
    with pytest.raises(gexc.MethodNotImplemented):
        list(aggregation.fetch(retry=NO_RETRY))
    with pytest.raises(gexc.MethodNotImplemented):
        list(client.query(kind="K", order=["-tier"]).fetch())


def test_offset(client):
    client.put_multi([datastore.Entity(client.key("K", i)) for i in (1, 2, 3)])
    assert [e.key.id for e in client.query(kind="K").fetch(offset=1)] == [2, 3]


def test_hang_with_times_then_heal_releases(client, ds_server):
    ds_server.hang(30, methods={"Lookup"}, times=1)
    threading.Timer(0.3, ds_server.heal).start()
    started = time.monotonic()
    assert client.get(client.key("K", 1), timeout=5) is None
    assert time.monotonic() - started < 5
    assert client.get(client.key("K", 2), timeout=5) is None  # times=1 used up


def test_concurrent_clients(make_client, ds_server):
    def work(n):
        client = make_client()
        for i in range(20):
            client.put(datastore.Entity(client.key("K", n * 100 + i + 1)))

    threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(ds_server.entities(kind="K")) == 160
