"""What the service and the tools need from a key store.

Calls are blocking: the service runs them on its worker threads, never on
the event loop. A store that cannot answer raises StoreUnavailable (the
service answers 503), which is never confused with "no such key" (None).
"""

import abc
from dataclasses import dataclass
from typing import Optional, Protocol

ACTIVE = "active"
DEFAULT_INTEGRATION_NS = "client-integration"
DEFAULT_PLATFORM_NS = "platform-credentials"


class StoreError(Exception):
    """A store that cannot be opened or used as configured."""


class StoreUnavailable(StoreError):
    """The store did not answer; the request may succeed later."""


class AlreadyExists(StoreError):
    pass


class NotFound(StoreError):
    pass


class Ambiguous(StoreError):
    """A fingerprint prefix that names more than one key."""


# What the readiness check looks up; whether they exist does not matter, only that the reads answer.
PROBE_INTEGRATION_ID = "ready-probe"
PROBE_KEY_ID = "ki_ready-probe"
PROBE_AUTOJOIN_KEY = "ready-probe"

# Shown for an autojoin key instead of the key: enough to tell keys apart.
FINGERPRINT_HEX_DIGITS = 12
MIN_FINGERPRINT_PREFIX = 6


@dataclass(frozen=True)
class IntegrationKeyRecord:
    integration_id: str
    key_id: str
    key_hash: str
    status: str
    tier: int

    def __repr__(self):
        # The hash stays out of logs and tracebacks too.
        return (
            f"IntegrationKeyRecord(integration_id={self.integration_id!r}, key_id={self.key_id!r}, "
            f"status={self.status!r}, tier={self.tier!r})"
        )


@dataclass(frozen=True)
class IntegrationKeyInfo:
    """What an operator may see of an integration key: never its hash."""

    key_id: str
    description: str
    tier: int
    status: str
    created_at: str  # ISO 8601, UTC
    hash_scheme: str  # bcrypt, sha256 or unknown


@dataclass(frozen=True)
class IntegrationInfo:
    integration_id: str
    description: str
    created_at: str
    keys: tuple


@dataclass(frozen=True)
class AutojoinKeyInfo:
    fingerprint: str  # the first hex digits of the key's SHA-256
    created_at: str


@dataclass(frozen=True)
class OrganizationInfo:
    name: str
    email: str
    created_at: str
    keys: tuple


def fingerprint_of(key_sha256):
    return key_sha256[:FINGERPRINT_HEX_DIGITS]


def pick_by_fingerprint(prefix, candidates):
    """The one candidate (key_sha256, item) whose SHA-256 starts with prefix; NotFound or Ambiguous otherwise."""
    prefix = prefix.lower()
    matches = [item for key_sha256, item in candidates if key_sha256.startswith(prefix)]
    if not matches:
        raise NotFound(f"no autojoin key has fingerprint {prefix}")
    if len(matches) > 1:
        raise Ambiguous(f"fingerprint {prefix} matches {len(matches)} autojoin keys; give more digits")
    return matches[0]


class KeyReader(Protocol):
    """What the service reads of a key store (a KeyStore, or metrics.TimedKeyStore around one)."""

    def get_integration_key(self, integration_id: str, key_id: str) -> Optional[IntegrationKeyRecord]: ...

    def find_autojoin_org(self, api_key: str) -> Optional[str]: ...

    def check(self) -> None: ...


class KeyStore(abc.ABC):
    """Integration keys (by integration id and key id) and autojoin keys."""

    # Read path, used by the service on every exchange.

    @abc.abstractmethod
    def get_integration_key(self, integration_id: str, key_id: str) -> Optional[IntegrationKeyRecord]:
        """The IntegrationKeyRecord, or None when there is no such key."""

    @abc.abstractmethod
    def find_autojoin_org(self, api_key: str) -> Optional[str]:
        """The organisation name owning this autojoin key, or None."""

    # Write path, used by the operator tools.

    @abc.abstractmethod
    def ensure_integration(self, integration_id: str, description: str = "") -> bool:
        """Create the integration unless it exists; True when created."""

    @abc.abstractmethod
    def add_integration_key(
        self, integration_id: str, key_id: str, key_hash: str, description: str = "", tier: int = 0
    ) -> None:
        """Add an active key; AlreadyExists when the key id is taken."""

    @abc.abstractmethod
    def ensure_organization(self, name: str, email: str = "") -> bool:
        """Create the organisation unless it exists; True when created."""

    @abc.abstractmethod
    def add_autojoin_key(self, org: str, api_key: str) -> None:
        """Add an autojoin key to an existing organisation."""

    # Lifecycle, used by the operator tools.

    @abc.abstractmethod
    def list_integrations(self, integration_id: Optional[str] = None) -> list[IntegrationInfo]:
        """IntegrationInfo of every integration (or just the one named), sorted by id, keys by key id."""

    @abc.abstractmethod
    def update_integration_key(
        self, integration_id: str, key_id: str, status: Optional[str] = None, tier: Optional[int] = None
    ) -> None:
        """Set a key's status and/or tier, keeping every other property; NotFound when there is no such key."""

    @abc.abstractmethod
    def list_organizations(self, org: Optional[str] = None) -> list[OrganizationInfo]:
        """OrganizationInfo of every organisation (or just the one named), sorted by name."""

    @abc.abstractmethod
    def delete_autojoin_key(self, fingerprint_prefix: str, org: Optional[str] = None) -> tuple[str, str]:
        """Delete the one autojoin key whose SHA-256 starts with the prefix; return (org, fingerprint).

        NotFound when none matches, Ambiguous when more than one does.
        """

    def check(self) -> None:
        """Raise StoreUnavailable unless the store answers the reads an exchange makes.

        A store can answer a trivial request while every exchange fails (a corrupted file, a refused
        query), so this runs both read paths themselves, in the namespaces and tables the exchanges use.
        """
        self.get_integration_key(PROBE_INTEGRATION_ID, PROBE_KEY_ID)
        self.find_autojoin_org(PROBE_AUTOJOIN_KEY)

    @abc.abstractmethod
    def close(self) -> None:
        """Release connections; the store is not used afterwards."""
