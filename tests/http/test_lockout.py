"""A flood of wrong secrets at a key id must not lock its holder out: the limits on bcrypt checks count each
client apart (verification/admission.py), a client being the peer or, behind trusted proxies, what
X-Forwarded-For says (web/clientaddr.py). Over real sockets against the real app; the attacker's requests come
from another loopback address (Linux routes all of 127/8 to lo).

Every service here is fresh, and most keep nothing in their verification cache, so that each of the holder's
exchanges needs a bcrypt check, as in a process that has never seen the holder's secret. The clock is frozen:
the attacker's failures stay within the window whatever the machine's speed.
"""

import concurrent.futures
import threading

import pytest

from tests.http.test_verifier import assert_refused, wrong_secret
from tests.httpclient import exchange
from tests.support import FakeClock
from token_exchange.verification.admission import MAX_CONCURRENT_PER_KEY, MAX_FAILURES_PER_KEY
from token_exchange.verification.secrethash import verify_secret
from token_exchange.verification.verifycache import VerificationCache

HOLDER = ("127.0.0.1", 0)
ATTACKER = ("127.0.0.2", 0)
THROTTLED = b"Too many attempts for this key, retry later\n"
HOLDER_TRIES = 40


def nth_wrong_secret(api_key, n):
    """A distinct wrong secret for each n: requests with one secret would share a single check."""
    prefix, secret = wrong_secret(api_key).rsplit(".", 1)
    return f"{prefix}.{secret[:-8]}{n:08d}"


def start_fresh(start_service, cache=None, **options):
    """A fresh service with a frozen clock whose verification cache keeps nothing (or cache); options go to
    KeyVerifier, but trusted_proxies to the app."""
    app_options = {"trusted_proxies": options.pop("trusted_proxies", 0)}
    verifier_options = dict(clock=FakeClock(), verification_cache=VerificationCache(0) if cache is None else cache)
    return start_service(verifier_options={**verifier_options, **options}, **app_options)


def exhaust_budget(service, api_key, headers=(), source_address=ATTACKER):
    """Fail as many times as one client may at api_key's key id, then see that client throttled (429)."""
    for n in range(MAX_FAILURES_PER_KEY):
        response = exchange(service.base_url, "integration", nth_wrong_secret(api_key, n), headers, source_address)
        assert response.status == 401
    response = exchange(service.base_url, "integration", nth_wrong_secret(api_key, 99), headers, source_address)
    assert_refused(response, 429, THROTTLED)


class Flood:
    """Wrong secrets at one key id from the attacker's address, from threads, until stopped."""

    def __init__(self, service, api_key, threads=3):
        self.statuses = []
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._pool = concurrent.futures.ThreadPoolExecutor(threads)
        self._futures = [self._pool.submit(self._run, service, api_key, t) for t in range(threads)]

    def _run(self, service, api_key, thread):
        n = 1000 * (thread + 1)
        while not self._stop.is_set():
            n += 1
            status = exchange(service.base_url, "integration", nth_wrong_secret(api_key, n), (), ATTACKER).status
            with self._lock:
                self.statuses.append(status)

    def stop(self):
        self._stop.set()
        for future in self._futures:
            future.result(30)
        self._pool.shutdown()
        return self.statuses


@pytest.mark.parametrize("cache", ["none", "default"])
def test_the_holder_gets_every_token_while_another_address_floods_its_key_id(start_service, integration_key, cache):
    # On a fresh process the holder's secret is in no cache; with "none" it never will be.
    service = start_fresh(start_service, cache=VerificationCache() if cache == "default" else None)
    key = integration_key()
    exhaust_budget(service, key.api_key)
    flood = Flood(service, key.api_key)
    try:
        holder = []
        for n in range(HOLDER_TRIES):
            # One flood request of our own between the holder's, besides the flood's threads.
            attack = exchange(service.base_url, "integration", nth_wrong_secret(key.api_key, n), (), ATTACKER)
            assert attack.status == 429
            holder.append(exchange(service.base_url, "integration", key.api_key, (), HOLDER).status)
    finally:
        statuses = flood.stop()
    assert holder == [200] * HOLDER_TRIES
    assert statuses and set(statuses) == {429}


class WrongSecretsHeld:
    """verify_secret that holds the checks of wrong secrets until released; right secrets pass at once."""

    def __init__(self):
        self.held = threading.Semaphore(0)
        self.release = threading.Event()

    def __call__(self, secret, stored_hash):
        matched = verify_secret(secret, stored_hash)
        if not matched:
            self.held.release()
            assert self.release.wait(30)
        return matched


def test_the_floods_checks_in_flight_leave_the_holder_a_check_of_its_own(start_service, integration_key):
    verify = WrongSecretsHeld()
    service = start_fresh(start_service, verify=verify)
    key = integration_key()
    with concurrent.futures.ThreadPoolExecutor(MAX_CONCURRENT_PER_KEY) as pool:
        held = [
            pool.submit(exchange, service.base_url, "integration", nth_wrong_secret(key.api_key, n), (), ATTACKER)
            for n in range(MAX_CONCURRENT_PER_KEY)
        ]
        try:
            for _ in held:
                assert verify.held.acquire(timeout=30)
            # The attacker's address has its checks running: one more from it is refused ...
            response = exchange(service.base_url, "integration", nth_wrong_secret(key.api_key, 99), (), ATTACKER)
            assert_refused(response, 429, THROTTLED)
            # ... while the holder's checks start and finish beside them.
            for _ in range(3):
                assert exchange(service.base_url, "integration", key.api_key, (), HOLDER).status == 200
        finally:
            verify.release.set()
        assert [f.result(30).status for f in held] == [401] * MAX_CONCURRENT_PER_KEY


