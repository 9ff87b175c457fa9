"""Checking presented API keys against the key store.

Parsing happens on the event loop (cheap, and every limit is checked before
any lookup). The store lookup runs on the I/O pool, bounded by the store
timeout; a found record is then kept for -key-cache-ttl seconds, which
bounds how long a revoked or changed key keeps working. A secret that has
matched its stored hash once is remembered (as a keyed digest, never the
secret) so later requests skip bcrypt: a warm exchange never leaves the
loop. A bcrypt check runs on the hashing pool, admitted only within the
limits of token_exchange.verification.admission; concurrent requests with the same
secret for the same hash share one check.
"""

import asyncio
import time
from concurrent.futures import Executor
from typing import Callable, NamedTuple, Optional

from token_exchange.store import ACTIVE, IntegrationKeyRecord, KeyReader, StoreUnavailable
from token_exchange.verification.admission import (
    DEFAULT_MAX_PENDING,
    MAX_FAILURES_PER_KEY,
    Admission,
    Overloaded,
    Refused,
    Throttled,
)
from token_exchange.verification.apikey import IntegrationKey, MalformedKey, check_autojoin_key, parse_integration_key
from token_exchange.verification.recordcache import DEFAULT_KEY_CACHE_TTL_SECONDS, RecordCache
from token_exchange.verification.secrethash import BCRYPT, hash_scheme, verify_secret
from token_exchange.verification.verifycache import VerificationCache

__all__ = [
    "DEFAULT_KEY_CACHE_TTL_SECONDS",
    "IntegrationIdentity",
    "InvalidKey",
    "KeyVerifier",
    "Overloaded",
    "Refused",
    "Throttled",
    "VerifierEvents",
    "parse_presented_integration_key",
]


class InvalidKey(Exception):
    """The key is refused (401). The message is a reason safe to log."""


class IntegrationIdentity(NamedTuple):
    """Who a verified key belongs to (a tuple: made on every exchange, cheaper than a frozen dataclass)."""

    integration_id: str
    key_id: str
    tier: int


class VerifierEvents:
    """What the verifier reports as it works; these do nothing, metrics may override them.

    cache_hit(): a secret matched from the verification cache, no bcrypt.
    cache_miss(): a secret had to be checked against its stored hash.
    verification_queued(depth): a bcrypt check was queued; depth counts checks queued or running.
    verification_done(depth): a bcrypt check finished; depth counts those still queued or running.
    verification_refused(reason): a check was not started: "overloaded" (503) or "throttled" (429).
    """

    def cache_hit(self):
        pass

    def cache_miss(self):
        pass

    def verification_queued(self, depth):
        pass

    def verification_done(self, depth):
        pass

    def verification_refused(self, reason):
        pass


def _where(key):
    """The key named for a log line: its ids, never its secret."""
    return f"integration={key.integration_id} key_id={key.key_id}"


def parse_presented_integration_key(api_key: str) -> IntegrationKey:
    """The IntegrationKey a request presents; InvalidKey when malformed (checked before any lookup)."""
    try:
        return parse_integration_key(api_key)
    except MalformedKey as e:
        raise InvalidKey(f"malformed key: {e}") from None


