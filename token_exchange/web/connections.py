"""The HTTP server: Tornado's, counting each request in flight from its headers on.

Shutdown waits for the requests in flight (inflight.RequestsInFlight). A
handler is made only once a request's body has been read, so the server
counts the request from its headers until then: one whose body is still
arriving when shutdown begins is waited for too, as Go's Shutdown waits
for a connection that has started a request.
"""

import tornado.httpserver
from tornado.httputil import HTTPMessageDelegate


class ServiceHTTPServer(tornado.httpserver.HTTPServer):
    """ServiceHTTPServer(app, in_flight=RequestsInFlight, other HTTPServer options)."""

    # HTTPServer is configured through initialize() (tornado.util.Configurable): in_flight is ours, the rest
    # Tornado's own options.
    def initialize(self, request_callback, *, in_flight, **kwargs):  # type: ignore[override]
        super().initialize(request_callback, **kwargs)
        self._in_flight = in_flight

    def start_request(self, server_conn, request_conn):
        return CountedRequest(super().start_request(server_conn, request_conn), self._in_flight)

    def stop_keep_alive(self):
        """Answer every request read from now on with "Connection: close", as Go's Shutdown does."""
        self.conn_params.no_keep_alive = True


class CountedRequest(HTTPMessageDelegate):
    """Wraps the delegate Tornado reads one request into, as Tornado's own xheaders adapter does.

    From the headers until the body has been read, or the connection closed first, the request counts
    as in flight; its handler, made as the body is done, counts it on (handlers.base.BaseHandler).
    """

    def __init__(self, delegate, in_flight):
        self._delegate = delegate
        self._in_flight = in_flight
        self._reading = False

    def headers_received(self, start_line, headers):
        self._in_flight.started()
        self._reading = True
        return self._delegate.headers_received(start_line, headers)

    def data_received(self, chunk):
        return self._delegate.data_received(chunk)

    def finish(self):
        try:
            self._delegate.finish()  # makes the handler, which counts the request from there
        finally:
            self._done_reading()

    def on_connection_close(self):
        try:
            self._delegate.on_connection_close()
        finally:
            self._done_reading()

    def _done_reading(self):
        if self._reading:
            self._reading = False
            self._in_flight.finished()
