"""GET /.well-known/jwks.json: the public keys that verify our tokens."""

import hashlib
import json

from token_exchange.web.handlers.base import BaseHandler

# The order in which the Go service (go-jose) writes a JWK's members.
GO_JWK_ORDER = ("use", "kty", "kid", "crv", "alg", "k", "x", "y", "n", "e")


def jwks_body(public_jwks):
    """The response body, computed once: public JWKs only, never private parameters; each key's members
    in the Go service's order, as its json.Encoder writes them (compact, one newline)."""
    keys = [
        {
            **{name: jwk[name] for name in GO_JWK_ORDER if name in jwk},
            **{n: v for n, v in jwk.items() if n not in GO_JWK_ORDER},
        }
        for jwk in public_jwks
    ]
    return (json.dumps({"keys": keys}, separators=(",", ":")) + "\n").encode()


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
