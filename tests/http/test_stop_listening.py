"""Stopping the server (web/connections.ServiceHTTPServer.stop): connections already queued are answered."""

import http.client
import socket
import threading


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
