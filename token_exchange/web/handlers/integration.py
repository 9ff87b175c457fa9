"""POST /v0/token/integration: an integration API key for a 20-second JWT."""

import logging

from token_exchange.web import errors
from token_exchange.web.handlers.base import TokenHandler
from token_exchange.store import StoreUnavailable
from token_exchange.verification.verifier import InvalidKey, Overloaded, Throttled, parse_presented_integration_key

log = logging.getLogger("token_exchange.handlers")


class IntegrationHandler(TokenHandler):
    async def exchange(self, api_key):
        try:
            # Parsed once here: the access line names the ids (never the secret), the verifier checks the key.
            key = parse_presented_integration_key(api_key)
            self.access_fields = {"integration_id": key.integration_id, "key_id": key.key_id}
            identity = await self.verifier.verify_integration_key(key)
        except InvalidKey as e:
            log.info("integration key refused: %s", e)
            raise errors.invalid_api_key() from None
        except StoreUnavailable as e:
            log.error("key store unavailable for an integration exchange: %s", e)
            raise errors.store_unavailable() from None
        except Overloaded as e:
            log.warning("integration key check refused: %s", e)
            raise errors.verifications_overloaded(e.retry_after_seconds) from None
        except Throttled as e:
            log.warning("integration key check throttled: %s", e)
            raise errors.key_throttled(e.retry_after_seconds) from None
        return self.issuer.integration_token, (identity.integration_id, identity.key_id, identity.tier)

