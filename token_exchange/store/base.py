"""What the service and the tools need from a key store.

Calls are blocking: the service runs them on its worker threads, never on
the event loop. A store that cannot answer raises StoreUnavailable (the
service answers 503), which is never confused with "no such key" (None).
"""

import abc
from dataclasses import dataclass

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


@dataclass(frozen=True)
class IntegrationKeyRecord:
    integration_id: str
    key_id: str
    key_hash: str
    status: str
    tier: int

    def __repr__(self):
        # The hash stays out of logs and tracebacks too.
        return (f"IntegrationKeyRecord(integration_id={self.integration_id!r}, key_id={self.key_id!r}, "
                f"status={self.status!r}, tier={self.tier!r})")


class KeyStore(abc.ABC):
    """Integration keys (by integration id and key id) and autojoin keys."""

    # Read path, used by the service on every exchange.

    @abc.abstractmethod
    def get_integration_key(self, integration_id, key_id):
        """The IntegrationKeyRecord, or None when there is no such key."""

    @abc.abstractmethod
    def find_autojoin_org(self, api_key):
        """The organisation name owning this autojoin key, or None."""

    # Write path, used by the operator tools.

    @abc.abstractmethod
    def ensure_integration(self, integration_id, description=""):
        """Create the integration unless it exists; True when created."""

    @abc.abstractmethod
    def add_integration_key(self, integration_id, key_id, key_hash, description="", tier=0):
        """Add an active key; AlreadyExists when the key id is taken."""

    @abc.abstractmethod
    def ensure_organization(self, name, email=""):
        """Create the organisation unless it exists; True when created."""

    @abc.abstractmethod
    def add_autojoin_key(self, org, api_key):
        """Add an autojoin key to an existing organisation."""

    def check(self):
        """Raise StoreUnavailable unless the store answers."""

    def close(self):
        pass
