"""Stopping the server (web/connections.ServiceHTTPServer.stop): connections already queued are answered."""

import http.client
import json
import socket
import threading

from tests.httpclient import send_headers_awaiting_body


def test_connections_queued_when_the_server_stops_are_answered_not_reset(service):
    # The loop is held while clients connect and send: their connections wait in the kernel's queue,
    # then the server stops listening. Closing the socket alone would reset them.
    held, release = threading.Event(), threading.Event()

    def hold_then_stop():
        held.set()
        release.wait(10)
        service.server.stop()

    service.loop.call_soon_threadsafe(hold_then_stop)
    assert held.wait(10)
    clients = [socket.create_connection(("127.0.0.1", service.port), timeout=10) for _ in range(3)]
    try:
        for client in clients:
            client.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        release.set()
        for client in clients:
            answer = http.client.HTTPResponse(client)
            answer.begin()
            assert (answer.status, answer.read()) == (200, b"ok")
    finally:
        for client in clients:
            client.close()
    # Nothing listens any more.
    try:
        socket.create_connection(("127.0.0.1", service.port), timeout=10).close()
    except ConnectionRefusedError:
        pass
    else:
        raise AssertionError("the server still listens after stop()")


def test_closing_idle_connections_spares_a_request_in_flight(service, integration_key):
    key = integration_key()
    body = json.dumps({"api_key": key.api_key}).encode()
    idle = []
    for _ in range(3):
        conn = http.client.HTTPConnection("127.0.0.1", service.port, timeout=10)
        conn.request("GET", "/health")
        assert conn.getresponse().read() == b"ok"
        idle.append(conn)
    busy = socket.create_connection(("127.0.0.1", service.port), timeout=10)
    try:
        # Headers now, the body later: in flight from its headers on, once the service says it read them.
        assert send_headers_awaiting_body(busy, len(body)) == b"HTTP/1.1 100 (Continue)\r\n\r\n"
        closed = threading.Event()

        def close_idle():
            service.server.close_idle_connections()
            closed.set()

        service.loop.call_soon_threadsafe(close_idle)
        assert closed.wait(10)
        for conn in idle:
            assert conn.sock.recv(1) == b""  # closed by the service
        busy.sendall(body)
        answer = http.client.HTTPResponse(busy)
        answer.begin()
        assert answer.status == 200
        assert "token" in json.loads(answer.read())
    finally:
        busy.close()
        for conn in idle:
            conn.close()
