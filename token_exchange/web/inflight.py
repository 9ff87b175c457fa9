"""Counting requests in flight, so that shutdown can wait for them to finish.

A request counts from the moment its headers are read (the server's
httpserver.ServedRequest) until its handler has answered it (BaseHandler):
one whose body is still arriving when shutdown begins is waited for too,
as Go's Shutdown waits for a connection that has started a request.
"""

import asyncio


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
