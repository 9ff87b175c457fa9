"""Verifying tokens the way locate and the speed-test servers do.

Fetch the JWKS over HTTP, pick the key by the token's kid, check the
signature with the header's alg, then iss, aud, exp and nbf.
"""

import json
import time
import uuid

from jwcrypto import jwk, jws, jwt

from tests.httpclient import request

ISSUER = "token-exchange"
LIFETIMES = {"autojoin": 3600, "integration": 20}


def fetch_jwks(base_url):
    response = request(base_url, "GET", "/.well-known/jwks.json")
    assert response.status == 200
    return jwk.JWKSet.from_json(response.body)


def token_header(token):
    parsed = jws.JWS()
    parsed.deserialize(token)
    return parsed.jose_header


def verify_token(base_url, token, audience, now=None):
    """Return the claims of a token that a consumer would accept; fail otherwise."""
    header = token_header(token)
    assert set(header) >= {"alg", "kid"}
    key = fetch_jwks(base_url).get_key(header["kid"])
    assert key is not None, "no JWKS key with the token's kid"
    assert not key.has_private
    verified = jwt.JWT(algs=[header["alg"]], check_claims={"iss": ISSUER, "aud": audience, "exp": None, "nbf": None})
    verified.leeway = 0
    verified.deserialize(token, key)
    claims = json.loads(verified.claims)
    now = time.time() if now is None else now
    for name in ("iat", "nbf", "exp"):
        assert isinstance(claims[name], int), f"{name} must be integer seconds"
    assert claims["iat"] == claims["nbf"]
    assert abs(claims["iat"] - now) <= 5
    assert claims["exp"] - claims["iat"] == LIFETIMES[audience]
    assert claims["aud"] == audience  # a string, not a list
    assert str(uuid.UUID(claims["jti"])) == claims["jti"]
    return claims
