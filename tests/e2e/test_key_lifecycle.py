"""The key-lifecycle tools end to end, as built zipapps, on a real SQLite file
and on the Datastore test server: what they list, what they write, and that a
revoked key is refused over HTTP by a running service while the others keep
working.

Revocation is polled for up to the bound the README states: the record cache
time (-key-cache-ttl; the built service runs with 0.2 s here rather than the
5 s default, so the tests need not sit through it) plus slack for a loaded
machine. The tests hold with or without a cache in front of the store.
"""

import datetime
import hashlib
import itertools
import json
import sqlite3
import time

import pytest
from google.cloud import datastore

from tests.consumer import verify_token
from tests.datastore_seed import INTEGRATION_NS, PLATFORM_NS, entity, seed_autojoin_key, seed_integration_key, unique
from tests.httpclient import exchange
from tests.support import TEST_BCRYPT_COST
from tests.zipapp_service import error_line, run_zipapp
from token_exchange.store.sqlite import SQLiteKeyStore
from token_exchange.verification.apikey import generate_autojoin_key

# The record cache time the built service runs with (-key-cache-ttl), and the README's bound on revocation:
# that time, plus slack for a loaded machine.
KEY_CACHE_TTL = 0.2
REVOCATION_BOUND_SECONDS = KEY_CACHE_TTL + 5


SECRET_FREE_FIELDS = {"key_id", "description", "tier", "status", "created_at", "hash_scheme"}


def wait_for_status(base_url, endpoint, api_key, status, bound=REVOCATION_BOUND_SECONDS):
    """Poll until the exchange answers this status; fail when it does not within the bound."""
    deadline = time.monotonic() + bound
    while True:
        response = exchange(base_url, endpoint, api_key)
        if response.status == status:
            return response
        assert time.monotonic() < deadline, f"still {response.status}, not {status}, after {bound} s"
        time.sleep(0.1)


def claims_of(base_url, endpoint, api_key):
    response = exchange(base_url, endpoint, api_key)
    assert response.status == 200, response.body
    return verify_token(base_url, response.json()["token"], endpoint)


def sha256_hex(text):
    return hashlib.sha256(text.encode()).hexdigest()


def keys_sharing_a_prefix(digits):
    """Two autojoin keys whose SHA-256 share their first hex digits (a birthday search: a few thousand tries)."""
    seen = {}
    for _ in itertools.count():
        key = generate_autojoin_key()
        prefix = sha256_hex(key)[:digits]
        if prefix in seen:
            return seen[prefix], key, prefix
        seen[prefix] = key


# SQLite.


