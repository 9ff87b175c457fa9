"""The HTTP server: Tornado's, counting each request in flight from its headers on.

Shutdown waits for the requests in flight (inflight.RequestsInFlight). A
handler may be made only once a request's body has been read, so the
server counts the request from its headers on: one whose body is still
arriving when shutdown begins is waited for too.
"""

import tornado.httpserver
from tornado.httputil import HTTPMessageDelegate
from tornado.iostream import IOStream


class ServiceHTTPServer(tornado.httpserver.HTTPServer):
    """ServiceHTTPServer(app, in_flight=RequestsInFlight, other HTTPServer options)."""

    # HTTPServer is configured through initialize() (tornado.util.Configurable): in_flight is ours, the rest
    # Tornado's own options.
    def initialize(self, request_callback, *, in_flight, **kwargs):  # type: ignore[override]
        super().initialize(request_callback, **kwargs)
        self._in_flight = in_flight
        self._listening = []

    def add_sockets(self, sockets):
        self._listening = list(sockets)
        super().add_sockets(sockets)

    def stop(self):
        """Stop listening. Connections the kernel has already queued are taken in first: closing the
        socket would reset them, and their clients may have sent a request already."""
        for sock in self._listening:
            while True:
                try:
                    connection, address = sock.accept()
                except OSError:  # none left (EAGAIN), or no descriptor for one: nothing more to take
                    break
                stream = IOStream(
                    connection, max_buffer_size=self.max_buffer_size, read_chunk_size=self.read_chunk_size
                )
                self.handle_stream(stream, address)
        super().stop()

    def start_request(self, server_conn, request_conn):
        return CountedRequest(super().start_request(server_conn, request_conn), request_conn, self._in_flight)

    def stop_keep_alive(self):
        """Answer every request read from now on with "Connection: close", as Go's Shutdown does."""
        self.conn_params.no_keep_alive = True


class CountedRequest(HTTPMessageDelegate):
    """Wraps the delegate Tornado reads one request into, as Tornado's own xheaders adapter does.

    The request is in flight from its headers on; its handler (handlers.base.BaseHandler), made as the
    headers or the body are done, says when it has answered. A request that never gets a handler ends
    with its connection.
    """

    def __init__(self, delegate, request_conn, in_flight):
        self._delegate = delegate
        self._request_conn = request_conn
        self._in_flight = in_flight
        self._listening = []

    def headers_received(self, start_line, headers):
        self._in_flight.started(self._request_conn)
        return self._delegate.headers_received(start_line, headers)

    def data_received(self, chunk):
        return self._delegate.data_received(chunk)

    def finish(self):
        self._delegate.finish()

    def on_connection_close(self):
        try:
            self._delegate.on_connection_close()
        finally:
            self._in_flight.finished(self._request_conn)
