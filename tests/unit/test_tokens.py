"""Tokens signed by TokenIssuer (CompactSigner), verified with jwcrypto as consumers do."""

import base64
import json
import uuid

import pytest
from jwcrypto import jwk, jws, jwt

from tests.support import plain_id
from token_exchange.signing.keyfile import SUPPORTED_ALGS, parse_key_set
from token_exchange.signing.tokens import TokenIssuer
from token_exchange.verification.verifier import IntegrationIdentity

NOW = 1_700_000_000
# One key per key type and size, shared by the algorithms that use it.
KEY_PARAMS = {
    ("RSA", None): dict(kty="RSA", size=2048),
    ("EC", "P-256"): dict(kty="EC", crv="P-256"),
    ("EC", "P-384"): dict(kty="EC", crv="P-384"),
    ("EC", "P-521"): dict(kty="EC", crv="P-521"),
    ("OKP", "Ed25519"): dict(kty="OKP", crv="Ed25519"),
}


@pytest.fixture(scope="module")
def private_keys():
    return {kind: json.loads(jwk.JWK.generate(**params).export_private()) for kind, params in KEY_PARAMS.items()}


def signing_key_for(alg, private_keys):
    data = dict(private_keys[SUPPORTED_ALGS[alg]], alg=alg, kid=f"kid-{alg}")
    return parse_key_set(json.dumps(data)).signing_key


def verified_claims(token, signing_key, audience):
    public = jwk.JWK(**signing_key.public_jwk)
    checked = jwt.JWT(algs=[signing_key.alg], check_claims={"iss": "token-exchange", "aud": audience})
    checked.leeway = 10**10  # the tokens carry a fixed past time
    checked.deserialize(token, public)
    return json.loads(checked.claims)


@pytest.mark.parametrize("alg", sorted(SUPPORTED_ALGS))
def test_every_supported_algorithm_signs_tokens_jwcrypto_verifies(alg, private_keys):
    signing_key = signing_key_for(alg, private_keys)
    issuer = TokenIssuer(signing_key, clock=lambda: NOW + 0.9)
    token = issuer.integration_token(IntegrationIdentity("acme", "key-1", 2))
    claims = verified_claims(token, signing_key, "integration")
    jti = claims.pop("jti")
    assert str(uuid.UUID(jti)) == jti
    assert claims == {
        "iss": "token-exchange",
        "aud": "integration",
        "exp": NOW + 20,
        "nbf": NOW,
        "iat": NOW,
        "int_id": "acme",
        "key_id": "key-1",
        "tier": 2,
    }
    parsed = jws.JWS()
    parsed.deserialize(token)
    assert parsed.jose_header == {"alg": alg, "kid": f"kid-{alg}"}  # as the Go service writes it


@pytest.mark.parametrize("alg", ["RS256", "ES256", "EdDSA"])
def test_a_tampered_token_is_refused(alg, private_keys):
    signing_key = signing_key_for(alg, private_keys)
    token = TokenIssuer(signing_key, clock=lambda: NOW).autojoin_token("example-org")
    header, payload, signature = token.split(".")
    forged = f"{header}.{payload[:-2]}{'A' if payload[-2] != 'A' else 'B'}{payload[-1]}.{signature}"
    with pytest.raises(Exception):  # noqa: B017 (any refusal will do: which one is jwcrypto's choice)
        verified_claims(forged, signing_key, "autojoin")


def test_claims_that_need_escaping_survive(private_keys):
    signing_key = signing_key_for("EdDSA", private_keys)
    org = 'org "quoted" \\ é \u2028'
    token = TokenIssuer(signing_key, clock=lambda: NOW).autojoin_token(org)
    claims = verified_claims(token, signing_key, "autojoin")
    assert claims["org"] == org
    assert claims["exp"] == NOW + 3600


def test_every_token_gets_its_own_jti(private_keys):
    signing_key = signing_key_for("ES256", private_keys)
    issuer = TokenIssuer(signing_key, clock=lambda: NOW)
    tokens = [issuer.integration_token(IntegrationIdentity("acme", "key-1", 0)) for _ in range(20)]
    jtis = {verified_claims(t, signing_key, "integration")["jti"] for t in tokens}
    assert len(jtis) == 20


@pytest.mark.parametrize(
    "text", ["acme", 'a "quoted" \\ name', "é 名前 \u2028 \U0001f600", "tab\tnew\nline\x00\x7f"], ids=plain_id
)
def test_payload_is_compact_json_with_sorted_members(text, private_keys):
    signing_key = signing_key_for("EdDSA", private_keys)
    issuer = TokenIssuer(signing_key, clock=lambda: NOW + 0.5)
    for token, audience, lifetime, own in (
        (
            issuer.integration_token(IntegrationIdentity(text, f"ki_{text}", 3)),
            "integration",
            20,
            {"int_id": text, "key_id": f"ki_{text}", "tier": 3},
        ),
        (issuer.autojoin_token(text), "autojoin", 3600, {"org": text}),
    ):
        verified_claims(token, signing_key, audience)  # a consumer accepts it
        payload = jws_payload(token)
        claims = json.loads(payload)
        expected = {
            "iss": "token-exchange",
            "aud": audience,
            "exp": NOW + lifetime,
            "nbf": NOW,
            "iat": NOW,
            "jti": claims["jti"],
            **own,
        }
        assert claims == expected
        assert list(claims) == sorted(expected)  # as Go marshals a map (exact bytes: the test below)


def test_payload_and_header_are_the_bytes_the_go_service_writes(private_keys):
    # Read off the Go service's token for an organisation of this name: HTML-safe escapes, U+2028
    # escaped, \b and \f as \u00XX, other non-ASCII text raw.
    signing_key = signing_key_for("RS256", private_keys)
    org = 'a<b>&c\u00e9\u2028"\\\x08\x0c/x'
    token = TokenIssuer(signing_key, clock=lambda: NOW).autojoin_token(org)
    payload = jws_payload(token)
    jti = json.loads(payload)["jti"]
    assert payload == (
        b'{"aud":"autojoin","exp":%d,"iat":%d,"iss":"token-exchange","jti":"%s","nbf":%d,'
        b'"org":"a\\u003cb\\u003e\\u0026c\xc3\xa9\\u2028\\"\\\\\\u0008\\u000c/x"}'
        % (NOW + 3600, NOW, jti.encode(), NOW)
    )
    header = token.split(".")[0]
    assert base64.urlsafe_b64decode(header + "=" * (-len(header) % 4)) == b'{"alg":"RS256","kid":"kid-RS256"}'


def jws_payload(token):
    """The payload bytes exactly as signed."""
    parsed = jws.JWS()
    parsed.deserialize(token)
    return parsed.objects["payload"]


def test_jti_is_a_random_version_4_uuid(private_keys):
    signing_key = signing_key_for("EdDSA", private_keys)
    issuer = TokenIssuer(signing_key, clock=lambda: NOW)
    count = 500
    jtis = [json.loads(jws_payload(issuer.autojoin_token("org")))["jti"] for _ in range(count)]
    parsed = [uuid.UUID(jti) for jti in jtis]
    assert [str(u) for u in parsed] == jtis
    assert {(u.version, u.variant) for u in parsed} == {(4, uuid.RFC_4122)}
    assert len(set(jtis)) == count
    # The two random bits of the variant digit take all four values.
    assert {jti[19] for jti in jtis} == set("89ab")
