"""Building and signing the JWTs the service issues.

Claims follow the Go service: iss "token-exchange", a one-string aud,
iat = nbf = now, exp = now + lifetime (integer seconds), a random UUID jti.
"""

import json
import time
import uuid
from dataclasses import dataclass

from jwcrypto import jws

ISSUER = "token-exchange"


@dataclass(frozen=True)
class Audience:
    name: str
    lifetime_seconds: int


AUTOJOIN = Audience("autojoin", 3600)
INTEGRATION = Audience("integration", 20)


class TokenIssuer:
    """Signs tokens with one signing key; the clock is injectable for tests."""

    def __init__(self, signing_key, clock=time.time):
        self._key = signing_key
        self._clock = clock
        self._protected = json.dumps(
            {"alg": signing_key.alg, "kid": signing_key.kid, "typ": "JWT"}, separators=(",", ":")
        )

    def autojoin_token(self, org):
        return self._sign(AUTOJOIN, {"org": org})

    def integration_token(self, integration_id, key_id, tier):
        return self._sign(INTEGRATION, {"int_id": integration_id, "key_id": key_id, "tier": tier})

    def _sign(self, audience, extra_claims):
        now = int(self._clock())
        claims = {
            "iss": ISSUER,
            "aud": audience.name,
            "exp": now + audience.lifetime_seconds,
            "nbf": now,
            "iat": now,
            "jti": str(uuid.uuid4()),
            **extra_claims,
        }
        token = jws.JWS(json.dumps(claims, separators=(",", ":")).encode())
        token.add_signature(self._key.jwk, alg=self._key.alg, protected=self._protected)
        return token.serialize(compact=True)
