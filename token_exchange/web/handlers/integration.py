"""POST /v0/token/integration: an integration API key for a 20-second JWT."""

from token_exchange.verification.verifier import parse_presented_integration_key
from token_exchange.web.handlers.token import TokenHandler


class IntegrationHandler(TokenHandler):
    KIND = "integration"

    async def post(self):
        key = parse_presented_integration_key(self.api_key())
        record = await self.verifier.find_integration_key(key)
        # The access line names the ids once the store knows them (a client may put its secret where an
        # id goes), never the secret.
        self.access_fields = {"integration_id": key.integration_id, "key_id": key.key_id}
        identity = await self.verifier.verify_integration_secret(key, record, self.client)
        self.send_token(self.issuer().integration_token(identity))
