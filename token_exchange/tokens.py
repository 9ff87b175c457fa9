"""Building and signing the JWTs the service issues.

Claims follow the Go service: iss "token-exchange", a one-string aud,
iat = nbf = now, exp = now + lifetime (integer seconds), a random UUID jti.

Signing is on every exchange's path, so everything that can be done once
is: the protected header is encoded at start-up, and tokens are signed
with the key object inside the loaded JWK (cryptography's), not through
jwcrypto's JWS object, whose per-call work costs more than the rest of a
warm request. The output is the same compact JWS; jwcrypto still loads the
key, publishes the JWKS and verifies tokens in the tests.
"""

import base64
import json
import os
import time
from dataclasses import dataclass

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

ISSUER = "token-exchange"


@dataclass(frozen=True)
class Audience:
    name: str
    lifetime_seconds: int


AUTOJOIN = Audience("autojoin", 3600)
INTEGRATION = Audience("integration", 20)

_HASHES = {"256": hashes.SHA256, "384": hashes.SHA384, "512": hashes.SHA512}
# Bytes of r and of s in an ES* signature (RFC 7518 section 3.4).
_EC_COORDINATE_BYTES = {"ES256": 32, "ES384": 48, "ES512": 66}


def b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=")


def signer_for(signing_key):
    """A function signing bytes as JWS alg signing_key.alg does, with the key's cryptography object."""
    alg = signing_key.alg
    key = signing_key.jwk.get_op_key("sign")
    if alg == "EdDSA":
        return key.sign
    hash_type = _HASHES[alg[2:]]
    if alg.startswith("RS"):
        pkcs1 = padding.PKCS1v15()
        return lambda data: key.sign(data, pkcs1, hash_type())
    if alg.startswith("PS"):
        pss = padding.PSS(mgf=padding.MGF1(hash_type()), salt_length=hash_type.digest_size)
        return lambda data: key.sign(data, pss, hash_type())
    if alg.startswith("ES"):
        size = _EC_COORDINATE_BYTES[alg]
        ecdsa = ec.ECDSA(hash_type())

        def sign_ec(data):
            # JWS wants r || s of fixed size, not cryptography's DER.
            r, s = decode_dss_signature(key.sign(data, ecdsa))
            return r.to_bytes(size, "big") + s.to_bytes(size, "big")
        return sign_ec
    raise ValueError(f"no signer for alg {alg!r}")


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
        self._sign_bytes = signer_for(signing_key)
        header = json.dumps({"alg": signing_key.alg, "kid": signing_key.kid, "typ": "JWT"}, separators=(",", ":"))
        self._encoded_header = b64url(header.encode())
        self._encoder = json.JSONEncoder(separators=(",", ":"))

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
        signing_input = self._encoded_header + b"." + b64url(self._encoder.encode(claims).encode())
        signature = b64url(self._sign_bytes(signing_input))
        return (signing_input + b"." + signature).decode("ascii")
