"""/ready: 200 while the key store answers, 503 when it fails or is too slow."""

import threading

from tests.httpclient import exchange, request
from token_exchange.store import StoreUnavailable


def test_ready_answers_200_when_the_store_answers(service):
    response = request(service.base_url, "GET", "/ready")
    assert (response.status, response.body) == (200, b"ready")
    assert request(service.base_url, "POST", "/ready").status == 405


def test_ready_answers_503_when_the_store_fails(service, monkeypatch):
    def unavailable():
        raise StoreUnavailable("sqlite read failed: test")

    monkeypatch.setattr(service.key_store, "check", unavailable)
    response = request(service.base_url, "GET", "/ready")
    assert response.status == 503
    assert response.body == b"Key store unavailable, retry later\n"
    assert response.headers["Content-Type"] == "text/plain; charset=utf-8"
    assert response.headers["Retry-After"] == "1"
    assert request(service.base_url, "GET", "/health").body == b"ok"  # /health says nothing about the store


def test_ready_answers_503_when_the_store_is_too_slow(start_service, monkeypatch):
    service = start_service(store_timeout=0.2)
    answer = threading.Event()  # the check answers only once the test is over, long past the store timeout
    monkeypatch.setattr(service.key_store, "check", lambda: answer.wait(30))
    try:
        response = request(service.base_url, "GET", "/ready")
    finally:
        answer.set()
    assert response.status == 503
    assert response.body == b"Key store unavailable, retry later\n"


def test_ready_answers_503_when_the_sqlite_files_are_corrupted(service, db_path, integration_key):
    key = integration_key()
    assert exchange(service.base_url, "integration", key.api_key).status == 200
    assert request(service.base_url, "GET", "/ready").status == 200
    for suffix in ("-wal", "-shm"):  # overwritten in place, as the service has them open
        path = db_path.with_name(db_path.name + suffix)
        path.write_bytes(b"\x5a" * path.stat().st_size)

    response = exchange(service.base_url, "integration", key.api_key)
    assert (response.status, response.body) == (503, b"Key store unavailable, retry later\n")
    # /ready reads what an exchange reads, so it says the same.
    response = request(service.base_url, "GET", "/ready")
    assert (response.status, response.body) == (503, b"Key store unavailable, retry later\n")
