"""The KeyVerifier (verification/verifier.py) in process, on its own event loop, without sockets: the reasons it
gives, which pool runs what, and what it reports. tests/http/test_verifier.py checks it through requests."""

import asyncio
import concurrent.futures
import threading

import pytest

from tests.support import FakeClock, RecordingEvents
from token_exchange.store import IntegrationKeyRecord, StoreUnavailable
from token_exchange.verification.admission import MAX_CONCURRENT_PER_KEY
from token_exchange.verification.secrethash import hash_secret, verify_secret
from token_exchange.verification.verifier import (
    InvalidKey,
    KeyVerifier,
    Overloaded,
    Throttled,
    parse_presented_integration_key,
)
from token_exchange.verification.verifycache import VerificationCache

SECRET = b"s" * 43
API_KEY = "mlabk.cii_acme.ki_0123456789abcdef." + SECRET.decode()
CLIENT = "192.0.2.1"


def the_client():
    return CLIENT


class Store:
    """A KeyReader holding one integration key and one autojoin key; it names the threads each call ran on."""

    def __init__(self, key_hash, status="active"):
        self.record = IntegrationKeyRecord("acme", "ki_0123456789abcdef", key_hash, status, 2)
        self.threads = []

    def get_integration_key(self, integration_id, key_id):
        self.threads.append(threading.current_thread().name)
        return self.record if (integration_id, key_id) == ("acme", self.record.key_id) else None

    def find_autojoin_org(self, api_key):
        self.threads.append(threading.current_thread().name)
        return "example-org" if api_key == "autojoin-key" else None

    def check(self):
        self.threads.append(threading.current_thread().name)


@pytest.fixture
def pools():
    store_pool = concurrent.futures.ThreadPoolExecutor(2, thread_name_prefix="store-pool")
    hash_pool = concurrent.futures.ThreadPoolExecutor(2, thread_name_prefix="hash-pool")
    yield store_pool, hash_pool
    store_pool.shutdown()
    hash_pool.shutdown()


def make_verifier(pools, key_hash, status="active", **options):
    store_pool, hash_pool = pools
    return KeyVerifier(Store(key_hash, status), store_pool, hash_pool, 3.0, **options)


def test_a_malformed_key_is_refused_with_the_parser_reason():
    with pytest.raises(InvalidKey, match=r"^malformed key: secret must be 1\.\.128 bytes$"):
        parse_presented_integration_key("mlabk.cii_acme.ki_1.")


def test_a_malformed_autojoin_key_is_refused_with_its_reason(pools):
    verifier = make_verifier(pools, "unused")
    with pytest.raises(InvalidKey, match=r"^malformed key: autojoin key must be 1\.\.1500 bytes$"):
        asyncio.run(verifier.verify_autojoin_key(""))
    with pytest.raises(InvalidKey, match="^unknown autojoin key$"):
        asyncio.run(verifier.verify_autojoin_key("other-key"))
    assert asyncio.run(verifier.verify_autojoin_key("autojoin-key")) == "example-org"


def test_bcrypt_checks_run_on_the_hashing_pool(pools):
    threads = []

    def verify(secret, stored_hash):
        threads.append(threading.current_thread().name)
        return verify_secret(secret, stored_hash)

    verifier = make_verifier(pools, hash_secret(SECRET, bcrypt_cost=4), verify=verify)
    identity = asyncio.run(verifier.verify_integration_key(parse_presented_integration_key(API_KEY), the_client))
    assert (identity.integration_id, identity.key_id, identity.tier) == ("acme", "ki_0123456789abcdef", 2)
    assert len(threads) == 1 and threads[0].startswith("hash-pool")


def test_the_client_is_asked_only_when_a_check_must_be_admitted(pools):
    asked = []

    def client():
        asked.append(CLIENT)
        return CLIENT

    verifier = make_verifier(pools, hash_secret(SECRET, bcrypt_cost=4))
    key = parse_presented_integration_key(API_KEY)
    asyncio.run(verifier.verify_integration_key(key, client))
    assert asked == [CLIENT]  # the first time: a bcrypt check, admitted for this client
    asyncio.run(verifier.verify_integration_key(key, client))
    assert asked == [CLIENT]  # then the verification cache holds the secret: nothing to admit


def test_refused_checks_are_reported_with_their_reason(pools):
    release, started = threading.Event(), threading.Semaphore(0)

    def held_verify(secret, stored_hash):
        started.release()
        assert release.wait(30)
        return verify_secret(secret, stored_hash)

    async def until_started(count):
        for _ in range(count):
            while not started.acquire(blocking=False):
                await asyncio.sleep(0.001)

    events = RecordingEvents()
    verifier = make_verifier(
        pools, hash_secret(SECRET, bcrypt_cost=4), verify=held_verify, events=events, max_pending_verifications=1
    )
    wrong = [API_KEY[:-1] + c for c in "xyz"]

    async def scenario():
        held = asyncio.ensure_future(
            verifier.verify_integration_key(parse_presented_integration_key(wrong[0]), the_client)
        )
        await until_started(1)
        with pytest.raises(Overloaded) as overloaded:
            await verifier.verify_integration_key(parse_presented_integration_key(wrong[1]), the_client)
        release.set()
        with pytest.raises(InvalidKey, match="secret does not match"):
            await held
        return overloaded.value

    overloaded = asyncio.run(scenario())
    assert overloaded.retry_after_seconds == 1
    assert str(overloaded) == "1 checks already pending (integration=acme key_id=ki_0123456789abcdef client=192.0.2.1)"
    assert ("refused", "overloaded") in events.seen

    events.seen.clear()
    release.clear()
    verifier = make_verifier(pools, hash_secret(SECRET, bcrypt_cost=4), verify=held_verify, events=events)

    async def throttled_scenario():
        held = [
            asyncio.ensure_future(verifier.verify_integration_key(parse_presented_integration_key(secret), the_client))
            for secret in wrong[:MAX_CONCURRENT_PER_KEY]
        ]
        await until_started(MAX_CONCURRENT_PER_KEY)
        with pytest.raises(Throttled) as throttled:
            await verifier.verify_integration_key(parse_presented_integration_key(wrong[2]), the_client)
        release.set()
        for future in held:
            with pytest.raises(InvalidKey):
                await future
        return throttled.value

    throttled = asyncio.run(throttled_scenario())
    assert throttled.retry_after_seconds == 1
    assert events.seen.count(("refused", "throttled")) == 1


