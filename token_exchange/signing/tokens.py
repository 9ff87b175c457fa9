"""The JWTs the service issues: their claims, signed with the signing key.

Claims follow the Go service: iss "token-exchange", a one-string aud,
iat = nbf = now, exp = now + lifetime (integer seconds), a random UUID jti,
and the audience's own claims, written as Go writes them (gojson).
"""

import time
import uuid
from dataclasses import dataclass

from token_exchange.signing.gojson import go_object
from token_exchange.signing.jws import CompactSigner
from token_exchange.verification.verifier import IntegrationIdentity

ISSUER = "token-exchange"


@dataclass(frozen=True)
class Audience:
    name: str
    lifetime_seconds: int


AUTOJOIN = Audience("autojoin", 3600)
INTEGRATION = Audience("integration", 20)


class SigningFailed(Exception):
    """A token could not be signed (500); the cause is chained."""


class TokenIssuer:
    """Signs tokens with one signing key. Tests may give their own clock, and a signer (an object with
    sign(payload bytes) -> compact JWS text) in place of the key's CompactSigner."""

    def __init__(self, signing_key, clock=time.time, signer=None):
        self.signing_key = signing_key
        self._clock = clock
        header = {"alg": signing_key.alg, "kid": signing_key.kid}  # as the Go service writes it: no typ
        self._signer = signer or CompactSigner(signing_key, header)

    def integration_token(self, identity: IntegrationIdentity) -> str:
        """The token of a verified integration key (verifier.IntegrationIdentity)."""
        return self._sign(
            INTEGRATION, {"int_id": identity.integration_id, "key_id": identity.key_id, "tier": int(identity.tier)}
        )

    def autojoin_token(self, org: str) -> str:
        return self._sign(AUTOJOIN, {"org": org})

    def _sign(self, audience, own_claims):
        now = int(self._clock())
        claims = {
            "iss": ISSUER,
            "aud": audience.name,
            "exp": now + audience.lifetime_seconds,
            "nbf": now,
            "iat": now,
            "jti": str(uuid.uuid4()),
            **own_claims,
        }
        try:
            return self._signer.sign(go_object(claims).encode())
        except Exception as e:
            raise SigningFailed(f"cannot sign with key {self.signing_key.kid!r}") from e
