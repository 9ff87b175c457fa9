"""accepting.Acceptor: failed accepts pause accepting, make room, are logged at most once per interval."""

import asyncio
import errno
import logging
import os
import socket

from token_exchange.web.accepting import LOG_INTERVAL_SECONDS, AcceptEvents, Acceptor


class FailingAccepts:
    """A real listening socket whose accept() fails with EMFILE while failing is set."""

    def __init__(self):
        self._sock = socket.create_server(("127.0.0.1", 0))
        self.port = self._sock.getsockname()[1]
        self.failing = True
        self.accept_calls = 0

    def fileno(self):
        return self._sock.fileno()

    def setblocking(self, flag):
        self._sock.setblocking(flag)

    def accept(self):
        self.accept_calls += 1
        if self.failing:
            raise OSError(errno.EMFILE, os.strerror(errno.EMFILE))
        return self._sock.accept()

    def close(self):
        self._sock.close()


class RecordingEvents(AcceptEvents):
    def __init__(self):
        self.failed = []
        self.shed = []

    def accept_failed(self, reason):
        self.failed.append(reason)

    def connections_shed(self, count):
        self.shed.append(count)


async def until(condition, timeout=10):
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        assert asyncio.get_running_loop().time() < deadline
        await asyncio.sleep(0.01)


def test_failing_accepts_pause_make_room_and_resume_by_themselves(caplog):
    caplog.set_level(logging.INFO, logger="token_exchange")
    listening = FailingAccepts()
    accepted, room_made, events = [], [], RecordingEvents()
    now = [1000.0]

    def make_room():
        room_made.append(True)
        return 2

    async def scenario():
        acceptor = Acceptor(lambda conn, address: accepted.append(conn), make_room, events, clock=lambda: now[0])
        acceptor.listen([listening])
        client = socket.create_connection(("127.0.0.1", listening.port))
        try:
            await until(lambda: listening.accept_calls >= 1)
            await asyncio.sleep(0.3)  # failing all along: the back-off keeps the calls few
            calls_while_failing = listening.accept_calls
            now[0] += LOG_INTERVAL_SECONDS  # the next failure may be logged again
            listening.failing = False
            await until(lambda: accepted)
            return calls_while_failing
        finally:
            client.close()
            acceptor.close()
            for conn in accepted:
                conn.close()

    calls_while_failing = asyncio.run(scenario())
    # 5 ms doubling: about 6 tries in 0.3 s, where Tornado's handler tries on every loop turn.
    assert 1 <= calls_while_failing < 20
    assert events.failed == ["EMFILE"] * calls_while_failing
    assert events.shed == [2] * calls_while_failing
    assert len(room_made) == calls_while_failing
    lines = [r.getMessage() for r in caplog.records if "cannot accept" in r.getMessage()]
    assert len(lines) == 1  # the fake clock never reached the next interval while failing
    assert lines[0].startswith("cannot accept connections: Too many open files (EMFILE); 1 failed accepts")
    assert "closed 2 idle connections" in lines[0]
    assert all(r.levelno == logging.ERROR for r in caplog.records if "cannot accept" in r.getMessage())


def test_the_next_line_counts_every_failure_since_the_last(caplog):
    caplog.set_level(logging.INFO, logger="token_exchange")
    listening = FailingAccepts()
    now = [1000.0]

    async def scenario():
        acceptor = Acceptor(lambda conn, address: conn.close(), lambda: 0, clock=lambda: now[0])
        acceptor.listen([listening])
        client = socket.create_connection(("127.0.0.1", listening.port))
        try:
            await until(lambda: listening.accept_calls >= 3)
            now[0] += LOG_INTERVAL_SECONDS
            calls = listening.accept_calls
            await until(lambda: listening.accept_calls > calls)
            return calls
        finally:
            client.close()
            acceptor.close()

    calls_before_interval = asyncio.run(scenario())
    lines = [r.getMessage() for r in caplog.records if "cannot accept" in r.getMessage()]
    assert len(lines) == 2
    assert "; 1 failed accepts" in lines[0]
    assert f"; {calls_before_interval} failed accepts" in lines[1]  # the ones not logged, and this one


def test_close_takes_in_the_connections_already_queued():
    listening = FailingAccepts()
    listening.failing = False
    accepted = []

    async def scenario():
        acceptor = Acceptor(lambda conn, address: accepted.append(conn), lambda: 0)
        acceptor.listen([listening])
        clients = [socket.create_connection(("127.0.0.1", listening.port)) for _ in range(3)]
        acceptor.close()  # before the loop has run the handler: all three are still queued
        for conn in accepted:
            conn.close()
        for client in clients:
            client.close()

    asyncio.run(scenario())
    assert len(accepted) == 3
