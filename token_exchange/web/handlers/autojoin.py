"""POST /v0/token/autojoin: an organisation's autojoin API key for a 1-hour JWT."""

from token_exchange.web.handlers.token import TokenHandler


class AutojoinHandler(TokenHandler):
    KIND = "autojoin"

    async def post(self):
        org = await self.verifier.verify_autojoin_key(self.api_key())
        self.access_fields = {"org": org}
        self.send_token(self.issuer().autojoin_token(org))
