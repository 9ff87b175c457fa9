"""GET /.well-known/jwks.json: the public keys that verify our tokens."""

import hashlib
import json

from token_exchange.web.handlers.base import BaseHandler


def jwks_body(public_jwks):
    """The response body, computed once: public JWKs only, never private parameters."""
    return (json.dumps({"keys": list(public_jwks)}, separators=(",", ":")) + "\n").encode()


class JWKSHandler(BaseHandler):
    def initialize(self, body: bytes) -> None:
        self.body = body

    def compute_etag(self):
        # A cache revalidating the JWKS (must-revalidate) gets a 304 while the keys are the same.
        return '"' + hashlib.sha1(self.body).hexdigest() + '"'

    def get(self):
        self.set_header("Content-Type", "application/json")
        self.set_header("Cache-Control", "public, max-age=3600, must-revalidate")
        self.set_header("Access-Control-Allow-Origin", "*")
        self.finish(self.body)

    head = get