def test_one_address_holds_at_most_half_the_pending_checks(start_service, integration_key):
    verify = WrongSecretsHeld()
    # A bound of 2 pending checks: one address may hold 1.
    service = start_fresh(start_service, verify=verify, max_pending_verifications=2)
    first, second = integration_key("acme"), integration_key("other")
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        held = pool.submit(exchange, service.base_url, "integration", wrong_secret(first.api_key), (), ATTACKER)
        try:
            assert verify.held.acquire(timeout=30)
            response = exchange(service.base_url, "integration", wrong_secret(second.api_key), (), ATTACKER)
            assert_refused(response, 503, b"Too many key verifications pending, retry later\n")
            assert exchange(service.base_url, "integration", second.api_key, (), HOLDER).status == 200
        finally:
            verify.release.set()
        assert held.result(30).status == 401


def xff(value):
    return [("X-Forwarded-For", value)]


def test_behind_a_trusted_proxy_x_forwarded_for_tells_clients_apart(start_service, integration_key):
    # Every request comes from 127.0.0.1, as through one proxy that appends the address it saw.
    service = start_fresh(start_service, trusted_proxies=1)
    key = integration_key()
    base = service.base_url
    exhaust_budget(service, key.api_key, xff("198.51.100.7"), HOLDER)
    for _ in range(5):
        assert exchange(base, "integration", key.api_key, xff("198.51.100.8"), HOLDER).status == 200
    # What the attacker writes to the left of what the proxy appends changes nothing: still throttled, however
    # the header is split among several.
    for headers in (
        xff("203.0.113.1, 198.51.100.7"),
        xff("198.51.100.8,198.51.100.7"),
        [("X-Forwarded-For", "198.51.100.8"), ("X-Forwarded-For", "198.51.100.7")],
        xff("garbage, 198.51.100.7:4711"),
    ):
        response = exchange(base, "integration", nth_wrong_secret(key.api_key, 50), headers, HOLDER)
        assert_refused(response, 429, THROTTLED)
    # A request without the header, or whose last entry is no address, counts as the proxy (the peer): not as
    # the attacker, and all of them as one client.
    unusable = ("garbage", "198.51.100.7, ", "[2001:db8::1", "\u0663.0.0.1".encode(), b"\xff198.51.100.7")
    for value in unusable:
        assert exchange(base, "integration", key.api_key, xff(value), HOLDER).status == 200
    exhaust_budget(service, key.api_key, (), HOLDER)
    for value in unusable:
        assert_refused(exchange(base, "integration", key.api_key, xff(value), HOLDER), 429, THROTTLED)
    assert exchange(base, "integration", key.api_key, xff("198.51.100.8"), HOLDER).status == 200


def test_behind_a_trusted_proxy_an_ipv6_client_counts_as_its_64(start_service, integration_key):
    service = start_fresh(start_service, trusted_proxies=1)
    key = integration_key()
    exhaust_budget(service, key.api_key, xff("2001:db8:1:2::7"), HOLDER)
    # Another address of the same /64 is the same client ...
    for address in ("2001:db8:1:2::8", "[2001:db8:1:2:ffff::1]:443"):
        response = exchange(service.base_url, "integration", key.api_key, xff(address), HOLDER)
        assert_refused(response, 429, THROTTLED)
    # ... and one of the next /64 another.
    response = exchange(service.base_url, "integration", key.api_key, xff("2001:db8:1:3::7"), HOLDER)
    assert response.status == 200


def test_behind_two_trusted_proxies_the_second_entry_from_the_right_is_the_client(start_service, integration_key):
    service = start_fresh(start_service, trusted_proxies=2)
    key = integration_key()
    exhaust_budget(service, key.api_key, xff("198.51.100.7, 10.0.0.2"), HOLDER)
    response = exchange(service.base_url, "integration", key.api_key, xff("1.2.3.4, 198.51.100.7, 10.0.0.3"), HOLDER)
    assert_refused(response, 429, THROTTLED)
    assert exchange(service.base_url, "integration", key.api_key, xff("198.51.100.8, 10.0.0.2"), HOLDER).status == 200


def test_without_trusted_proxies_x_forwarded_for_is_ignored(start_service, integration_key):
    service = start_fresh(start_service)  # -trusted-proxies 0
    key = integration_key()
    base = service.base_url
    # A new X-Forwarded-For on every request does not give the attacker a new budget ...
    for n in range(MAX_FAILURES_PER_KEY):
        response = exchange(base, "integration", nth_wrong_secret(key.api_key, n), xff(f"198.51.100.{n}"), ATTACKER)
        assert response.status == 401
    for value in ("198.51.100.99", "127.0.0.1", "198.51.100.99, 127.0.0.3"):
        response = exchange(base, "integration", nth_wrong_secret(key.api_key, 99), xff(value), ATTACKER)
        assert_refused(response, 429, THROTTLED)
    # ... and naming the attacker's address in it does not put the holder in the attacker's place.
    assert exchange(base, "integration", key.api_key, xff("127.0.0.2"), HOLDER).status == 200
    assert exchange(base, "integration", key.api_key, (), HOLDER).status == 200
