"""The verification cache, the record TTL and overload control, over HTTP against the real app.

bcrypt calls are counted by handing the verifier a wrapped verify
function; checks are held in flight with an event, never with timing.
"""

import concurrent.futures
import hashlib
import sqlite3
import threading
import time

import pytest

from tests.consumer import verify_token
from tests.httpclient import exchange, request
from tests.support import CountingVerify, FakeClock, RecordingEvents
from token_exchange.verification.admission import MAX_CONCURRENT_PER_KEY, MAX_FAILURES_PER_KEY
from token_exchange.verification.secrethash import SHA256, hash_secret, verify_secret
from token_exchange.verification.verifycache import VerificationCache


def wrong_secret(api_key):
    prefix, secret = api_key.rsplit(".", 1)
    return f"{prefix}.{'A' if secret[0] != 'A' else 'B'}{secret[1:]}"


def set_key(db_path, key_id, **columns):
    assignments = ", ".join(f"{name} = ?" for name in columns)
    with sqlite3.connect(db_path) as conn:
        conn.execute(f"UPDATE integration_keys SET {assignments} WHERE key_id = ?", (*columns.values(), key_id))


def assert_refused(response, status, body):
    assert response.status == status
    assert response.body == body
    assert int(response.headers["Retry-After"]) >= 1


def test_a_verified_secret_skips_bcrypt_the_next_times(start_service, integration_key):
    verify, events = CountingVerify(), RecordingEvents()
    service = start_service(verifier_options=dict(verify=verify, events=events))
    key = integration_key("acme", tier=1)
    for _ in range(5):
        response = exchange(service.base_url, "integration", key.api_key)
        assert response.status == 200
        assert verify_token(service.base_url, response.json()["token"], "integration")["tier"] == 1
    assert verify.calls == 1
    assert events.seen == ["miss", ("queued", 1), ("done", 0), "hit", "hit", "hit", "hit"]


def test_a_wrong_secret_is_never_cached(start_service, integration_key):
    verify = CountingVerify()
    service = start_service(verifier_options=dict(verify=verify))
    key = integration_key()
    for _ in range(3):
        assert exchange(service.base_url, "integration", wrong_secret(key.api_key)).status == 401
    assert verify.calls == 3


def test_sha256_hashes_are_checked_on_the_loop_and_cached(start_service, integration_key):
    verify = CountingVerify()
    service = start_service(verifier_options=dict(verify=verify))
    key = integration_key(hash_scheme=SHA256)
    for _ in range(3):
        assert exchange(service.base_url, "integration", key.api_key).status == 200
    assert verify.calls == 1


def test_the_cache_holds_keyed_digests_never_the_secret(start_service, integration_key):
    cache = VerificationCache()
    service = start_service(verifier_options=dict(verification_cache=cache))
    keys = [integration_key(hash_scheme=scheme) for scheme in ("bcrypt", SHA256)]
    for key in keys:
        assert exchange(service.base_url, "integration", key.api_key).status == 200
    assert len(cache) == 2
    secrets = [key.api_key.rsplit(".", 1)[1].encode() for key in keys]
    for entry in cache.entries():
        assert len(entry) == 32
        for secret in secrets:
            assert secret not in entry
            # Not a bare digest of the secret either: the digest key is random per process.
            assert entry != hashlib.sha256(secret).digest()
    assert VerificationCache().digest(secrets[0], "h") != cache.digest(secrets[0], "h")


def test_with_ttl_0_a_revoked_key_is_refused_at_once_despite_the_cache(start_service, integration_key, db_path):
    verify = CountingVerify()
    service = start_service(key_cache_ttl=0, verifier_options=dict(verify=verify))
    key = integration_key()
    assert exchange(service.base_url, "integration", key.api_key).status == 200
    set_key(db_path, key.key_id, status="revoked")
    assert exchange(service.base_url, "integration", key.api_key).status == 401
    set_key(db_path, key.key_id, status="active")
    assert exchange(service.base_url, "integration", key.api_key).status == 200
    assert verify.calls == 1


def test_a_revoked_key_is_refused_once_the_ttl_has_passed(start_service, integration_key, db_path):
    clock = FakeClock()
    service = start_service(key_cache_ttl=5, verifier_options=dict(clock=clock))
    key = integration_key()
    assert exchange(service.base_url, "integration", key.api_key).status == 200
    set_key(db_path, key.key_id, status="revoked")
    clock.now += 4.9  # within the stated bound the cached record may still serve
    assert exchange(service.base_url, "integration", key.api_key).status == 200
    clock.now += 0.2
    assert exchange(service.base_url, "integration", key.api_key).status == 401


