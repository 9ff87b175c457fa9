"""Datastore entities exactly as the Go tools write them, and the names the tests share.

For tests on tests/datastore_server.py (or an external emulator named by
DATASTORE_EMULATOR_HOST); its fixtures (target, client, ds_service, ...) are
in tests/e2e/conftest.py.
"""

import datetime
import hashlib
import uuid

from google.cloud import datastore

from tests.support import TEST_BCRYPT_COST
from token_exchange.verification.apikey import format_integration_key, generate_autojoin_key, generate_secret
from token_exchange.verification.secrethash import hash_secret

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


def unique(prefix):
    # Unique per test, so an external emulator's leftovers never matter.
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def seed_integration_key(client, integration_id, *, key_hash=None, status="active", tier=0, namespace=INTEGRATION_NS):
    """Entities as the Go create-integration writes them; returns the API key."""
    key_id = "ki_" + uuid.uuid4().hex[:16]
    secret = generate_secret()
    meta = datastore.Entity(client.key("IntegrationMeta", integration_id, namespace=namespace))
    meta.update({"created_at": CREATED, "description": "Acme speed test"})
    api_key = datastore.Entity(
        client.key("IntegrationMeta", integration_id, "IntegrationAPIKey", key_id, namespace=namespace)
    )
    api_key.update(
        {
            "key_hash": key_hash(secret) if key_hash else hashlib.sha256(secret.encode()).hexdigest(),
            "created_at": CREATED,
            "description": "production",
            "status": status,
            "tier": tier,
        }
    )
    client.put_multi([meta, api_key])
    return format_integration_key(integration_id, key_id, secret), key_id


def seed_autojoin_key(client, org, namespace=PLATFORM_NS):
    """Entities as the Go DatastoreOrgManager (and autojoin's admin tool) write them."""
    value = generate_autojoin_key()
    organization = datastore.Entity(client.key("Organization", org, namespace=namespace))
    organization.update({"name": org, "email": "ops@example.org", "created_at": CREATED, "probability_multiplier": 1.0})
    key = datastore.Entity(client.key("Organization", org, "APIKey", value, namespace=namespace))
    key.update({"created_at": CREATED, "key": value})
    client.put_multi([organization, key])
    return value


def bcrypt_hash(secret):
    return hash_secret(secret.encode(), "bcrypt", TEST_BCRYPT_COST)


def entity(client, *path, namespace):
    return client.get(client.key(*path, namespace=namespace))