def test_sqlite_integration_lifecycle_through_http(tools, sqlite_tools, zipapp_services, db_path):
    first = tools.create_integration(
        db_path, "acme", "-integration-description", "Acme Inc", "-key-description", "production"
    )
    added = sqlite_tools.ok(
        "integration-keys",
        "add",
        "-integration-id",
        "acme",
        "-key-tier",
        "2",
        "-key-description",
        "staging",
        "-hash",
        "sha256",
    )
    second_key = added.stdout.split("API Key:", 1)[1].split()[0]
    second_id = added.stdout.split("Key ID:", 1)[1].split()[0]
    service = zipapp_services.start("-key-cache-ttl", KEY_CACHE_TTL, store_path=db_path)
    assert claims_of(service.base_url, "integration", second_key)["tier"] == 2

    listing = sqlite_tools.integrations()
    assert list(listing) == ["acme"]
    assert listing["acme"]["description"] == "Acme Inc"
    keys = {k["key_id"]: k for k in listing["acme"]["keys"]}
    assert set(keys) == {first.key_id, second_id}
    for key in keys.values():
        assert set(key) == SECRET_FREE_FIELDS
        assert key["status"] == "active" and key["created_at"].startswith("20")
    assert (keys[first.key_id]["hash_scheme"], keys[first.key_id]["description"]) == ("bcrypt", "production")
    assert (keys[second_id]["hash_scheme"], keys[second_id]["tier"]) == ("sha256", 2)
    text = sqlite_tools.ok("integration-keys", "list").stdout
    assert first.key_id in text and "production" in text and "bcrypt" in text
    stored_hashes = [row[0] for row in sqlite3.connect(db_path).execute("SELECT key_hash FROM integration_keys")]
    for listed in (text, json.dumps(listing)):
        for secret in (first.secret, second_key.rsplit(".", 1)[1], *stored_hashes):
            assert secret not in listed

    revoked = sqlite_tools.ok("integration-keys", "revoke", "-integration-id", "acme", "-key-id", first.key_id)
    assert f"Revoked key {first.key_id} of integration acme" in revoked.stdout
    assert wait_for_status(service.base_url, "integration", first.api_key, 401).text == "Invalid API key\n"
    assert claims_of(service.base_url, "integration", second_key)["key_id"] == second_id
    statuses = {k["key_id"]: k["status"] for k in sqlite_tools.integrations()["acme"]["keys"]}
    assert statuses == {first.key_id: "revoked", second_id: "active"}

    sqlite_tools.ok("integration-keys", "activate", "-integration-id", "acme", "-key-id", first.key_id)
    wait_for_status(service.base_url, "integration", first.api_key, 200)

    changed = sqlite_tools.json(
        "integration-keys", "set-tier", "-integration-id", "acme", "-key-id", first.key_id, "-key-tier", "7"
    )
    assert changed == {"integration_id": "acme", "key_id": first.key_id, "tier": 7}
    deadline = time.monotonic() + REVOCATION_BOUND_SECONDS
    while claims_of(service.base_url, "integration", first.api_key)["tier"] != 7:
        assert time.monotonic() < deadline, "the new tier never reached the service"
        time.sleep(0.1)


def test_sqlite_autojoin_revocation_through_http(tools, sqlite_tools, zipapp_services, db_path):
    kept = tools.create_autojoin_key(db_path, "example-org", "-email", "ops@example.org")
    gone = tools.create_autojoin_key(db_path, "example-org")
    other = tools.create_autojoin_key(db_path, "other-org")
    service = zipapp_services.start("-key-cache-ttl", KEY_CACHE_TTL, store_path=db_path)
    claims_of(service.base_url, "autojoin", gone.api_key)

    orgs = sqlite_tools.organizations()
    assert list(orgs) == ["example-org", "other-org"]
    assert orgs["example-org"]["email"] == "ops@example.org"
    fingerprints = {k["fingerprint"] for k in orgs["example-org"]["keys"]}
    assert fingerprints == {sha256_hex(kept.api_key)[:12], sha256_hex(gone.api_key)[:12]}
    text = sqlite_tools.ok("autojoin-keys", "list").stdout
    assert sha256_hex(gone.api_key)[:12] in text
    for listed in (text, json.dumps(orgs)):
        for key in (kept, gone, other):
            assert key.api_key not in listed and sha256_hex(key.api_key) not in listed

    revoked = sqlite_tools.json("autojoin-keys", "revoke", "-fingerprint", sha256_hex(gone.api_key)[:12])
    assert revoked == {"organization": "example-org", "fingerprint": sha256_hex(gone.api_key)[:12], "revoked": True}
    wait_for_status(service.base_url, "autojoin", gone.api_key, 401)
    assert claims_of(service.base_url, "autojoin", kept.api_key)["org"] == "example-org"
    assert claims_of(service.base_url, "autojoin", other.api_key)["org"] == "other-org"
    assert [k["fingerprint"] for k in sqlite_tools.organizations("-org", "example-org")["example-org"]["keys"]] == [
        sha256_hex(kept.api_key)[:12]
    ]


