"""/ready: 200 while the key store answers, 503 when it fails or is too slow."""

import threading

from tests.httpclient import request
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
