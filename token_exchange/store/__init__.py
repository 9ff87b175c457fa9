"""Key stores: the interface and the choice between them (-store)."""

from token_exchange.store.base import (
    ACTIVE,
    DEFAULT_INTEGRATION_NS,
    DEFAULT_PLATFORM_NS,
    FINGERPRINT_HEX_DIGITS,
    MIN_FINGERPRINT_PREFIX,
    AlreadyExists,
    Ambiguous,
    AutojoinKeyInfo,
    IntegrationInfo,
    IntegrationKeyInfo,
    IntegrationKeyRecord,
    KeyReader,
    KeyStore,
    NotFound,
    OrganizationInfo,
    StoreError,
    StoreUnavailable,
)

DATASTORE = "datastore"
SQLITE_PREFIX = "sqlite:"
# Bounds each store call, retries included; past it the service answers 503.
DEFAULT_STORE_TIMEOUT_SECONDS = 3.0
STORE_HELP = "key store: 'datastore' (Google Cloud Datastore) or 'sqlite:PATH' (embedded file)"

__all__ = [
    "ACTIVE",
    "DEFAULT_INTEGRATION_NS",
    "DEFAULT_STORE_TIMEOUT_SECONDS",
    "DEFAULT_PLATFORM_NS",
    "AlreadyExists",
    "Ambiguous",
    "AutojoinKeyInfo",
    "FINGERPRINT_HEX_DIGITS",
    "IntegrationInfo",
    "IntegrationKeyInfo",
    "IntegrationKeyRecord",
    "KeyReader",
    "MIN_FINGERPRINT_PREFIX",
    "OrganizationInfo",
    "KeyStore",
    "NotFound",
    "StoreError",
    "StoreUnavailable",
    "DATASTORE",
    "STORE_HELP",
    "check_store_spec",
    "open_store",
]


def check_store_spec(spec):
    """Validate a -store value; return it, or raise ValueError (for argparse)."""
    if spec == DATASTORE:
        return spec
    if spec.startswith(SQLITE_PREFIX) and len(spec) > len(SQLITE_PREFIX):
        return spec
    raise ValueError(f"invalid store {spec!r}: use 'datastore' or 'sqlite:PATH'")


def is_datastore(spec):
    return spec == DATASTORE


def open_store(
    spec,
    project=None,
    integration_ns=DEFAULT_INTEGRATION_NS,
    platform_ns=DEFAULT_PLATFORM_NS,
    timeout_seconds=DEFAULT_STORE_TIMEOUT_SECONDS,
):
    """Open the store a -store value names; StoreError with a clear message on failure."""
    check_store_spec(spec)
    # Each store is imported only when chosen: the Datastore client is slow to import.
    if spec == DATASTORE:
        from token_exchange.store.datastore import DatastoreKeyStore

        return DatastoreKeyStore.connect(project, integration_ns, platform_ns, timeout_seconds)
    from token_exchange.store.sqlite import SQLiteKeyStore

    return SQLiteKeyStore(spec[len(SQLITE_PREFIX) :], integration_ns=integration_ns, platform_ns=platform_ns)
