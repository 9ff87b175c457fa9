"""Requests in flight (web/inflight.py), which shutdown waits on: each request counted once however it ends."""

import json
import logging
import socket
import urllib.parse

from tests.httpclient import exchange, request


def test_requests_in_flight_are_counted_once_however_they_end(start_service, integration_key, caplog):
    # A refused method and an oversized body end with the connection closing after the answer:
    # each request must leave the in-flight count (which shutdown waits on) exactly once.
    caplog.set_level(logging.INFO)
    key = integration_key()
    service = start_service()
    assert request(service.base_url, "GET", "/v0/token/integration").status == 405
    assert (
        request(
            service.base_url, "POST", "/v0/token/autojoin", "{}", {"Content-Length": str(1 << 20)}, timeout=5
        ).status
        == 413
    )
    assert exchange(service.base_url, "integration", key.api_key).status == 200
    assert request(service.base_url, "GET", "/health").status == 200
    assert request(service.base_url, "GET", "/nowhere").status == 404
    body = json.dumps({"api_key": key.api_key}).encode()
    # Counted from the headers on: a body that never comes in full, a chunked one, a malformed request.
    assert (
        raw_exchange(service.base_url, b"Content-Length: %d\r\n\r\n%s" % (len(body), body[:10]), stop_sending=True)
        == b""
    )
    chunked = b"Transfer-Encoding: chunked\r\n\r\n%x\r\n%s\r\n0\r\n\r\n" % (len(body), body)
    assert raw_exchange(service.base_url, chunked).startswith(b"HTTP/1.1 200 ")
    assert raw_exchange(service.base_url, b"Content-Length: x\r\n\r\n").startswith(b"HTTP/1.1 400 ")
    service.settle()
    assert service.in_flight.count == 0
    assert [r for r in caplog.records if r.levelno >= logging.ERROR] == []


def raw_exchange(base_url, rest, stop_sending=False, timeout=5):
    """POST /v0/token/integration with the header lines and body in rest; what comes back until the service
    closes the connection (b"" when it closes without an answer). stop_sending: shut this side's sending
    down after rest (Tornado then drops the connection)."""
    url = urllib.parse.urlsplit(base_url)
    with socket.create_connection((url.hostname, url.port), timeout=timeout) as conn:
        conn.sendall(b"POST /v0/token/integration HTTP/1.1\r\nHost: x\r\nConnection: close\r\n" + rest)
        if stop_sending:
            conn.shutdown(socket.SHUT_WR)
        received = b""
        while chunk := conn.recv(65536):
            received += chunk
        return received