def test_a_changed_hash_refuses_the_old_secret_once_the_ttl_has_passed(start_service, integration_key, db_path):
    clock = FakeClock()
    service = start_service(key_cache_ttl=5, verifier_options=dict(clock=clock))
    key = integration_key()
    assert exchange(service.base_url, "integration", key.api_key).status == 200
    set_key(db_path, key.key_id, key_hash=hash_secret(b"a-new-secret", bcrypt_cost=4))
    clock.now += 5.1
    assert exchange(service.base_url, "integration", key.api_key).status == 401


def test_repeated_wrong_secrets_throttle_that_key_only(start_service, integration_key):
    clock = FakeClock()
    service = start_service(verifier_options=dict(clock=clock))
    target, other = integration_key("acme"), integration_key("other")
    assert exchange(service.base_url, "integration", target.api_key).status == 200  # now cached
    for _ in range(MAX_FAILURES_PER_KEY):
        assert exchange(service.base_url, "integration", wrong_secret(target.api_key)).status == 401
    assert_refused(
        exchange(service.base_url, "integration", wrong_secret(target.api_key)),
        429,
        b"Too many attempts for this key, retry later\n",
    )
    # Other keys are untouched, and the holder of the throttled key, whose
    # secret is cached, needs no bcrypt check and still gets tokens.
    assert exchange(service.base_url, "integration", other.api_key).status == 200
    assert exchange(service.base_url, "integration", target.api_key).status == 200
    clock.now += 61
    assert exchange(service.base_url, "integration", wrong_secret(target.api_key)).status == 401


def test_an_uncached_secret_of_a_throttled_key_waits_too(start_service, integration_key):
    service = start_service()
    key = integration_key()
    for _ in range(MAX_FAILURES_PER_KEY):
        assert exchange(service.base_url, "integration", wrong_secret(key.api_key)).status == 401
    assert_refused(
        exchange(service.base_url, "integration", key.api_key), 429, b"Too many attempts for this key, retry later\n"
    )


def in_flight(pool, base_url, api_key, verify, count=1):
    """Send exchanges whose bcrypt checks are held; return their futures once all have started."""
    futures = [pool.submit(exchange, base_url, "integration", api_key) for _ in range(count)]
    for _ in range(count):
        assert verify.started.acquire(timeout=30)
    return futures


def test_concurrent_checks_per_key_are_limited_while_other_keys_get_200(start_service, integration_key):
    verify = CountingVerify()
    service = start_service(verifier_options=dict(verify=verify))
    target, other = integration_key("acme"), integration_key("other")
    # Distinct wrong secrets: requests with the same secret share one check.
    wrong = [wrong_secret(target.api_key)[:-1] + c for c in "xyz"[:MAX_CONCURRENT_PER_KEY]]
    verify.hold()
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        held = [f for secret in wrong for f in in_flight(pool, service.base_url, secret, verify)]
        assert_refused(
            exchange(service.base_url, "integration", wrong_secret(target.api_key)),
            429,
            b"Too many attempts for this key, retry later\n",
        )
        other_request = pool.submit(exchange, service.base_url, "integration", other.api_key)
        assert verify.started.acquire(timeout=30)
        verify.release.set()
        assert other_request.result(30).status == 200
        assert [f.result(30).status for f in held] == [401] * MAX_CONCURRENT_PER_KEY


def test_beyond_the_pending_bound_a_check_is_refused_503(start_service, integration_key):
    verify = CountingVerify()
    service = start_service(verifier_options=dict(verify=verify, max_pending_verifications=1))
    first, second = integration_key("acme"), integration_key("other")
    verify.hold()
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        held = in_flight(pool, service.base_url, first.api_key, verify)
        assert_refused(
            exchange(service.base_url, "integration", second.api_key),
            503,
            b"Too many key verifications pending, retry later\n",
        )
        # Health and the JWKS answer while the check is held.
        assert request(service.base_url, "GET", "/health").status == 200
        assert request(service.base_url, "GET", "/.well-known/jwks.json").status == 200
        verify.release.set()
        assert held[0].result(30).status == 200
    assert exchange(service.base_url, "integration", second.api_key).status == 200


def test_concurrent_requests_with_one_secret_share_one_check(start_service, integration_key):
    verify, events = CountingVerify(), RecordingEvents()
    service = start_service(verifier_options=dict(verify=verify, events=events))
    key = integration_key()
    verify.hold()
    with concurrent.futures.ThreadPoolExecutor(6) as pool:
        first = in_flight(pool, service.base_url, key.api_key, verify)
        more = [pool.submit(exchange, service.base_url, "integration", key.api_key) for _ in range(4)]
        # Release only once all five missed the cache while the first check is held.
        deadline = time.monotonic() + 30
        while events.seen.count("miss") < 5:
            assert time.monotonic() < deadline, "requests did not reach the verifier"
            time.sleep(0.01)
        verify.release.set()
        assert [f.result(30).status for f in first + more] == [200] * 5
    assert verify.calls == 1