def test_sqlite_ambiguous_fingerprint_is_refused(sqlite_tools, db_path):
    first, second, prefix = keys_sharing_a_prefix(6)
    store = SQLiteKeyStore(str(db_path))
    try:
        store.ensure_organization("example-org")
        store.add_autojoin_key("example-org", first)
        store.add_autojoin_key("example-org", second)
    finally:
        store.close()
    refused = sqlite_tools.run("autojoin-keys", "revoke", "-fingerprint", prefix)
    assert refused.returncode == 1
    assert "matches 2 autojoin keys" in error_line(refused, "autojoin-keys revoke")
    assert len(sqlite_tools.organizations()["example-org"]["keys"]) == 2
    # One more digit tells them apart (or more, should they share it too).
    digits = next(n for n in range(7, 65) if sha256_hex(first)[:n] != sha256_hex(second)[:n])
    sqlite_tools.ok("autojoin-keys", "revoke", "-fingerprint", sha256_hex(first)[:digits])
    assert [k["fingerprint"] for k in sqlite_tools.organizations()["example-org"]["keys"]] == [sha256_hex(second)[:12]]


@pytest.mark.parametrize(
    "tool, args, message",
    [
        ("integration-keys", ["add", "-integration-id", "nobody"], "integration 'nobody' does not exist"),
        (
            "integration-keys",
            ["revoke", "-integration-id", "acme", "-key-id", "ki_missing"],
            "no key 'ki_missing' in integration 'acme'",
        ),
        ("integration-keys", ["list", "-integration-id", "nobody"], "integration 'nobody' does not exist"),
        ("autojoin-keys", ["revoke", "-fingerprint", "abcdef12"], "no autojoin key has fingerprint abcdef12"),
        ("autojoin-keys", ["list", "-org", "nobody"], "organization 'nobody' does not exist"),
    ],
)
def test_refusals_are_one_line_and_change_nothing(tools, sqlite_tools, db_path, tool, args, message):
    tools.create_integration(db_path, "acme")
    before = sqlite_tools.integrations()
    command, *flags = args
    refused = sqlite_tools.run(tool, command, *flags)
    assert refused.returncode == 1
    assert message in error_line(refused, f"{tool} {command}")
    assert sqlite_tools.integrations() == before


@pytest.mark.parametrize(
    "tool, args, message",
    [
        ("integration-keys", [], "usage: integration-keys COMMAND"),
        ("integration-keys", ["rotate"], "unknown command 'rotate'"),
        ("integration-keys", ["revoke", "-integration-id", "acme"], "-key-id is required"),
        ("integration-keys", ["set-tier", "-integration-id", "acme", "-key-id", "ki_x"], "-key-tier is required"),
        (
            "integration-keys",
            ["set-tier", "-integration-id", "a", "-key-id", "ki_x", "-key-tier", "-1"],
            "invalid tier",
        ),
        ("integration-keys", ["add", "-integration-id", "a", "-key-tier", str(2**63)], "invalid tier"),
        ("autojoin-keys", ["revoke"], "-fingerprint is required"),
        ("autojoin-keys", ["revoke", "-fingerprint", "abc"], "invalid fingerprint"),
        ("autojoin-keys", ["revoke", "-fingerprint", "xyzxyzxyz"], "invalid fingerprint"),
    ],
)
def test_bad_usage_exits_2(built_zipapps, zipapp_home, db_path, tool, args, message):
    store = ["-store", f"sqlite:{db_path}"] if args else []
    completed = run_zipapp(built_zipapps[tool], [*args, *store], zipapp_home)
    assert completed.returncode == 2
    assert message in completed.stderr
    assert "Traceback" not in completed.stderr


# Datastore: entities as the Go tools wrote them, changed in place.


