"""Kept-alive connections under load while the service stops: which requests went unanswered.

Each connection sends one request after another and reads each answer. An
answer with "Connection: close" ends the connection and the client opens a
new one, as HTTP clients do; once the service stops listening, the new
connection is refused and that connection's client is done. A request is
lost when it was sent whole and its connection ended before its whole
answer came: the client cannot know whether it was served.

Used by the shutdown tests and by bench/shutdown_loss.py.
"""

import asyncio
import collections
from dataclasses import dataclass, field


@dataclass
class LoadResult:
    answered: int = 0
    lost: int = 0  # sent whole, connection ended before the whole answer
    refused: int = 0  # connections refused once the service stopped listening: nothing sent
    statuses: collections.Counter = field(default_factory=collections.Counter)


class _Lost(Exception):
    pass


async def _read_answer(reader):
    """(status, headers) of one answer, its body read; _Lost if the connection ends first."""
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except (asyncio.IncompleteReadError, ConnectionError) as e:
        raise _Lost from e
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    try:
        await reader.readexactly(int(headers.get("content-length", "0")))
    except (asyncio.IncompleteReadError, ConnectionError) as e:
        raise _Lost from e
    return status, headers


async def _one_client(host, port, request, result, first_answer):
    while True:
        try:
            reader, writer = await asyncio.open_connection(host, port)
        except ConnectionRefusedError as e:
            if not first_answer.done():
                first_answer.set_exception(e)  # the service was not serving: the run means nothing
            result.refused += 1
            return
        try:
            while True:
                try:
                    writer.write(request)
                    await writer.drain()
                except ConnectionError:
                    break  # the request did not leave whole: not lost, sent again on a new connection
                try:
                    status, headers = await _read_answer(reader)
                except _Lost:
                    result.lost += 1
                    break
                result.answered += 1
                result.statuses[status] += 1
                if not first_answer.done():
                    first_answer.set_result(None)
                if headers.get("connection", "").lower() == "close":
                    break
        finally:
            writer.close()


async def keep_alive_load(host, port, request, connections, after_steady):
    """Run connections clients sending request (bytes) until the service stops; the LoadResult.

    after_steady: a coroutine function called once every client has had an answer (the load is
    steady); it stops the service, e.g. by sending SIGTERM, while the clients keep sending.
    """
    result = LoadResult()
    loop = asyncio.get_running_loop()
    first_answers = [loop.create_future() for _ in range(connections)]
    clients = [asyncio.create_task(_one_client(host, port, request, result, first)) for first in first_answers]
    try:
        await asyncio.gather(*first_answers)
        await after_steady()
    finally:
        await asyncio.gather(*clients)
    return result
