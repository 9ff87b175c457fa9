"""Key store on Google Cloud Datastore, reading exactly what the Go tools write.

Integration keys (namespace -client-integration-ns):
    IntegrationMeta/<integration id>                   created_at, description
    IntegrationMeta/<id>/IntegrationAPIKey/<ki_...>    key_hash, created_at, description, status, tier
found by one direct get of the two-level key, never a query.

Autojoin keys (namespace -platform-ns):
    Organization/<name>                                name, email, created_at, probability_multiplier
    Organization/<name>/APIKey/<key value>             created_at, key
found by a keys-only query on the `key` property with limit 1; the parent's
name is the organisation. The Go service and m-lab/autojoin's admin tool
keep the key value itself in Datastore, so this store must too.

The client library blocks, so calls run on worker threads. Each call gets an
explicit, bounded Retry: with only a timeout, the library's default retry
would keep retrying an unavailable service for about a minute. Every
failure to get an answer becomes StoreUnavailable (503), never "no key".

The gRPC channel's reconnect back-off is capped well under the deadline:
with gRPC's default (growing to two minutes) the service would keep
answering 503 long after the store came back.
"""

import contextlib
import datetime
import re
import urllib.parse

import grpc
from google.api_core import exceptions as api_exceptions
from google.api_core import retry as api_retry
from google.auth import exceptions as auth_exceptions
from google.cloud import _helpers as cloud_helpers
from google.cloud import datastore
from google.cloud._http import DEFAULT_USER_AGENT
from google.cloud.datastore.query import PropertyFilter
from google.cloud.datastore_v1.services.datastore import client as gapic_client
from google.cloud.datastore_v1.services.datastore.transports import grpc as gapic_grpc

from token_exchange.store.base import (
    ACTIVE,
    AlreadyExists,
    AutojoinKeyInfo,
    IntegrationInfo,
    IntegrationKeyInfo,
    IntegrationKeyRecord,
    KeyStore,
    NotFound,
    OrganizationInfo,
    StoreError,
    StoreUnavailable,
    fingerprint_of,
    pick_by_fingerprint,
)
from token_exchange.verification.secrethash import hash_scheme, sha256_hex

INTEGRATION_META_KIND = "IntegrationMeta"
INTEGRATION_KEY_KIND = "IntegrationAPIKey"
ORGANIZATION_KIND = "Organization"
AUTOJOIN_KEY_KIND = "APIKey"

# Datastore refuses key names of this shape (INVALID_ARGUMENT); a presented
# key that asks for one is simply unknown, not a store failure.
_RESERVED_NAME = re.compile(r"__.*__", re.DOTALL)
MAX_KEY_NAME_BYTES = 1500

_CALL_FAILED = (api_exceptions.GoogleAPIError, auth_exceptions.GoogleAuthError)

# Reconnect attempts to a store that went away: soon, and never more than
# RECONNECT_BACKOFF_MAX_MS apart, so recovery is seen within one deadline.
RECONNECT_BACKOFF_MS = 100
RECONNECT_BACKOFF_MAX_MS = 500
CHANNEL_OPTIONS = (
    ("grpc.initial_reconnect_backoff_ms", RECONNECT_BACKOFF_MS),
    ("grpc.min_reconnect_backoff_ms", RECONNECT_BACKOFF_MS),
    ("grpc.max_reconnect_backoff_ms", RECONNECT_BACKOFF_MAX_MS),
)


def _now():
    return datetime.datetime.now(datetime.timezone.utc)


