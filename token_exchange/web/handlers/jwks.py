"""GET /.well-known/jwks.json: the public keys that verify our tokens."""

from token_exchange.web.handlers.base import BaseHandler
from token_exchange.web.signingkeys import SigningKeys


class JWKSHandler(BaseHandler):
    def initialize(self, signing_keys: SigningKeys) -> None:
        self.signing_keys = signing_keys
        self._etag = ""

    def compute_etag(self):
        # A cache revalidating the JWKS (must-revalidate) gets a 304 while the keys are the same.
        return self._etag

    def get(self):
        in_use = self.signing_keys.current  # body and ETag of one key set, read as the answer is written
        self._etag = in_use.jwks_etag
        self.set_header("Content-Type", "application/json")
        self.set_header("Cache-Control", "public, max-age=3600, must-revalidate")
        self.set_header("Access-Control-Allow-Origin", "*")
        self.finish(in_use.jwks_body)

    head = get
