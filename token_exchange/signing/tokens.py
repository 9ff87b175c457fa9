"""Building and signing the JWTs the service issues.

Claims follow the Go service: iss "token-exchange", a one-string aud,
iat = nbf = now, exp = now + lifetime (integer seconds), a random UUID jti.
Signing is on every exchange's path, so the header is encoded once (by
the CompactSigner) and the claims that never change are encoded once per
audience: a token's payload is that text plus the times, the jti and the
caller's claims, each JSON-encoded. The result is byte for byte what
json.dumps(claims, separators=(",", ":")) gives.
"""

import json
import os
import time
from dataclasses import dataclass

from token_exchange.signing.jws import CompactSigner

ISSUER = "token-exchange"


@dataclass(frozen=True)
class Audience:
    name: str
    lifetime_seconds: int


AUTOJOIN = Audience("autojoin", 3600)
INTEGRATION = Audience("integration", 20)


# A jti takes 16 random bytes; they are drawn for this many tokens at a
# time, one getrandom() call instead of one per token.
JTI_BATCH = 256


def _uuid4_text(h):
    """The text of a version-4 UUID from 32 random hex digits h, as str(uuid.uuid4()) writes it:
    4 is the version digit, and the variant's two bits (10) lead the fourth group."""
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{_VARIANT_DIGIT[h[16]]}{h[17:20]}-{h[20:32]}"


# A hex digit with its two top bits set to the RFC 4122 variant, 10.
_VARIANT_DIGIT = {digit: "89ab"[int(digit, 16) & 3] for digit in "0123456789abcdef"}


# A str goes straight to the C string encoder: the JSON text of one string.
_json_string = json.JSONEncoder().encode


def _static_claims(audience):
    """The payload's text up to the exp value, the same in every token for audience."""
    return '{"iss":' + _json_string(ISSUER) + ',"aud":' + _json_string(audience.name) + ',"exp":'


class TokenIssuer:
    """Signs tokens with one signing key; the clock is injectable for tests."""

    def __init__(self, signing_key, clock=time.time):
        self._key = signing_key
        self._clock = clock
        self._signer = CompactSigner(signing_key, {"alg": signing_key.alg, "kid": signing_key.kid, "typ": "JWT"})
        self._static_claims = {audience: _static_claims(audience) for audience in (AUTOJOIN, INTEGRATION)}
        # Random hex digits not yet used, 32 per jti. Each process draws its
        # own: an issuer is made after any fork (server.serve), never shared.
        self._jti_hex = ""
        self._jti_offset = 0

    def autojoin_token(self, org):
        return self._sign(AUTOJOIN, '"org":' + _json_string(org))

    def integration_token(self, integration_id, key_id, tier):
        return self._sign(INTEGRATION, f'"int_id":{_json_string(integration_id)},"key_id":{_json_string(key_id)},'
                                       f'"tier":{int(tier):d}')

    def _sign(self, audience, extra_claims):
        """extra_claims: the JSON text of the audience's own members, in order."""
        now = int(self._clock())
        payload = (f'{self._static_claims[audience]}{now + audience.lifetime_seconds},"nbf":{now},"iat":{now},'
                   f'"jti":"{self._random_jti()}",{extra_claims}}}')
        return self._signer.sign(payload.encode())

    def _random_jti(self):
        start = self._jti_offset
        if start == len(self._jti_hex):
            self._jti_hex, start = os.urandom(16 * JTI_BATCH).hex(), 0
        self._jti_offset = start + 32
        return _uuid4_text(self._jti_hex[start:start + 32])
