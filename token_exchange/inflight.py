"""Counting requests in flight, so that shutdown can wait for them to finish.

A request counts from the moment its headers are read (CountedRequest)
until its handler has answered it (BaseHandler): one whose body is still
arriving when shutdown begins is waited for too, as Go's Shutdown waits
for a connection that has started a request.
"""

import asyncio

from tornado.httputil import HTTPMessageDelegate


class RequestsInFlight:
    """Used on the event loop only: handlers call started() and finished()."""

    def __init__(self):
        self.count = 0
        # Made only when shutdown waits: a request's start and finish are then two additions.
        self._idle = None

    def started(self):
        self.count += 1
        if self._idle is not None:
            self._idle.clear()

    def finished(self):
        self.count -= 1
        if self.count == 0 and self._idle is not None:
            self._idle.set()

    async def wait_idle(self, timeout):
        """True when every request finished within timeout seconds."""
        if self.count == 0:
            return True
        if self._idle is None:
            self._idle = asyncio.Event()
        try:
            await asyncio.wait_for(self._idle.wait(), timeout)
        except asyncio.TimeoutError:
            return False
        return True


class CountedRequest(HTTPMessageDelegate):
    """Wraps the delegate Tornado reads one request into: counts the request from its headers until its
    body has been read, or its connection closed first. Its handler, made as the body is done, counts it on."""

    def __init__(self, delegate, in_flight):
        self._delegate = delegate
        self._in_flight = in_flight
        self._reading = False
        self.data_received = delegate.data_received  # straight through: no frame of ours per chunk

    def headers_received(self, start_line, headers):
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
