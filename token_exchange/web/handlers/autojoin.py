"""POST /v0/token/autojoin: an organisation's autojoin API key for a 1-hour JWT."""

import logging

from token_exchange.web import errors
from token_exchange.web.handlers.base import TokenHandler
from token_exchange.store import StoreUnavailable
from token_exchange.verification.verifier import InvalidKey

log = logging.getLogger("token_exchange.handlers")


class AutojoinHandler(TokenHandler):
    async def exchange(self, api_key):
        try:
            org = await self.verifier.verify_autojoin_key(api_key)
        except InvalidKey as e:
            log.info("autojoin key refused: %s", e)
            raise errors.invalid_api_key() from None
        except StoreUnavailable as e:
            log.error("key store unavailable for an autojoin exchange: %s", e)
            raise errors.store_unavailable() from None
        self.access_fields = {"org": org}
        return self.issuer.autojoin_token, (org,)