def test_a_throttled_key_names_itself_and_the_seconds_left(pools):
    clock = FakeClock()
    verifier = make_verifier(pools, hash_secret(SECRET, bcrypt_cost=4), clock=clock, max_failures_per_key=1)
    wrong = parse_presented_integration_key(API_KEY[:-1] + "x")
    with pytest.raises(InvalidKey, match=r"^secret does not match \(integration=acme key_id=ki_0123456789abcdef\)$"):
        asyncio.run(verifier.verify_integration_key(wrong, the_client))
    clock.now += 20.5
    with pytest.raises(Throttled) as throttled:
        asyncio.run(verifier.verify_integration_key(wrong, the_client))
    assert throttled.value.retry_after_seconds == 40
    assert (
        str(throttled.value)
        == "1 failed checks within 60 s (integration=acme key_id=ki_0123456789abcdef client=192.0.2.1)"
    )


def test_failures_throttle_the_client_that_made_them_and_not_the_key_holder(pools):
    # A cache that keeps nothing: every exchange of the holder needs a check, as in a fresh process.
    verifier = make_verifier(
        pools, hash_secret(SECRET, bcrypt_cost=4), max_failures_per_key=1, verification_cache=VerificationCache(0)
    )
    wrong = parse_presented_integration_key(API_KEY[:-1] + "x")
    with pytest.raises(InvalidKey):
        asyncio.run(verifier.verify_integration_key(wrong, lambda: "192.0.2.66"))
    with pytest.raises(Throttled, match=r"client=192\.0\.2\.66\)$"):
        asyncio.run(verifier.verify_integration_key(wrong, lambda: "192.0.2.66"))
    for _ in range(3):  # each check of the holder is admitted, and finished on the holder's own count
        identity = asyncio.run(verifier.verify_integration_key(parse_presented_integration_key(API_KEY), the_client))
        assert identity.key_id == "ki_0123456789abcdef"
    with pytest.raises(InvalidKey):  # the holder's own failure counts against the holder
        asyncio.run(verifier.verify_integration_key(wrong, the_client))
    with pytest.raises(Throttled, match=r"client=192\.0\.2\.1\)$"):
        asyncio.run(verifier.verify_integration_key(parse_presented_integration_key(API_KEY), the_client))


@pytest.mark.parametrize("status", ["revoked", "Active", ""])
def test_an_inactive_or_unknown_key_is_refused_with_its_reason(pools, status):
    verifier = make_verifier(pools, hash_secret(SECRET, bcrypt_cost=4), status)
    with pytest.raises(InvalidKey, match=r"^key is not active \(integration=acme key_id=ki_0123456789abcdef\)$"):
        asyncio.run(verifier.verify_integration_key(parse_presented_integration_key(API_KEY), the_client))
    unknown = parse_presented_integration_key(API_KEY.replace("ki_0123456789abcdef", "ki_1"))
    with pytest.raises(InvalidKey, match=r"^unknown key \(ids not logged: a client may put anything there\)$"):
        asyncio.run(verifier.verify_integration_key(unknown, the_client))


def test_store_calls_run_on_the_store_pool(pools):
    store_pool, hash_pool = pools
    store = Store(hash_secret(SECRET, bcrypt_cost=4))
    verifier = KeyVerifier(store, store_pool, hash_pool, 3.0)
    asyncio.run(verifier.verify_integration_key(parse_presented_integration_key(API_KEY), the_client))
    assert asyncio.run(verifier.verify_autojoin_key("autojoin-key")) == "example-org"
    asyncio.run(verifier.check_store())
    assert len(store.threads) == 3
    assert all(name.startswith("store-pool") for name in store.threads), store.threads


def test_a_store_slower_than_the_timeout_is_unavailable_with_the_bound_in_the_reason(pools):
    store_pool, hash_pool = pools
    answer = threading.Event()

    class SlowStore(Store):
        def get_integration_key(self, integration_id, key_id):
            answer.wait(30)

    verifier = KeyVerifier(SlowStore("unused"), store_pool, hash_pool, 0.25)
    try:
        with pytest.raises(StoreUnavailable, match=r"^no answer within 0\.25 s$"):
            asyncio.run(verifier.verify_integration_key(parse_presented_integration_key(API_KEY), the_client))
    finally:
        answer.set()
