"""Checking presented API keys against the key store.

Parsing happens on the event loop (cheap, and every limit is checked before
any lookup). The store lookup runs on the I/O pool, bounded by the store
timeout, and the hash check on the hashing pool: both block, and bcrypt
costs hundreds of milliseconds.
"""

import asyncio
from dataclasses import dataclass

from token_exchange.apikey import MalformedKey, check_autojoin_key, parse_integration_key
from token_exchange.secrethash import verify_secret
from token_exchange.store import ACTIVE, StoreUnavailable


class InvalidKey(Exception):
    """The key is refused (401). The message is a reason safe to log."""


@dataclass(frozen=True)
class IntegrationIdentity:
    integration_id: str
    key_id: str
    tier: int


class KeyVerifier:
    def __init__(self, store, store_executor, hash_executor, store_timeout_seconds):
        self._store = store
        self._store_executor = store_executor
        self._hash_executor = hash_executor
        self._store_timeout = store_timeout_seconds

    async def verify_integration_key(self, api_key):
        """The IntegrationIdentity of a valid key; InvalidKey or StoreUnavailable otherwise."""
        try:
            key = parse_integration_key(api_key)
        except MalformedKey as e:
            raise InvalidKey(f"malformed key: {e}") from None
        record = await self._ask_store(self._store.get_integration_key, key.integration_id, key.key_id)
        where = f"integration={key.integration_id} key_id={key.key_id}"
        if record is None:
            raise InvalidKey(f"unknown key ({where})")
        if record.status != ACTIVE:
            raise InvalidKey(f"key is not active ({where})")
        loop = asyncio.get_running_loop()
        if not await loop.run_in_executor(self._hash_executor, verify_secret, key.secret, record.key_hash):
            raise InvalidKey(f"secret does not match ({where})")
        return IntegrationIdentity(record.integration_id, record.key_id, record.tier)

    async def verify_autojoin_key(self, api_key):
        """The organisation owning a valid autojoin key."""
        try:
            check_autojoin_key(api_key)
        except MalformedKey as e:
            raise InvalidKey(f"malformed key: {e}") from None
        org = await self._ask_store(self._store.find_autojoin_org, api_key)
        if org is None:
            raise InvalidKey("unknown autojoin key")
        return org

    async def _ask_store(self, fn, *args):
        # The store bounds its own calls too; this bound holds even when the
        # pool is saturated or a call ignores its deadline.
        future = asyncio.get_running_loop().run_in_executor(self._store_executor, fn, *args)
        try:
            return await asyncio.wait_for(future, self._store_timeout)
        except asyncio.TimeoutError:
            raise StoreUnavailable(f"no answer within {self._store_timeout:g} s") from None
