"""GET /ready: 200 when the key store answers the reads an exchange makes within the store timeout, else 503.

For load balancers that should send no traffic to an instance whose store
is unreachable. /health stays as the Go service has it: the process answers.
"""

from token_exchange.verification.verifier import KeyVerifier
from token_exchange.web.handlers.base import BaseHandler


class ReadyHandler(BaseHandler):
    KIND = "readiness"

    def initialize(self, verifier: KeyVerifier) -> None:
        self.verifier = verifier

    async def get(self):
        await self.verifier.check_store()  # StoreUnavailable: 503 (errors.ANSWERS)
        self.finish("ready")

    head = get