def test_datastore_integration_lifecycle_through_http(client, datastore_tools, ds_service):
    integration_id = unique("acme")
    revoked_key, revoked_id = seed_integration_key(client, integration_id, tier=1)
    kept_key, kept_id = seed_integration_key(client, integration_id, tier=2)
    service = ds_service()
    claims_of(service.base_url, "integration", revoked_key)

    listing = datastore_tools.integrations()[integration_id]
    assert listing["description"] == "Acme speed test"
    assert listing["created_at"] == "2025-11-17T17:24:00+00:00"
    keys = {k["key_id"]: k for k in listing["keys"]}
    assert keys[revoked_id] == {
        "key_id": revoked_id,
        "description": "production",
        "tier": 1,
        "status": "active",
        "created_at": "2025-11-17T17:24:00+00:00",
        "hash_scheme": "sha256",
    }
    assert revoked_key.rsplit(".", 1)[1] not in json.dumps(listing)

    path = ("IntegrationMeta", integration_id, "IntegrationAPIKey", revoked_id)
    before = dict(entity(client, *path, namespace=INTEGRATION_NS))
    datastore_tools.ok("integration-keys", "revoke", "-integration-id", integration_id, "-key-id", revoked_id)
    after = dict(entity(client, *path, namespace=INTEGRATION_NS))
    assert after == {**before, "status": "revoked"}  # every other property as the Go tool wrote it
    wait_for_status(service.base_url, "integration", revoked_key, 401)
    assert claims_of(service.base_url, "integration", kept_key)["key_id"] == kept_id

    datastore_tools.ok("integration-keys", "activate", "-integration-id", integration_id, "-key-id", revoked_id)
    datastore_tools.ok(
        "integration-keys", "set-tier", "-integration-id", integration_id, "-key-id", revoked_id, "-key-tier", "4"
    )
    assert dict(entity(client, *path, namespace=INTEGRATION_NS)) == {**before, "tier": 4}
    wait_for_status(service.base_url, "integration", revoked_key, 200)

    added = datastore_tools.json(
        "integration-keys", "add", "-integration-id", integration_id, "-bcrypt-cost", str(TEST_BCRYPT_COST)
    )
    assert claims_of(service.base_url, "integration", added["api_key"])["key_id"] == added["key_id"]
    stored = entity(
        client, "IntegrationMeta", integration_id, "IntegrationAPIKey", added["key_id"], namespace=INTEGRATION_NS
    )
    assert set(stored) == {"key_hash", "created_at", "description", "status", "tier"}


def test_datastore_autojoin_revocation_through_http(client, datastore_tools, ds_service):
    org = unique("example-org")
    gone, kept = seed_autojoin_key(client, org), seed_autojoin_key(client, org)
    service = ds_service()
    claims_of(service.base_url, "autojoin", gone)

    listed = datastore_tools.organizations("-org", org)[org]
    assert listed["email"] == "ops@example.org"
    assert {k["fingerprint"] for k in listed["keys"]} == {sha256_hex(gone)[:12], sha256_hex(kept)[:12]}
    assert gone not in json.dumps(listed) and kept not in json.dumps(listed)

    datastore_tools.ok("autojoin-keys", "revoke", "-fingerprint", sha256_hex(gone)[:12], "-org", org)
    assert entity(client, "Organization", org, "APIKey", gone, namespace=PLATFORM_NS) is None
    assert entity(client, "Organization", org, namespace=PLATFORM_NS) is not None
    wait_for_status(service.base_url, "autojoin", gone, 401)
    assert claims_of(service.base_url, "autojoin", kept)["org"] == org


def test_datastore_ambiguous_fingerprint_is_refused(client, datastore_tools):
    org = unique("example-org")
    first, second, prefix = keys_sharing_a_prefix(6)
    seed_autojoin_key(client, org)
    for value in (first, second):
        key = datastore.Entity(client.key("Organization", org, "APIKey", value, namespace=PLATFORM_NS))
        key.update({"created_at": datetime.datetime.now(datetime.timezone.utc), "key": value})
        client.put(key)
    refused = datastore_tools.run("autojoin-keys", "revoke", "-fingerprint", prefix, "-org", org)
    assert refused.returncode == 1
    assert "matches 2 autojoin keys" in error_line(refused, "autojoin-keys revoke")
    for value in (first, second):
        assert entity(client, "Organization", org, "APIKey", value, namespace=PLATFORM_NS) is not None
