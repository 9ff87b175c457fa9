"""The key set in use: the issuer that signs tokens and the JWKS that publishes their keys, replaced as one.

A reload (SIGHUP) builds everything from the new key set first, then swaps
one reference. Handlers read that reference when they sign or write the
JWKS, on the event loop as the swap is, so no token of a new key is sent
while this process still serves a JWKS without its kid: the signing key is
always in the key set's published keys.
"""

import hashlib
import json
from dataclasses import dataclass
from typing import Callable

from token_exchange.signing.keyfile import KeySet, SigningKey
from token_exchange.signing.tokens import TokenIssuer

# The order in which the Go service (go-jose) writes a JWK's members.
GO_JWK_ORDER = ("use", "kty", "kid", "crv", "alg", "k", "x", "y", "n", "e")


def jwks_body(public_jwks):
    """The JWKS response body: public JWKs only, never private parameters; each key's members in the Go
    service's order, as its json.Encoder writes them (compact, one newline)."""
    keys = [
        {
            **{name: jwk[name] for name in GO_JWK_ORDER if name in jwk},
            **{n: v for n, v in jwk.items() if n not in GO_JWK_ORDER},
        }
        for jwk in public_jwks
    ]
    return (json.dumps({"keys": keys}, separators=(",", ":")) + "\n").encode()


@dataclass(frozen=True)
class KeysInUse:
    key_set: KeySet
    issuer: TokenIssuer
    jwks_body: bytes
    jwks_etag: str  # a revalidating cache gets a 304 while the body is the same


class SigningKeys:
    """The KeysInUse of the service (current), and their replacement by a reloaded key set."""

    def __init__(self, key_set: KeySet, issuer_factory: Callable[[SigningKey], TokenIssuer] = TokenIssuer):
        """issuer_factory: makes the TokenIssuer of a signing key (tests give their own)."""
        self._issuer_factory = issuer_factory
        self.current = self._in_use(key_set)

    def replace(self, key_set: KeySet) -> KeysInUse:
        """Sign with key_set and publish its keys from now on; return what was in use."""
        in_use = self._in_use(key_set)
        previous, self.current = self.current, in_use
        return previous

    def _in_use(self, key_set):
        body = jwks_body(key_set.public_jwks)
        etag = '"' + hashlib.sha1(body).hexdigest() + '"'
        return KeysInUse(key_set, self._issuer_factory(key_set.signing_key), body, etag)
