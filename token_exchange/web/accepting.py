"""Accepting connections, and holding on when the process runs out of file descriptors.

Tornado's accept handler lets accept()'s EMFILE escape: the listening socket
stays readable, so the loop calls the handler again at once, spinning and
logging a traceback each turn while open connections wait. Here, as Go's
http.Server does, a failed accept pauses accepting for a back-off (5 ms,
doubling up to 1 s) and it resumes by itself; the server is asked to make
room (connections.ServiceHTTPServer closes the connections idle longest);
and the failure is logged at most once per LOG_INTERVAL_SECONDS, with a
count. While descriptors are short, accepting and failing alternate every
few milliseconds, so no line is written when it works again: the metric
(tokenexchange_accept_errors_total) shows when the failures stop.
"""

import errno
import logging
import os
import resource
import time

from tornado.ioloop import IOLoop

log = logging.getLogger("token_exchange")

FIRST_BACKOFF_SECONDS = 0.005
MAX_BACKOFF_SECONDS = 1.0
LOG_INTERVAL_SECONDS = 10.0
# Connections taken per readiness event, as Tornado takes them: the open connections get their turn too.
ACCEPTS_PER_EVENT = 128


class AcceptEvents:
    """What accepting reports; the metrics implement it. Does nothing by default."""

    def accept_failed(self, reason):
        """accept() failed; reason is the errno name (EMFILE, ENFILE, ...)."""

    def connections_shed(self, count):
        """count idle connections were closed to make room."""


class Acceptor:
    """Accepts connections on listening sockets for the loop it was started on.

    on_connection(connection, address) takes each accepted socket; make_room() is called when an
    accept fails and returns how many connections it closed.
    """

    def __init__(self, on_connection, make_room, events=None, clock=time.monotonic):
        self._on_connection = on_connection
        self._make_room = make_room
        self._events = events or AcceptEvents()
        self._clock = clock
        self._sockets: list = []
        self._io_loop: IOLoop  # the loop listen() was called on
        self._backoff = 0.0  # 0 while accepting works
        self._resume_timer = None
        self._closed = False
        self._failures = 0  # since the last line about them
        self._next_line = float("-inf")

    def listen(self, sockets):
        self._io_loop = IOLoop.current()
        for sock in sockets:
            sock.setblocking(False)
            self._sockets.append(sock)
            self._io_loop.add_handler(sock, self._readable, IOLoop.READ)

    def close(self):
        """Stop accepting; connections already queued by the kernel are taken in first, then the sockets close.

        Closing a socket with connections queued resets them, and their clients may have sent a
        request already.
        """
        if self._closed or not self._sockets:
            self._closed = True
            return
        self._closed = True
        if self._resume_timer is not None:
            self._io_loop.remove_timeout(self._resume_timer)
            self._resume_timer = None
        for sock in self._sockets:
            self._io_loop.remove_handler(sock)  # a no-op while paused
            self._accept(sock, limit=None)
            sock.close()

    def _readable(self, sock, events):
        self._accept(sock, ACCEPTS_PER_EVENT)

    def _accept(self, sock, limit):
        taken = 0
        while limit is None or taken < limit:
            try:
                connection, address = sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except ConnectionAbortedError:  # the client gave up while queued
                continue
            except OSError as e:
                self._failed(e)
                return
            taken += 1
            self._backoff = 0.0
            self._on_connection(connection, address)

    def _failed(self, error):
        reason = errno.errorcode.get(error.errno, "other")
        self._events.accept_failed(reason)
        self._failures += 1
        closed = self._make_room() if not self._closed else 0
        if closed:
            self._events.connections_shed(closed)
        now = self._clock()
        if now >= self._next_line:
            log.error(
                "cannot accept connections: %s (%s); %d failed accepts since the last such line; "
                "closed %d idle connections to make room; open-file limit %s",
                os.strerror(error.errno) if error.errno else error,
                reason,
                self._failures,
                closed,
                open_file_limit(),
            )
            self._failures = 0
            self._next_line = now + LOG_INTERVAL_SECONDS
        if self._closed:
            return
        self._backoff = min(MAX_BACKOFF_SECONDS, self._backoff * 2) if self._backoff else FIRST_BACKOFF_SECONDS
        for sock in self._sockets:
            self._io_loop.remove_handler(sock)
        self._resume_timer = self._io_loop.call_later(self._backoff, self._resume)

    def _resume(self):
        self._resume_timer = None
        for sock in self._sockets:
            self._io_loop.add_handler(sock, self._readable, IOLoop.READ)


def open_file_limit():
    """The soft limit on open files, as a number or "unlimited"."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    return "unlimited" if soft == resource.RLIM_INFINITY else soft
