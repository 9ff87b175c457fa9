"""The HTTP server's connections, over real sockets: idle ones are closed, busy ones kept, Nagle stays off,
and every answer carries a current Date and no Server header."""

import concurrent.futures
import datetime
import email.utils
import http.client
import json
import socket
import time

from tests.httpclient import request
from tests.test_verification import CountingVerify
from token_exchange.web.handlers.base import HTTPDate
from token_exchange.web.connections import IdleConnections
from tornado.httputil import format_timestamp

IDLE_TIMEOUT = 0.5


def wait_for_close(conn):
    """Seconds until the service closes conn, which must receive nothing meanwhile; a little more than
    the service counts, which may start its count before this does."""
    started = time.monotonic()
    conn.settimeout(20)
    assert conn.recv(1) == b""
    return time.monotonic() - started + 0.05


def on_service_loop(service, fn):
    """fn() run on the service's event loop; its result."""
    result = concurrent.futures.Future()
    service.loop.call_soon_threadsafe(lambda: result.set_result(fn()))
    return result.result(10)


def post_exchange(conn, api_key):
    conn.request("POST", "/v0/token/integration", json.dumps({"api_key": api_key}),
                 {"Content-Type": "application/json"})
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


def test_a_kept_alive_connection_is_closed_once_idle_for_the_timeout(start_service, integration_key):
    service = start_service(server_options=dict(idle_connection_timeout=IDLE_TIMEOUT))
    key = integration_key()
    conn = http.client.HTTPConnection("127.0.0.1", service.port, timeout=20)
    try:
        assert post_exchange(conn, key.api_key) == 200
        assert IDLE_TIMEOUT <= wait_for_close(conn.sock) < 10
    finally:
        conn.close()


def test_no_idle_timeout_given_means_the_default_hour(start_service):
    for timeout in (None, 0):  # as for Tornado's HTTPServer
        service = start_service(server_options=dict(idle_connection_timeout=timeout))
        assert request(service.base_url, "GET", "/health").status == 200
        assert on_service_loop(service, lambda: service.server._idle.timeout) == 3600


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
    service = start_service(server_options=dict(idle_connection_timeout=0.2),
                            verifier_options=dict(verify=verify))
    key = integration_key()
    verify.hold()
    conn = http.client.HTTPConnection("127.0.0.1", service.port, timeout=20)
    try:
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            answer = pool.submit(post_exchange, conn, key.api_key)
            assert verify.started.acquire(timeout=30)
            time.sleep(1.0)  # five timeouts: several sweeps pass while the request is busy
            verify.release.set()
            assert answer.result(30) == 200
    finally:
        conn.close()


def test_nagle_stays_off_on_a_connection_across_requests(service, integration_key):
    key = integration_key()
    conn = http.client.HTTPConnection("127.0.0.1", service.port, timeout=20)
    try:
        for _ in range(2):
            assert post_exchange(conn, key.api_key) == 200
        options = on_service_loop(service, lambda: [
            c.stream.socket.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) for c in service.server._connections])
        assert options and all(options)
    finally:
        conn.close()


def test_answers_carry_the_current_date_and_no_server_header(service):
    for method, path in (("GET", "/health"), ("GET", "/.well-known/jwks.json"), ("POST", "/v0/token/integration"),
                         ("GET", "/nowhere")):
        before = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)
        response = request(service.base_url, method, path, "{}" if method == "POST" else None)
        after = datetime.datetime.now(datetime.timezone.utc)
        assert before <= email.utils.parsedate_to_datetime(response.headers["Date"]) <= after
        assert response.headers["Date"].endswith(" GMT")
        assert "Server" not in response.headers


def test_the_date_is_formatted_once_a_second():
    clock = iter([100.0, 100.2, 100.999, 101.0, 101.5]).__next__
    date = HTTPDate(clock)
    first = date()
    assert first == format_timestamp(100) and date() is first and date() is first
    assert date() == format_timestamp(101) == "Thu, 01 Jan 1970 00:01:41 GMT"
    assert date() == format_timestamp(101)


class Closable:
    def __init__(self):
        self.stream = self
        self.closed = False

    def close(self):
        self.closed = True


def test_a_sweep_closes_only_connections_waiting_longer_than_the_timeout():
    now = [0.0]
    idle = IdleConnections(60, clock=lambda: now[0])
    assert idle.sweep_interval == 6
    old, fresh, busy = Closable(), Closable(), Closable()
    idle.waiting(old)
    idle.waiting(busy)
    now[0] = 30
    idle.waiting(fresh)
    idle.busy(busy)  # its request's headers arrived
    now[0] = 60
    idle.sweep()
    assert (old.closed, fresh.closed, busy.closed) == (True, False, False)
    now[0] = 89.9
    idle.sweep()
    assert not fresh.closed
    now[0] = 90
    idle.sweep()
    assert fresh.closed
    assert IdleConnections(3600).sweep_interval == 60
