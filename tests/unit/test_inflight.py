"""RequestsInFlight.wait_quiet: what shutdown waits for before it closes idle connections."""

import asyncio
import time

from token_exchange.web.inflight import RequestsInFlight


def run(coroutine):
    return asyncio.run(coroutine)


def test_wait_quiet_returns_after_the_linger_when_nothing_comes():
    async def scenario():
        in_flight = RequestsInFlight()
        return await in_flight.wait_quiet(linger=0.05, timeout=30)

    assert run(scenario()) is True


def test_the_linger_starts_when_asked_however_long_ago_the_last_request_came():
    async def scenario():
        in_flight = RequestsInFlight()
        waiting = asyncio.create_task(in_flight.wait_quiet(linger=3600, timeout=7200))
        await asyncio.sleep(0.01)
        assert not waiting.done()  # no request ever came, yet idle connections get their linger
        waiting.cancel()

    run(scenario())


def test_a_request_during_the_linger_is_waited_for_and_restarts_the_linger():
    async def scenario():
        in_flight = RequestsInFlight()
        connection = object()
        waiting = asyncio.create_task(in_flight.wait_quiet(linger=0.2, timeout=7200))
        await asyncio.sleep(0)  # the wait has begun its linger
        in_flight.started(connection)
        await asyncio.sleep(0.3)  # longer than the linger: the request in flight is waited for whatever the time
        assert not waiting.done()
        in_flight.finished(connection)
        last_request = time.monotonic()
        assert await waiting is True
        return time.monotonic() - last_request

    assert run(scenario()) >= 0.2  # a whole linger after the request, not after the call


def test_wait_quiet_is_false_when_a_request_outlasts_the_timeout():
    async def scenario():
        in_flight = RequestsInFlight()
        in_flight.started(object())
        return await in_flight.wait_quiet(linger=0.01, timeout=0.05)

    assert run(scenario()) is False


def test_wait_quiet_ends_at_the_timeout_when_requests_keep_the_linger_going():
    async def scenario():
        in_flight = RequestsInFlight()
        connection = object()
        in_flight.started(connection)
        in_flight.finished(connection)
        # Idle, yet the linger of an hour would outlast the timeout: the timeout wins, nothing is in flight.
        return await in_flight.wait_quiet(linger=3600, timeout=0.05)

    assert run(scenario()) is True
