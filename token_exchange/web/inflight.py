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


class RequestsInFlight:
    """Used on the event loop only."""

    def __init__(self):
        self._connections = set()
        # Made only when shutdown waits.
        self._idle = None

    @property
    def count(self):
        return len(self._connections)

    def started(self, connection):
        self._connections.add(connection)
        if self._idle is not None:
            self._idle.clear()

    def finished(self, connection):
        self._connections.discard(connection)
        if not self._connections and self._idle is not None:
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
