"""The HTTP server: Tornado's, counting each request in flight from its headers on.

It listens through accepting.Acceptor, which holds on when file descriptors
run out, and keeps the open connections in the order of their last request,
so that the kept-alive ones idle longest can be closed to make room.

Shutdown waits for the requests in flight (inflight.RequestsInFlight). A
handler may be made only once a request's body has been read, so the
server counts the request from its headers on: one whose body is still
arriving when shutdown begins is waited for too.
"""

import collections
import time

import tornado.httpserver
from tornado.httputil import HTTPMessageDelegate
from tornado.iostream import IOStream

from token_exchange.web.accepting import Acceptor
from token_exchange.web.stream import ServiceIOStream

# Closed at most per failed accept when descriptors run out, as nginx closes reusable connections:
# enough to let a burst of new connections in, few enough that busy clients keep theirs.
SHED_PER_FAILED_ACCEPT = 32
# A connection that has sent no request yet is shed only once it has been silent this long: under a flood
# of new connections, a client that has just connected has not had its turn to send.
FIRST_REQUEST_GRACE_SECONDS = 10.0
# A request body still arriving after this long is cut off with its connection: a token request's body is a
# few hundred bytes, and one left unfinished would hold its descriptor, and delay shutdown, for ever.
BODY_TIMEOUT_SECONDS = 30.0


class ServiceHTTPServer(tornado.httpserver.HTTPServer):
    """ServiceHTTPServer(app, in_flight=RequestsInFlight, accept_events=AcceptEvents or None, other HTTPServer
    options)."""

    # HTTPServer is configured through initialize() (tornado.util.Configurable): in_flight and accept_events are
    # ours, the rest Tornado's own options.
    def initialize(self, request_callback, *, in_flight, accept_events=None, **kwargs):  # type: ignore[override]
        kwargs.setdefault("body_timeout", BODY_TIMEOUT_SECONDS)
        super().initialize(request_callback, **kwargs)
        self._in_flight = in_flight
        self._acceptor = Acceptor(self._accepted, self._close_idle_connections, accept_events)
        # The streams of connections that have sent a request, and the last request read on each, the one
        # whose last request started longest ago first; and of those that have not, with when they came.
        self._activity: collections.OrderedDict = collections.OrderedDict()
        self._fresh: collections.OrderedDict = collections.OrderedDict()

    def add_sockets(self, sockets):
        """Listen on the bound sockets (accepting.Acceptor, not Tornado's accept handler)."""
        self._acceptor.listen(sockets)

    def stop(self):
        """Stop listening; connections already queued are taken in and answered."""
        self._acceptor.close()

    def _accepted(self, connection, address):
        stream = ServiceIOStream(connection, max_buffer_size=self.max_buffer_size, read_chunk_size=self.read_chunk_size)
        self._fresh[stream] = time.monotonic()
        self.handle_stream(stream, address)

    def on_close(self, server_conn):
        self._activity.pop(server_conn.stream, None)
        self._fresh.pop(server_conn.stream, None)
        super().on_close(server_conn)

    def _close_idle_connections(self):
        """Make room: close up to SHED_PER_FAILED_ACCEPT connections with no request in flight, the kept-alive
        ones whose last request is oldest first, then those silent for FIRST_REQUEST_GRACE_SECONDS since they
        came; how many."""
        idle = self._idle_streams(SHED_PER_FAILED_ACCEPT, time.monotonic() - FIRST_REQUEST_GRACE_SECONDS)
        for stream in idle:
            stream.close()  # its descriptor is free at once; the connection's own close follows
        return len(idle)

    def close_idle_connections(self):
        """Shutdown, once the linger is over: close every connection with no request in flight in one pass.
        Closed one by one with a loop turn in between, as close_all_connections() does, each of the others
        could read one more request meanwhile, and lose it."""
        for stream in self._idle_streams(None, float("inf")):
            stream.close()

    def _idle_streams(self, most, silent_since):
        """At most `most` (None: all) open streams with no request in flight: the kept-alive ones, whose last
        request is oldest first, then those that have sent none and came before silent_since."""
        idle: list[IOStream] = []
        for stream, request_conn in self._activity.items():
            if len(idle) == most:
                return idle
            # A stream closed by the last call stays listed until its connection's on_close().
            if request_conn not in self._in_flight and not stream.closed():
                idle.append(stream)
        for stream, accepted in self._fresh.items():
            if len(idle) == most or accepted > silent_since:
                break
            if not stream.closed():
                idle.append(stream)
        return idle

    def start_request(self, server_conn, request_conn):
        # Called as soon as the connection waits for a request; the request starts with its headers.
        delegate = super().start_request(server_conn, request_conn)
        return CountedRequest(delegate, request_conn, self._in_flight, self._request_started, server_conn.stream)

    def _request_started(self, stream, request_conn):
        self._fresh.pop(stream, None)
        self._activity[stream] = request_conn
        self._activity.move_to_end(stream)

    def stop_keep_alive(self):
        """Answer every request read from now on with "Connection: close", as Go's Shutdown does."""
        self.conn_params.no_keep_alive = True


class CountedRequest(HTTPMessageDelegate):
    """Wraps the delegate Tornado reads one request into, as Tornado's own xheaders adapter does.

    The request is in flight from its headers on; its handler (handlers.base.BaseHandler), made as the
    headers or the body are done, says when it has answered. A request that never gets a handler ends
    with its connection.
    """

    def __init__(self, delegate, request_conn, in_flight, started, stream):
        """started(stream, request_conn) is called with the headers, for the server's order of activity."""
        self._delegate = delegate
        self._request_conn = request_conn
        self._in_flight = in_flight
        self._started = started
        self._stream = stream

    def headers_received(self, start_line, headers):
        self._in_flight.started(self._request_conn)
        self._started(self._stream, self._request_conn)
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
