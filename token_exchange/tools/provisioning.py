"""Creating integrations, organisations and their API keys (used by the tools).

The plaintext key is returned once, to be shown to the operator; only its
hash reaches the store.
"""

from dataclasses import dataclass

from token_exchange.verification import apikey
from token_exchange.verification.secrethash import BCRYPT, DEFAULT_BCRYPT_COST, hash_secret


@dataclass(frozen=True)
class NewIntegrationKey:
    integration_id: str
    key_id: str
    api_key: str
    integration_created: bool

    def __repr__(self):
        return f"NewIntegrationKey(integration_id={self.integration_id!r}, key_id={self.key_id!r})"


@dataclass(frozen=True)
class NewAutojoinKey:
    org: str
    api_key: str
    org_created: bool

    def __repr__(self):
        return f"NewAutojoinKey(org={self.org!r})"


def create_integration_key(
    store,
    integration_id,
    key_id="",
    integration_description="",
    key_description="",
    tier=0,
    hash_scheme=BCRYPT,
    bcrypt_cost=DEFAULT_BCRYPT_COST,
):
    """Create the integration if needed and add one active key to it.

    Raises apikey.MalformedKey for ids the service could not parse back, and
    store.AlreadyExists when the key id is taken (never overwrites a key).
    """
    apikey.check_integration_id(integration_id)
    key_id = key_id or apikey.generate_key_id()
    apikey.check_key_id(key_id)  # before anything is written
    created = store.ensure_integration(integration_id, integration_description)
    return add_integration_key(
        store, integration_id, key_id, key_description, tier, hash_scheme, bcrypt_cost, integration_created=created
    )


def add_integration_key(
    store,
    integration_id,
    key_id="",
    key_description="",
    tier=0,
    hash_scheme=BCRYPT,
    bcrypt_cost=DEFAULT_BCRYPT_COST,
    integration_created=False,
):
    """Add one active key to an existing integration (store.NotFound when there is none)."""
    apikey.check_integration_id(integration_id)
    key_id = key_id or apikey.generate_key_id()
    apikey.check_key_id(key_id)
    secret = apikey.generate_secret()
    key_hash = hash_secret(secret.encode(), hash_scheme, bcrypt_cost)
    store.add_integration_key(integration_id, key_id, key_hash, key_description, tier)
    return NewIntegrationKey(
        integration_id, key_id, apikey.format_integration_key(integration_id, key_id, secret), integration_created
    )


def create_autojoin_key(store, org, email=""):
    """Create the organisation if needed and add a fresh autojoin key to it."""
    if not org:
        raise ValueError("organization name must not be empty")
    created = store.ensure_organization(org, email)
    key = apikey.generate_autojoin_key()
    store.add_autojoin_key(org, key)
    return NewAutojoinKey(org, key, created)