@pytest.mark.parametrize("status", ["revoked", "disabled", "Active", "ACTIVE", "", "active ", " active", "active\n"])
def test_every_status_but_exactly_active_is_refused(start_service, integration_key, db_path, status):
    verify = CountingVerify()
    service = start_service(verifier_options=dict(verify=verify))
    key = integration_key()
    set_key(db_path, key.key_id, status=status)
    response = exchange(service.base_url, "integration", key.api_key)
    assert (response.status, response.body) == (401, b"Invalid API key\n")
    assert verify.calls == 0  # refused before any bcrypt check
    set_key(db_path, key.key_id, status="active")
    assert exchange(service.base_url, "integration", key.api_key).status == 200


def test_a_store_slower_than_the_timeout_is_503_for_both_exchanges(start_service, integration_key, autojoin_key):
    service = start_service(store_timeout=0.2)
    integration, autojoin = integration_key(), autojoin_key()
    answer = threading.Event()  # the store answers only once the test is over, long past the store timeout
    slow_store = {
        "get_integration_key": lambda *args: answer.wait(30),
        "find_autojoin_org": lambda *args: answer.wait(30),
    }
    try:
        for endpoint, api_key, method in (
            ("integration", integration.api_key, "get_integration_key"),
            ("autojoin", autojoin.api_key, "find_autojoin_org"),
        ):
            original = getattr(service.key_store, method)
            setattr(service.key_store, method, slow_store[method])
            try:
                started = time.monotonic()
                response = exchange(service.base_url, endpoint, api_key)
                assert time.monotonic() - started < 10
            finally:
                setattr(service.key_store, method, original)
            assert response.status == 503
            assert response.headers["Retry-After"] == "1"
            assert response.body == b"Key store unavailable, retry later\n"
    finally:
        answer.set()


def test_an_unknown_key_is_looked_up_again_at_once(start_service, integration_key, db_path):
    # Only found records are cached: a key created a moment after a refusal works at once, whatever the ttl.
    service = start_service(key_cache_ttl=60)
    key = integration_key()
    created_later = key.api_key.replace(key.key_id, "ki_00000000000000ff")
    assert exchange(service.base_url, "integration", created_later).status == 401
    with sqlite3.connect(db_path) as conn:
        conn.execute("UPDATE integration_keys SET key_id = ? WHERE key_id = ?", ("ki_00000000000000ff", key.key_id))
    assert exchange(service.base_url, "integration", created_later).status == 200


def test_a_found_record_is_reused_within_the_ttl(start_service, integration_key, db_path):
    clock = FakeClock()
    service = start_service(key_cache_ttl=5, verifier_options=dict(clock=clock))
    key = integration_key()
    assert exchange(service.base_url, "integration", key.api_key).status == 200
    with sqlite3.connect(db_path) as conn:
        conn.execute("DELETE FROM integration_keys")
    clock.now += 4.9
    assert exchange(service.base_url, "integration", key.api_key).status == 200
    clock.now += 0.1
    assert exchange(service.base_url, "integration", key.api_key).status == 401


def test_a_throttled_key_gets_the_seconds_left_as_retry_after(start_service, integration_key):
    clock = FakeClock()
    service = start_service(verifier_options=dict(clock=clock))
    key = integration_key()
    for _ in range(MAX_FAILURES_PER_KEY):
        assert exchange(service.base_url, "integration", wrong_secret(key.api_key)).status == 401
        clock.now += 1
    response = exchange(service.base_url, "integration", wrong_secret(key.api_key))
    assert response.status == 429
    assert response.headers["Retry-After"] == "55"  # 60 s after the first failure, 5 s ago
    clock.now += 54.5
    assert exchange(service.base_url, "integration", key.api_key).headers["Retry-After"] == "1"
    clock.now += 0.5
    assert exchange(service.base_url, "integration", key.api_key).status == 200


def test_a_check_that_fails_to_run_counts_as_no_failure_and_frees_its_place(start_service, integration_key):
    class BrokenThenWorking:
        def __init__(self, broken_calls):
            self.broken_calls = broken_calls

        def __call__(self, secret, stored_hash):
            if self.broken_calls:
                self.broken_calls -= 1
                raise RuntimeError("the hashing pool broke")
            return verify_secret(secret, stored_hash)

    service = start_service(
        verifier_options=dict(verify=BrokenThenWorking(MAX_FAILURES_PER_KEY + 1), max_pending_verifications=1)
    )
    key = integration_key()
    for _ in range(MAX_FAILURES_PER_KEY + 1):
        assert exchange(service.base_url, "integration", key.api_key).status == 500
    # Neither throttled (429) nor refused for a pending bound still held by the broken checks (503).
    assert exchange(service.base_url, "integration", key.api_key).status == 200