class KeyVerifier:
    """Checks presented keys: InvalidKey (401), Refused (429 or 503) or StoreUnavailable (503) when refused.

    store: what the service reads of the key store; store_executor runs its blocking calls, hash_executor
    the bcrypt checks (hashpool). Used on one event loop.
    """

    def __init__(
        self,
        store: KeyReader,
        store_executor: Executor,
        hash_executor: Executor,
        store_timeout_seconds: float,
        *,
        key_cache_ttl: float = DEFAULT_KEY_CACHE_TTL_SECONDS,
        max_pending_verifications: int = DEFAULT_MAX_PENDING,
        max_failures_per_key: int = MAX_FAILURES_PER_KEY,
        verification_cache: Optional[VerificationCache] = None,
        verify: Callable[[bytes, str], bool] = verify_secret,
        events: Optional[VerifierEvents] = None,
        clock: Callable[[], float] = time.monotonic,
    ):
        self._store = store
        self._store_executor = store_executor
        self._hash_executor = hash_executor
        self._store_timeout = store_timeout_seconds
        self._records = RecordCache(key_cache_ttl, clock=clock)
        self._verified = verification_cache if verification_cache is not None else VerificationCache()
        self._admission = Admission(max_pending_verifications, max_failures_per_key, clock=clock)
        self._verify = verify
        self._events = events or VerifierEvents()
        self._in_flight: dict[bytes, asyncio.Future] = {}  # digest -> the bcrypt check running for it

    async def verify_integration_key(self, key: IntegrationKey, client: Callable[[], str]) -> IntegrationIdentity:
        """The IntegrationIdentity of a parsed key (parse_presented_integration_key) presented by client, which
        says who the client is (the address the limits on bcrypt checks count it by, web.clientaddr) when a
        check must be admitted; InvalidKey, Refused or StoreUnavailable otherwise. find_integration_key, then
        verify_integration_secret."""
        return await self.verify_integration_secret(key, await self.find_integration_key(key), client)

    async def find_integration_key(self, key: IntegrationKey) -> IntegrationKeyRecord:
        """The stored record of a parsed key's ids; InvalidKey when the store has none.

        A client may put anything where an id goes, its secret included: the ids of a key the store
        does not know are never logged, those of a key it knows may be.
        """
        lookup = (key.integration_id, key.key_id)
        record = self._records.get(lookup)
        if record is None:
            record = await self._ask_store(self._store.get_integration_key, key.integration_id, key.key_id)
            self._records.put(lookup, record)
        if record is None:
            raise InvalidKey("unknown key (ids not logged: a client may put anything there)")
        return record

    async def verify_integration_secret(
        self, key: IntegrationKey, record: IntegrationKeyRecord, client: Callable[[], str]
    ) -> IntegrationIdentity:
        """The IntegrationIdentity of a key whose record find_integration_key found, if it is active and its
        secret matches; InvalidKey or Refused otherwise."""
        lookup = (key.integration_id, key.key_id)
        if record.status != ACTIVE:
            raise InvalidKey(f"key is not active ({_where(key)})")
        digest = self._verified.digest(key.secret, record.key_hash)
        if digest in self._verified:
            self._events.cache_hit()
        else:
            who = client()  # asked only now: a secret the cache holds needs no admission, and most do
            try:
                matched = await self._check_secret(lookup, who, digest, key.secret, record.key_hash)
            except Refused as e:
                raise type(e)(f"{e} ({_where(key)} client={who})", e.retry_after_seconds) from None
            if not matched:
                raise InvalidKey(f"secret does not match ({_where(key)})")
        return IntegrationIdentity(record.integration_id, record.key_id, record.tier)

    async def verify_autojoin_key(self, api_key: str) -> str:
        """The organisation owning a valid autojoin key."""
        try:
            check_autojoin_key(api_key)
        except MalformedKey as e:
            raise InvalidKey(f"malformed key: {e}") from None
        org = await self._ask_store(self._store.find_autojoin_org, api_key)
        if org is None:
            raise InvalidKey("unknown autojoin key")
        return org

    async def _check_secret(self, throttle_key, client, digest, secret, stored_hash):
        """Whether a secret the verification cache does not hold (digest) matches its stored hash."""
        self._events.cache_miss()
        if hash_scheme(stored_hash) != BCRYPT:
            # SHA-256 (or an unusable hash) costs microseconds: no pool, no queue.
            matched = self._verify(secret, stored_hash)
            if matched:
                self._verified.add(digest)
            return matched
        check = self._in_flight.get(digest)
        if check is None:
            check = self._start_bcrypt(throttle_key, client, digest, secret, stored_hash)
        # shield: a request that goes away must not cancel a check others wait on.
        return await asyncio.shield(check)

    def _start_bcrypt(self, throttle_key, client, digest, secret, stored_hash):
        try:
            self._admission.admit(throttle_key, client)
        except Refused as e:
            self._events.verification_refused("overloaded" if isinstance(e, Overloaded) else "throttled")
            raise
        check = asyncio.get_running_loop().run_in_executor(self._hash_executor, self._verify, secret, stored_hash)
        self._in_flight[digest] = check
        self._events.verification_queued(self._admission.pending)
        check.add_done_callback(lambda done: self._bcrypt_done(throttle_key, client, digest, done))
        return check

    def _bcrypt_done(self, throttle_key, client, digest, check):
        del self._in_flight[digest]
        matched = None if check.cancelled() or check.exception() is not None else check.result()
        if matched:
            self._verified.add(digest)
        self._admission.finish(throttle_key, client, matched)
        self._events.verification_done(self._admission.pending)

    async def check_store(self) -> None:
        """Return once the store answers within the store timeout; StoreUnavailable otherwise."""
        await self._ask_store(self._store.check)

    async def _ask_store(self, fn, *args):
        # The store bounds its own calls too; this bound holds even when the
        # pool is saturated or a call ignores its deadline.
        future = asyncio.get_running_loop().run_in_executor(self._store_executor, fn, *args)
        try:
            return await asyncio.wait_for(future, self._store_timeout)
        except asyncio.TimeoutError:
            raise StoreUnavailable(f"no answer within {self._store_timeout:g} s") from None
