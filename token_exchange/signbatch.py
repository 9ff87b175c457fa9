"""Signing the tokens of one turn of the event loop back to back.

A signature is most of an exchange's time (about 240 µs for RS256, where
the rest of the exchange takes about 200 µs), and it displaces the
interpreter's working set: after each one the Python code of the request
runs measurably slower. Under load several exchanges reach the signing
step in the same turn of the event loop; signing them together at the
end of the turn pays that once per turn instead of once per exchange
(bench/RESULTS.md has the figures). An exchange alone pays one more turn
of the loop, a few microseconds.
"""

import asyncio


class SignBatch:
    """Runs the calls submitted during one turn of an event loop one after another, at the end of the turn.

    Used on the event loop only. A call that raises fails its own future; the others still run.
    """

    def __init__(self):
        self._pending = []  # (future, function, arguments), in submission order

    def submit(self, sign, *args):
        """A future of sign(*args), run with the other submissions of this turn."""
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        if not self._pending:
            loop.call_soon(self._run_pending)
        self._pending.append((future, sign, args))
        return future

    def _run_pending(self):
        pending, self._pending = self._pending, []
        for future, sign, args in pending:
            if future.cancelled():  # nobody waits for this token any more
                continue
            try:
                result = sign(*args)
            except Exception as e:
                future.set_exception(e)
            else:
                future.set_result(result)
