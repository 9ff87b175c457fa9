"""Building and signing the JWTs the service issues.

Claims follow the Go service: iss "token-exchange", a one-string aud,
iat = nbf = now, exp = now + lifetime (integer seconds), a random UUID jti.
Signing is on every exchange's path, so the header is encoded once (by
the CompactSigner) and claims go through one prebuilt JSON encoder.
"""

import json
import os
import time
from dataclasses import dataclass

from token_exchange.jwssigner import CompactSigner

ISSUER = "token-exchange"


@dataclass(frozen=True)
class Audience:
    name: str
    lifetime_seconds: int


AUTOJOIN = Audience("autojoin", 3600)
INTEGRATION = Audience("integration", 20)


def _random_uuid():
    # The text of uuid.uuid4(), without building a UUID object.
    raw = bytearray(os.urandom(16))
    raw[6] = (raw[6] & 0x0F) | 0x40
    raw[8] = (raw[8] & 0x3F) | 0x80
    h = raw.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


class TokenIssuer:
    """Signs tokens with one signing key; the clock is injectable for tests."""

    def __init__(self, signing_key, clock=time.time):
        self._key = signing_key
        self._clock = clock
        self._signer = CompactSigner(signing_key, {"alg": signing_key.alg, "kid": signing_key.kid, "typ": "JWT"})
        # json.dumps with options builds a new encoder on every call.
        self._encode = json.JSONEncoder(separators=(",", ":")).encode

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
            "jti": _random_uuid(),
            **extra_claims,
        }
        return self._signer.sign(self._encode(claims).encode())