def _use_channel_options(client, options):
    """Give the client the API object its library would make, on a channel with these options.

    google.cloud.datastore._gapic.make_datastore_api offers no way to pass
    channel options; this is the same construction with them, installed
    where the client keeps its lazily made API object (pinned by the
    library version range in setup.cfg, checked by the store-down test).
    """
    host = urllib.parse.urlparse(client._base_url).netloc
    if client._base_url.startswith("https:"):
        channel = cloud_helpers.make_secure_channel(
            client._credentials, DEFAULT_USER_AGENT, host, extra_options=options
        )
    else:  # the emulator, or a test server standing in for it
        channel = grpc.insecure_channel(host, options=options)
    transport = gapic_grpc.DatastoreGrpcTransport(channel=channel)
    client._datastore_api_internal = gapic_client.DatastoreClient(transport=transport, client_info=client._client_info)


def _text(value):
    return value if isinstance(value, str) else ""


def _timestamp(value):
    return value.astimezone(datetime.timezone.utc).isoformat() if isinstance(value, datetime.datetime) else ""


def _usable_name(name):
    return bool(name) and not _RESERVED_NAME.fullmatch(name) and len(name.encode()) <= MAX_KEY_NAME_BYTES


class DatastoreKeyStore(KeyStore):
    def __init__(self, client, integration_ns, platform_ns, timeout_seconds):
        self.client = client
        self.integration_ns = integration_ns
        self.platform_ns = platform_ns
        self.timeout_seconds = timeout_seconds

    @classmethod
    def connect(cls, project, integration_ns, platform_ns, timeout_seconds):
        """Create the client (no network yet): credentials as Google's libraries find them."""
        try:
            client = datastore.Client(project=project)
        except (auth_exceptions.GoogleAuthError, ValueError, OSError) as e:
            raise StoreError(f"store 'datastore': cannot create a client for project {project!r}: {e}") from None
        _use_channel_options(client, CHANNEL_OPTIONS)
        return cls(client, integration_ns, platform_ns, timeout_seconds)

    def _call_options(self):
        """Retry transient errors with backoff, the whole call bounded by the timeout."""
        return dict(
            retry=api_retry.Retry(
                predicate=api_retry.if_transient_error,
                initial=0.05,
                maximum=0.5,
                multiplier=2.0,
                timeout=self.timeout_seconds,
            ),
            timeout=self.timeout_seconds,
        )

    def _unavailable(self, operation, error, secret=None):
        return StoreUnavailable(_without(f"datastore {operation} failed: {type(error).__name__}: {error}", secret))

    def _integration_key_path(self, integration_id, key_id):
        return self.client.key(
            INTEGRATION_META_KIND, integration_id, INTEGRATION_KEY_KIND, key_id, namespace=self.integration_ns
        )

    # Read path.

    def get_integration_key(self, integration_id, key_id):
        if not (_usable_name(integration_id) and _usable_name(key_id)):
            return None
        try:
            entity = self.client.get(self._integration_key_path(integration_id, key_id), **self._call_options())
        except _CALL_FAILED as e:
            raise self._unavailable("lookup", e) from None
        if entity is None:
            return None
        key_hash, status, tier = entity.get("key_hash"), entity.get("status"), entity.get("tier")
        return IntegrationKeyRecord(
            integration_id,
            key_id,
            key_hash if isinstance(key_hash, str) else "",
            status if isinstance(status, str) else "",
            tier if isinstance(tier, int) else 0,
        )

    def find_autojoin_org(self, api_key):
        if len(api_key.encode()) > MAX_KEY_NAME_BYTES:
            return None  # longer than any indexed string value
        query = self.client.query(kind=AUTOJOIN_KEY_KIND, namespace=self.platform_ns)
        query.add_filter(filter=PropertyFilter("key", "=", api_key))
        query.keys_only()
        try:
            results = list(query.fetch(limit=1, **self._call_options()))
        except _CALL_FAILED as e:
            raise self._unavailable("query", e, api_key) from None
        if not results or results[0].key.parent is None:
            return None
        return results[0].key.parent.name

    # Write path (tools): entities exactly as the Go tools write them.

    def _write(self, operation, fn, secret=None):
        """Run fn(read, transaction) in one transaction, every call bounded like the reads.

        secret: an autojoin key the written entities are named after, kept out of error messages."""
        options = self._call_options()
        transaction = self.client.transaction()

        def read(key):
            return self.client.get(key, transaction=transaction, **options)

        try:
            transaction.begin(**options)
            try:
                result = fn(read, transaction)
                transaction.commit(**options)
            except BaseException:
                with contextlib.suppress(Exception):
                    transaction.rollback(**options)
                raise
        except api_exceptions.Conflict as e:  # ABORTED: a concurrent writer
            raise AlreadyExists(_without(f"datastore {operation}: {e}", secret)) from None
        except _CALL_FAILED as e:
            raise self._unavailable(operation, e, secret) from None
        return result

    def ensure_integration(self, integration_id, description=""):
        key = self.client.key(INTEGRATION_META_KIND, integration_id, namespace=self.integration_ns)

        def create(read, transaction):
            if read(key) is not None:
                return False
            transaction.put(self._entity(key, {"created_at": _now(), "description": description}))
            return True

        return self._write("create integration", create)

    def add_integration_key(self, integration_id, key_id, key_hash, description="", tier=0):
        parent = self.client.key(INTEGRATION_META_KIND, integration_id, namespace=self.integration_ns)
        key = self._integration_key_path(integration_id, key_id)

        def create(read, transaction):
            if read(parent) is None:
                raise NotFound(f"integration {integration_id!r} does not exist")
            if read(key) is not None:
                raise AlreadyExists(f"key {key_id!r} already exists in integration {integration_id!r}")
            transaction.put(
                self._entity(
                    key,
                    {
                        "key_hash": key_hash,
                        "created_at": _now(),
                        "description": description,
                        "status": ACTIVE,
                        "tier": int(tier),
                    },
                )
            )

        self._write("create key", create)

    def ensure_organization(self, name, email=""):
        key = self.client.key(ORGANIZATION_KIND, name, namespace=self.platform_ns)

        def create(read, transaction):
            if read(key) is not None:
                return False
            transaction.put(
                self._entity(key, {"name": name, "email": email, "created_at": _now(), "probability_multiplier": 1.0})
            )
            return True

        return self._write("create organization", create)

    def add_autojoin_key(self, org, api_key):
        parent = self.client.key(ORGANIZATION_KIND, org, namespace=self.platform_ns)
        key = self.client.key(ORGANIZATION_KIND, org, AUTOJOIN_KEY_KIND, api_key, namespace=self.platform_ns)

        def create(read, transaction):
            if read(parent) is None:
                raise NotFound(f"organization {org!r} does not exist")
            transaction.put(self._entity(key, {"created_at": _now(), "key": api_key}))

        self._write("create autojoin key", create, secret=api_key)

    # Lifecycle (tools).

    def _fetch(self, kind, namespace, ancestor=None):
        """Every entity of a kind (under an ancestor), in key order."""
        query = self.client.query(kind=kind, namespace=namespace, ancestor=ancestor)
        try:
            return list(query.fetch(**self._call_options()))
        except _CALL_FAILED as e:
            raise self._unavailable("query", e) from None

    def _get(self, key):
        try:
            return self.client.get(key, **self._call_options())
        except _CALL_FAILED as e:
            raise self._unavailable("lookup", e) from None

    def _parents(self, kind, name, namespace):
        """The entities of a kind: all of them, or the one named (none when it does not exist)."""
        if name is None:
            return self._fetch(kind, namespace)
        if not _usable_name(name):
            return []
        entity = self._get(self.client.key(kind, name, namespace=namespace))
        return [entity] if entity is not None else []

    def list_integrations(self, integration_id=None):
        metas = self._parents(INTEGRATION_META_KIND, integration_id, self.integration_ns)
        ancestor = metas[0].key if integration_id is not None and metas else None
        keys: dict[str, list[IntegrationKeyInfo]] = {}
        for entity in self._fetch(INTEGRATION_KEY_KIND, self.integration_ns, ancestor) if metas else []:
            tier = entity.get("tier")
            keys.setdefault(entity.key.parent.name, []).append(
                IntegrationKeyInfo(
                    entity.key.name,
                    _text(entity.get("description")),
                    tier if isinstance(tier, int) else 0,
                    _text(entity.get("status")),
                    _timestamp(entity.get("created_at")),
                    hash_scheme(_text(entity.get("key_hash"))) or "unknown",
                )
            )
        return [
            IntegrationInfo(
                meta.key.name,
                _text(meta.get("description")),
                _timestamp(meta.get("created_at")),
                tuple(keys.get(meta.key.name, ())),
            )
            for meta in metas
        ]

    def update_integration_key(self, integration_id, key_id, status=None, tier=None):
        if status is None and tier is None:
            raise ValueError("nothing to change")
        if not (_usable_name(integration_id) and _usable_name(key_id)):
            raise NotFound(f"no key {key_id!r} in integration {integration_id!r}")
        key = self._integration_key_path(integration_id, key_id)

        def update(read, transaction):
            entity = read(key)
            if entity is None:
                raise NotFound(f"no key {key_id!r} in integration {integration_id!r}")
            # Read-modify-write: every other property stays as it was written.
            if status is not None:
                entity["status"] = status
            if tier is not None:
                entity["tier"] = int(tier)
            transaction.put(entity)

        self._write("update key", update)

    def list_organizations(self, org=None):
        orgs = self._parents(ORGANIZATION_KIND, org, self.platform_ns)
        ancestor = orgs[0].key if org is not None and orgs else None
        keys: dict[str, list[AutojoinKeyInfo]] = {}
        for entity in self._fetch(AUTOJOIN_KEY_KIND, self.platform_ns, ancestor) if orgs else []:
            if entity.key.parent is not None:
                keys.setdefault(entity.key.parent.name, []).append(
                    AutojoinKeyInfo(
                        fingerprint_of(self._autojoin_key_sha256(entity)), _timestamp(entity.get("created_at"))
                    )
                )
        return [
            OrganizationInfo(
                entity.key.name,
                _text(entity.get("email")),
                _timestamp(entity.get("created_at")),
                tuple(sorted(keys.get(entity.key.name, ()), key=lambda k: k.created_at)),
            )
            for entity in orgs
        ]

    @staticmethod
    def _autojoin_key_sha256(entity):
        # The service finds keys by the `key` property; the key name holds the same value.
        return sha256_hex((_text(entity.get("key")) or entity.key.name or "").encode("utf-8"))

    def delete_autojoin_key(self, fingerprint_prefix, org=None):
        ancestor = None
        if org is not None:
            if not _usable_name(org):
                raise NotFound(f"organization {org!r} does not exist")
            ancestor = self.client.key(ORGANIZATION_KIND, org, namespace=self.platform_ns)
        candidates = [
            (self._autojoin_key_sha256(entity), entity.key)
            for entity in self._fetch(AUTOJOIN_KEY_KIND, self.platform_ns, ancestor)
            if entity.key.parent is not None
        ]
        key = pick_by_fingerprint(fingerprint_prefix, candidates)

        def delete(read, transaction):
            entity = read(key)
            if entity is None:
                raise NotFound(f"no autojoin key has fingerprint {fingerprint_prefix}")
            transaction.delete(key)
            return self._autojoin_key_sha256(entity)

        key_sha256 = self._write("delete autojoin key", delete, secret=key.name)
        return key.parent.name, fingerprint_of(key_sha256)

    @staticmethod
    def _entity(entity_key, properties):
        entity = datastore.Entity(key=entity_key)
        entity.update(properties)
        return entity

    def close(self):
        self.client.close()


def _without(message, secret):
    """message with secret (an autojoin key, which names its entity) replaced: Datastore's error texts may
    quote the keys of the entities they concern."""
    return message if not secret else message.replace(secret, "[redacted]")
