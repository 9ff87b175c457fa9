"""Checking presented API keys against the key store.

Parsing happens on the event loop (cheap, and every limit is checked before
any lookup); the store lookup and the hash check run together on a worker
thread, because both block and bcrypt costs hundreds of milliseconds.
"""

import asyncio
from dataclasses import dataclass

from token_exchange.apikey import MalformedKey, check_autojoin_key, parse_integration_key
from token_exchange.secrethash import verify_secret
from token_exchange.store import ACTIVE


class InvalidKey(Exception):
    """The key is refused (401). The message is a reason safe to log."""


@dataclass(frozen=True)
class IntegrationIdentity:
    integration_id: str
    key_id: str
    tier: int


class KeyVerifier:
    def __init__(self, store, executor):
        self._store = store
        self._executor = executor

    async def verify_integration_key(self, api_key):
        """The IntegrationIdentity of a valid key; InvalidKey or StoreUnavailable otherwise."""
        try:
            key = parse_integration_key(api_key)
        except MalformedKey as e:
            raise InvalidKey(f"malformed key: {e}") from None
        return await self._off_loop(self._check_integration_key, key)

    async def verify_autojoin_key(self, api_key):
        """The organisation owning a valid autojoin key."""
        try:
            check_autojoin_key(api_key)
        except MalformedKey as e:
            raise InvalidKey(f"malformed key: {e}") from None
        return await self._off_loop(self._check_autojoin_key, api_key)

    async def _off_loop(self, fn, *args):
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    def _check_integration_key(self, key):
        record = self._store.get_integration_key(key.integration_id, key.key_id)
        where = f"integration={key.integration_id} key_id={key.key_id}"
        if record is None:
            raise InvalidKey(f"unknown key ({where})")
        if record.status != ACTIVE:
            raise InvalidKey(f"key is not active ({where})")
        if not verify_secret(key.secret, record.key_hash):
            raise InvalidKey(f"secret does not match ({where})")
        return IntegrationIdentity(record.integration_id, record.key_id, record.tier)

    def _check_autojoin_key(self, api_key):
        org = self._store.find_autojoin_org(api_key)
        if org is None:
            raise InvalidKey("unknown autojoin key")
        return org
