"""The HTTP server: Tornado's, with the per-request work that belongs to a connection done per connection.

Tornado's HTTPServer, per request, turns Nagle's algorithm off and back
on (two system calls) and arms a timer for the idle-connection timeout,
cancelled when the request's headers arrive (futures, callbacks and a
timer-heap entry). With the Date header formatted once a second
(handlers.base), doing these per connection took the CPU time of a warm
exchange beside its signature from 1.03-1.12 to 0.94-0.96 times a bare
Tornado request's (bench/RESULTS.md). Here:

- TCP_NODELAY is set once, when a connection opens, and left on: every
  response leaves in one write, and Go's server keeps it on too;
- idle connections are closed by a sweep instead of a timer per request:
  a request costs a dict entry, and a connection that has waited longer
  than idle_connection_timeout for a request's headers is closed within
  one sweep interval (a tenth of the timeout, at most a minute) after it.

The server also counts each request in flight from its headers on
(inflight.RequestsInFlight), so that shutdown waits for a request whose
body is still arriving.
"""

import time

import tornado.httpserver
from tornado.httputil import HTTPMessageDelegate
from tornado.ioloop import PeriodicCallback

# Tornado's default, which this server keeps: an hour without a request closes a connection.
IDLE_CONNECTION_TIMEOUT_SECONDS = 3600.0
MAX_SWEEP_INTERVAL_SECONDS = 60.0


class ServiceHTTPServer(tornado.httpserver.HTTPServer):
    """ServiceHTTPServer(app, idle_connection_timeout=seconds, other HTTPServer options).

    Requests are counted in the application's settings["in_flight"] (a RequestsInFlight), which its
    handlers count on.
    """

    def initialize(self, request_callback, *, idle_connection_timeout=None, **kwargs):
        # None or 0 means the default, as for Tornado's HTTPServer.
        idle_connection_timeout = idle_connection_timeout or IDLE_CONNECTION_TIMEOUT_SECONDS
        super().initialize(request_callback, idle_connection_timeout=idle_connection_timeout, **kwargs)
        self.conn_params.header_timeout = None  # no timer per request: IdleConnections sweeps instead
        self._in_flight = request_callback.settings["in_flight"]
        self._idle = IdleConnections(idle_connection_timeout)
        self._sweep = PeriodicCallback(self._idle.sweep, 1000 * self._idle.sweep_interval)

    def add_sockets(self, sockets):
        super().add_sockets(sockets)
        if not self._sweep.is_running():  # add_socket() and listen() come here too, once per call
            self._sweep.start()  # on the event loop that serves the sockets

    async def close_all_connections(self):
        self._sweep.stop()
        await super().close_all_connections()

    def handle_stream(self, stream, address):
        stream.set_nodelay(True)
        stream.set_nodelay = _leave_nodelay_on  # HTTP1Connection's calls, two per response, change nothing
        super().handle_stream(stream, address)

    def start_request(self, server_conn, request_conn):
        # Called when the connection begins to wait for its next request.
        self._idle.waiting(server_conn)
        return ServedRequest(super().start_request(server_conn, request_conn), server_conn, self._idle,
                             self._in_flight)

    def on_close(self, server_conn):
        self._idle.closed(server_conn)
        super().on_close(server_conn)


def _leave_nodelay_on(value):
    pass


class IdleConnections:
    """Connections waiting for a request's headers, and since when; sweep() closes those waiting too long.

    Used on the event loop only.
    """

    def __init__(self, timeout, clock=time.monotonic):
        self.timeout = timeout
        self.sweep_interval = min(timeout / 10, MAX_SWEEP_INTERVAL_SECONDS)
        self._clock = clock
        self._waiting = {}  # HTTP1ServerConnection -> when it began to wait

    def waiting(self, server_conn):
        self._waiting[server_conn] = self._clock()

    def busy(self, server_conn):
        """Its request's headers have arrived (perhaps just as a sweep closed it)."""
        self._waiting.pop(server_conn, None)

    def closed(self, server_conn):
        self._waiting.pop(server_conn, None)

    def sweep(self):
        waited_since = self._clock() - self.timeout
        overdue = [conn for conn, since in self._waiting.items() if since <= waited_since]
        for server_conn in overdue:
            del self._waiting[server_conn]
            server_conn.stream.close()  # what Tornado's header timeout does; on_close() follows


class ServedRequest(HTTPMessageDelegate):
    """Wraps the delegate Tornado reads one request into, from the moment its connection waits for it.

    Until the headers arrive the connection is idle. From the headers until the body has been read, or the
    connection closed first, the request counts as in flight; its handler, made as the body is done, counts
    it on (handlers.base.BaseHandler), as Tornado's own xheaders adapter wraps a request's delegate.
    """

    def __init__(self, delegate, server_conn, idle, in_flight):
        self._delegate = delegate
        self._server_conn = server_conn
        self._idle = idle
        self._in_flight = in_flight
        self._reading = False
        self.data_received = delegate.data_received  # straight through: no frame of ours per chunk

    def headers_received(self, start_line, headers):
        self._idle.busy(self._server_conn)
        self._in_flight.started()
        self._reading = True
        return self._delegate.headers_received(start_line, headers)

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
