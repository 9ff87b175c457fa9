"""The HTTP server's connections, over real sockets: idle ones are closed, busy ones kept, and every answer
carries a current Date and no Server header."""

import concurrent.futures
import datetime
import email.utils
import http.client
import json
import socket
import time

from tests.httpclient import request
from tests.support import CountingVerify
from tests.zipapp_service import settled
from token_exchange.web.connections import BODY_TIMEOUT_SECONDS

IDLE_TIMEOUT = 0.5


def wait_for_close(conn):
    """Seconds until the service closes conn, which must receive nothing meanwhile; a little more than
    the service counts, which may start its count before this does."""
    started = time.monotonic()
    conn.settimeout(20)
    assert conn.recv(1) == b""
    return time.monotonic() - started + 0.05


def post_exchange(conn, api_key):
    conn.request(
        "POST", "/v0/token/integration", json.dumps({"api_key": api_key}), {"Content-Type": "application/json"}
    )
    response = conn.getresponse()
    response.read()
    return response.status


def test_a_connection_that_sends_nothing_is_closed_after_the_idle_timeout(start_service):
    service = start_service(server_options=dict(idle_connection_timeout=IDLE_TIMEOUT))
    with socket.create_connection(("127.0.0.1", service.port)) as conn:
        assert IDLE_TIMEOUT <= wait_for_close(conn) < 10


def test_headers_that_never_end_are_cut_off_after_the_idle_timeout(start_service):
    service = start_service(server_options=dict(idle_connection_timeout=IDLE_TIMEOUT))
    with socket.create_connection(("127.0.0.1", service.port)) as conn:
        conn.sendall(b"POST /v0/token/integration HTTP/1.1\r\nHost: x\r\n")
        assert IDLE_TIMEOUT <= wait_for_close(conn) < 10


def test_a_body_that_stops_arriving_is_cut_off_after_the_body_timeout(start_service):
    service = start_service(server_options=dict(body_timeout=IDLE_TIMEOUT))
    with socket.create_connection(("127.0.0.1", service.port)) as conn:
        conn.sendall(b'POST /v0/token/integration HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{"a')
        assert IDLE_TIMEOUT <= wait_for_close(conn) < 10
    assert settled(lambda: service.in_flight.count, 0) == 0  # the cut request no longer holds shutdown back


def test_the_body_timeout_is_half_a_minute_by_default(start_service):
    assert start_service().server.conn_params.body_timeout == BODY_TIMEOUT_SECONDS == 30.0


def test_a_kept_alive_connection_is_closed_once_idle_for_the_timeout(start_service, integration_key):
    service = start_service(server_options=dict(idle_connection_timeout=IDLE_TIMEOUT))
    key = integration_key()
    conn = http.client.HTTPConnection("127.0.0.1", service.port, timeout=20)
    try:
        assert post_exchange(conn, key.api_key) == 200
        assert IDLE_TIMEOUT <= wait_for_close(conn.sock) < 10
    finally:
        conn.close()


def test_a_connection_in_use_stays_open_well_past_the_timeout(start_service, integration_key):
    service = start_service(server_options=dict(idle_connection_timeout=1.0))
    key = integration_key()
    conn = http.client.HTTPConnection("127.0.0.1", service.port, timeout=20)
    try:
        assert post_exchange(conn, key.api_key) == 200
        sock = conn.sock
        deadline = time.monotonic() + 3.0
        while time.monotonic() < deadline:
            time.sleep(0.1)
            assert post_exchange(conn, key.api_key) == 200
        assert conn.sock is sock  # the same connection throughout: never closed, never reopened
    finally:
        conn.close()


def test_a_request_answered_slower_than_the_timeout_is_not_cut(start_service, integration_key):
    verify = CountingVerify()
    service = start_service(server_options=dict(idle_connection_timeout=0.2), verifier_options=dict(verify=verify))
    key = integration_key()
    verify.hold()
    conn = http.client.HTTPConnection("127.0.0.1", service.port, timeout=20)
    try:
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            answer = pool.submit(post_exchange, conn, key.api_key)
            assert verify.started.acquire(timeout=30)
            time.sleep(1.0)  # five timeouts pass while the request is busy
            verify.release.set()
            assert answer.result(30) == 200
    finally:
        conn.close()


def test_answers_carry_the_current_date_and_no_server_header(service):
    for method, path in (
        ("GET", "/health"),
        ("GET", "/.well-known/jwks.json"),
        ("POST", "/v0/token/integration"),
        ("GET", "/nowhere"),
    ):
        before = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)
        response = request(service.base_url, method, path, "{}" if method == "POST" else None)
        after = datetime.datetime.now(datetime.timezone.utc)
        assert before <= email.utils.parsedate_to_datetime(response.headers["Date"]) <= after
        assert response.headers["Date"].endswith(" GMT")
        assert "Server" not in response.headers
