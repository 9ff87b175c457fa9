"""GET /ready: 200 when the key store answers within the store timeout, else 503.

For load balancers that should send no traffic to an instance whose store
is unreachable. /health stays as the Go service has it: the process answers.
"""

import asyncio
import logging

from token_exchange.web import errors
from token_exchange.web.handlers.base import BaseHandler
from token_exchange.store import StoreUnavailable

log = logging.getLogger("token_exchange.handlers")


class ReadyHandler(BaseHandler):
    def initialize(self, probe):
        self.probe = probe

    async def get(self):
        try:
            await self.probe()
        except StoreUnavailable as e:
            log.warning("not ready: key store unavailable: %s", e)
            raise errors.store_unavailable() from None
        self.finish("ready")

    head = get


def store_probe(store, executor, timeout_seconds):
    """An async check that the store answers: store.check() on the store's pool, bounded by its timeout."""
    async def probe():
        future = asyncio.get_running_loop().run_in_executor(executor, store.check)
        try:
            await asyncio.wait_for(future, timeout_seconds)
        except asyncio.TimeoutError:
            raise StoreUnavailable(f"no answer within {timeout_seconds:g} s") from None
    return probe
