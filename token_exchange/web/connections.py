"""The HTTP server: Tornado's, counting each request in flight from its headers on.

It listens through accepting.Acceptor, which holds on when file descriptors
run out, and keeps the open connections in the order of their last request,
so that the ones idle longest can be closed to make room.

Shutdown waits for the requests in flight (inflight.RequestsInFlight). A
handler may be made only once a request's body has been read, so the
server counts the request from its headers on: one whose body is still
arriving when shutdown begins is waited for too.
"""

import collections

import tornado.httpserver
from tornado.httputil import HTTPMessageDelegate
from tornado.iostream import IOStream

from token_exchange.web.accepting import Acceptor
from token_exchange.web.stream import ServiceIOStream

# Closed at most per failed accept when descriptors run out, as nginx closes reusable connections:
# enough to let a burst of new connections in, few enough that busy clients keep theirs.
SHED_PER_FAILED_ACCEPT = 32


class ServiceHTTPServer(tornado.httpserver.HTTPServer):
    """ServiceHTTPServer(app, in_flight=RequestsInFlight, accept_events=AcceptEvents or None, other HTTPServer
    options)."""

    # HTTPServer is configured through initialize() (tornado.util.Configurable): in_flight and accept_events are
    # ours, the rest Tornado's own options.
    def initialize(self, request_callback, *, in_flight, accept_events=None, **kwargs):  # type: ignore[override]
        super().initialize(request_callback, **kwargs)
        self._in_flight = in_flight
        self._acceptor = Acceptor(self._accepted, self._close_idle_connections, accept_events)
        # Each open connection's stream and the last request read on it (None before the first), the
        # connection whose last request started longest ago first.
        self._activity: collections.OrderedDict = collections.OrderedDict()

    def add_sockets(self, sockets):
        """Listen on the bound sockets (accepting.Acceptor, not Tornado's accept handler)."""
        self._acceptor.listen(sockets)

    def stop(self):
        """Stop listening; connections already queued are taken in and answered."""
        self._acceptor.close()

    def _accepted(self, connection, address):
        stream = ServiceIOStream(connection, max_buffer_size=self.max_buffer_size, read_chunk_size=self.read_chunk_size)
        self._activity[stream] = None
        self.handle_stream(stream, address)

    def on_close(self, server_conn):
        self._activity.pop(server_conn.stream, None)
        super().on_close(server_conn)

    def _close_idle_connections(self):
        """Close the connections with no request in flight whose last request is oldest; how many."""
        idle: list[IOStream] = []
        for stream, request_conn in self._activity.items():
            if len(idle) == SHED_PER_FAILED_ACCEPT:
                break
            if request_conn is None or request_conn not in self._in_flight:
                idle.append(stream)
        for stream in idle:
            stream.close()  # its descriptor is free at once; the connection's own close follows
        return len(idle)

    def start_request(self, server_conn, request_conn):
        self._activity[server_conn.stream] = request_conn
        self._activity.move_to_end(server_conn.stream)
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
