"""Requests in flight, so that shutdown can wait for them to finish.

A request is in flight from the moment its headers are read (the server's
connections.CountedRequest) until its handler has answered it
(handlers.base.BaseHandler), or its connection closed first: one whose body
is still arriving when shutdown begins is waited for too, as Go's Shutdown
waits for a connection that has started a request. An HTTP/1.1 connection
carries one request at a time, so a request is known by its connection:
the server and the handler may both say it started, and it counts once.
"""

import asyncio
import time


class RequestsInFlight:
    """Used on the event loop only."""

    def __init__(self):
        self._connections = set()
        self._idle_since = float("-inf")  # when the last request in flight finished
        # Made only when shutdown waits.
        self._idle = None

    def __contains__(self, connection):
        return connection in self._connections

    @property
    def count(self):
        return len(self._connections)

    def started(self, connection):
        self._connections.add(connection)
        if self._idle is not None:
            self._idle.clear()

    def finished(self, connection):
        self._connections.discard(connection)
        if not self._connections:
            self._idle_since = time.monotonic()
            if self._idle is not None:
                self._idle.set()

    async def wait_idle(self, timeout):
        """True when every request finished within timeout seconds."""
        if not self._connections:
            return True
        if self._idle is None:
            self._idle = asyncio.Event()
        try:
            await asyncio.wait_for(self._idle.wait(), timeout)
        except asyncio.TimeoutError:
            return False
        return True

    async def wait_quiet(self, linger, timeout):
        """Wait until no request has been in flight for linger seconds, within timeout seconds.

        False when timeout seconds passed with requests still in flight. A kept-alive connection
        whose client is about to send its next request is idle for a moment: closing it then loses
        that request, so idle connections are closed only after a linger in which no request came.
        """
        called = time.monotonic()
        deadline = called + timeout
        while True:
            if not await self.wait_idle(max(0.0, deadline - time.monotonic())):
                return False
            # The linger starts when asked, or when the last request since finished.
            wait = min(max(called, self._idle_since) + linger, deadline) - time.monotonic()
            if wait <= 0:
                return True  # quiet for linger seconds, or out of time with nothing in flight
            await asyncio.sleep(wait)
