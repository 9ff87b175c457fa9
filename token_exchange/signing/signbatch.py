"""Signing the tokens of a turn or two of the event loop back to back.

A signature is most of an exchange's time (about 240 µs for RS256, where
the rest of the exchange takes about 180 µs), and it displaces the
interpreter's working set: after each one the code that runs next is
slower for a while. Under load several exchanges reach the signing step
within a turn or two of the event loop; signing them one after another
pays that once per batch instead of once per exchange. Measured under
the benchmark's load, the first signature of a batch took about 25 µs
longer than one in a tight loop, the next ones no longer. A batch is
signed at the end of the turn after the one that opened it, so that the
requests read meanwhile join it: with the benchmark's ten connections,
batches of about nine where one turn gave about five. An exchange alone
waits two more turns of the loop, about 10 µs of CPU.
"""

import asyncio


class SignBatch:
    """Runs the calls submitted within two turns of an event loop one after another, at the end of the second.

    Used on the event loop only. A call that raises fails its own future; the others still run.
    """

    def __init__(self):
        self._pending = []  # (future, function, arguments), in submission order

    def submit(self, sign, *args):
        """A future of sign(*args), run with the other submissions of this turn and the next."""
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        if not self._pending:
            loop.call_soon(loop.call_soon, self._run_pending)  # at the end of the next turn
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
