"""Every row of the README's endpoint and error tables, over HTTP."""

import json

import pytest

from tests.consumer import fetch_jwks, token_header, verify_token
from tests.httpclient import exchange, raw_request, request
from tests.support import ALGS, MALFORMED, plain_id
from tests.support import key as well_formed_key
from token_exchange.signing.keyfile import PRIVATE_PARAMS
from token_exchange.signing.tokens import TokenIssuer
from token_exchange.store import StoreUnavailable
from token_exchange.web.body import MAX_BODY_BYTES

TEXT_PLAIN = "text/plain; charset=utf-8"


ENDPOINTS = ("integration", "autojoin")
GO_JWK_MEMBERS = {
    "RS256": ["use", "kty", "kid", "alg", "n", "e"],
    "ES256": ["use", "kty", "kid", "crv", "alg", "x", "y"],
    "EdDSA": ["use", "kty", "kid", "crv", "alg", "x"],
}


def assert_error(response, status, body):
    assert response.status == status
    assert response.body == body.encode()
    assert response.headers["Content-Type"] == TEXT_PLAIN
    assert response.headers["X-Content-Type-Options"] == "nosniff"  # as Go's http.Error sets it


# Successful exchanges, verified as a consumer does, for each key type.


@pytest.mark.parametrize("alg", ALGS)
def test_integration_token_verifies_against_jwks(start_service, integration_key, alg):
    service = start_service(alg)
    key = integration_key("acme", tier=2)

    response = exchange(service.base_url, "integration", key.api_key)

    assert response.status == 200
    assert response.headers["Content-Type"] == "application/json"
    token = response.json()["token"]
    # Go's json.Encoder: compact, one newline.
    assert response.body == b'{"token":"' + token.encode() + b'"}\n'
    claims = verify_token(service.base_url, token, "integration")
    assert claims["int_id"] == "acme"
    assert claims["key_id"] == key.key_id
    assert claims["tier"] == 2
    assert "org" not in claims
    header = token_header(token)
    assert header["alg"] == alg
    assert header["kid"] == service.signing_key.kid


@pytest.mark.parametrize("alg", ALGS)
def test_autojoin_token_verifies_against_jwks(start_service, autojoin_key, alg):
    service = start_service(alg)
    key = autojoin_key("example-org")

    response = exchange(service.base_url, "autojoin", key.api_key)

    assert response.status == 200
    assert response.headers["Content-Type"] == "application/json"
    claims = verify_token(service.base_url, response.json()["token"], "autojoin")
    assert claims["org"] == "example-org"
    assert not {"int_id", "key_id", "tier"} & set(claims)


def test_token_of_one_audience_is_refused_for_the_other(service, integration_key):
    token = exchange(service.base_url, "integration", integration_key().api_key).json()["token"]
    with pytest.raises(Exception):  # noqa: B017 (any refusal will do: which one is jwcrypto's choice)
        verify_token(service.base_url, token, "autojoin")


def test_every_token_has_a_fresh_jti(service, integration_key, autojoin_key):
    integration = integration_key()
    autojoin = autojoin_key()
    jtis = set()
    for _ in range(10):
        for endpoint, key, audience in (
            ("integration", integration, "integration"),
            ("autojoin", autojoin, "autojoin"),
        ):
            token = exchange(service.base_url, endpoint, key.api_key).json()["token"]
            jtis.add(verify_token(service.base_url, token, audience)["jti"])
    assert len(jtis) == 20


def test_expired_token_is_refused_by_a_consumer(start_service, integration_key):
    clock = [1_000_000_000.0]  # long ago
    service = start_service(issuer_factory=lambda key: TokenIssuer(key, clock=lambda: clock[0]))
    token = exchange(service.base_url, "integration", integration_key().api_key).json()["token"]
    with pytest.raises(Exception, match="[Ee]xpired"):
        verify_token(service.base_url, token, "integration", now=clock[0])


def test_token_signed_by_another_key_is_refused(start_service, integration_key):
    first = start_service("ES256")
    second = start_service("EdDSA")
    token = exchange(first.base_url, "integration", integration_key().api_key).json()["token"]
    with pytest.raises(AssertionError, match="kid"):
        verify_token(second.base_url, token, "integration")


def test_request_fields_beyond_api_key_are_ignored(service, integration_key):
    key = integration_key()
    body = json.dumps({"api_key": key.api_key, "extra": [1, 2], "tier": 9})
    response = request(service.base_url, "POST", "/v0/token/integration", body)
    assert response.status == 200
    assert verify_token(service.base_url, response.json()["token"], "integration")["tier"] == 0


# The body read as Go's decoder reads it (web/body.py; tests/unit/test_body.py has every rule).


@pytest.mark.parametrize(
    "template",
    [
        b'{"API_KEY": "%s"}',
        b'{"Api_Key": "%s"}',
        b'{"api_\xe2\x84\xaaey": "%s"}',  # a Kelvin sign for the k
        b'{"api_key": "wrong", "API_KEY": "%s"}',
        b'{"api_key": "%s"} garbage',
        b'{"api_key": "%s"}{"api_key": "wrong"}',
        b'{"api_key": "%s"}}',
        b'{"x": "\xff\xfe", "api_key": "%s"}\n\xff',
    ],
    ids=plain_id,
)
def test_bodies_go_reads_as_the_key_get_a_token(service, integration_key, autojoin_key, template):
    for endpoint, key in (("integration", integration_key().api_key), ("autojoin", autojoin_key().api_key)):
        response = request(service.base_url, "POST", f"/v0/token/{endpoint}", template % key.encode())
        assert response.status == 200, (endpoint, response.body)
        verify_token(service.base_url, response.json()["token"], endpoint)


@pytest.mark.parametrize(
    "template, status",
    [
        (b'{"api_key": "%s", "API_KEY": "wrong"}', 401),  # the last matching field wins
        (b'{"api_key": "%s\xff"}', 401),  # invalid UTF-8 reads as U+FFFD, which no key holds
        (b'{"api_key": "%s", "Api_Key": 5}', 400),
        (b'{"api_key": "%s", "API_KEY": null}', 400),
    ],
    ids=plain_id,
)
def test_bodies_go_reads_otherwise_are_refused(service, integration_key, template, status):
    body = template % integration_key().api_key.encode()
    response = request(service.base_url, "POST", "/v0/token/integration", body)
    assert_error(response, status, "Invalid API key\n" if status == 401 else "Invalid request body\n")


def test_sha256_hash_written_by_the_go_tool_is_accepted(service, integration_key):
    key = integration_key(hash_scheme="sha256")
    assert exchange(service.base_url, "integration", key.api_key).status == 200


def test_default_bcrypt_cost_key_is_accepted(service, integration_key):
    key = integration_key(bcrypt_cost=12)
    assert exchange(service.base_url, "integration", key.api_key).status == 200


# JWKS and health.


@pytest.mark.parametrize("alg", ALGS)
def test_jwks_serves_only_the_public_key(start_service, alg):
    service = start_service(alg)
    response = request(service.base_url, "GET", "/.well-known/jwks.json")

    assert response.status == 200
    assert response.headers["Content-Type"] == "application/json"
    assert response.headers["Cache-Control"] == "public, max-age=3600, must-revalidate"
    assert response.headers["Access-Control-Allow-Origin"] == "*"
    keys = response.json()["keys"]
    assert len(keys) == 1
    assert keys[0]["kid"] == service.signing_key.kid
    assert keys[0]["alg"] == alg
    # Members in the order the Go service writes them (go-jose), read off its JWKS for each key type.
    assert list(keys[0]) == GO_JWK_MEMBERS[alg]
    assert response.body.endswith(b"}]}\n")
    assert not set(PRIVATE_PARAMS) & set(keys[0])
    private_values = {str(v) for k, v in service.signing_key.jwk.export(as_dict=True).items() if k in PRIVATE_PARAMS}
    assert private_values and not any(value in response.text for value in private_values)
    assert fetch_jwks(service.base_url).get_key(service.signing_key.kid) is not None


@pytest.mark.parametrize("method", ["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"])
def test_health_says_ok_to_any_method(service, method):
    # As the Go service's /health, which its mux registers for every method.
    response = request(service.base_url, method, "/health", "{}" if method in ("POST", "PUT", "PATCH") else None)
    assert response.status == 200
    assert response.body == b"ok"
    assert response.headers["Content-Type"] == TEXT_PLAIN
    assert "X-Content-Type-Options" not in response.headers and "Etag" not in response.headers


def test_jwks_has_an_etag_a_cache_revalidates_with(service):
    first = request(service.base_url, "GET", "/.well-known/jwks.json")
    assert "X-Content-Type-Options" not in first.headers
    etag = first.headers["Etag"]
    again = request(service.base_url, "GET", "/.well-known/jwks.json", None, {"If-None-Match": etag})
    assert again.status == 304
    assert again.body == b""


@pytest.mark.parametrize("path", ["/health", "/.well-known/jwks.json"])
def test_head_is_allowed_where_get_is(service, path):
    response = request(service.base_url, "HEAD", path)
    assert response.status == 200
    assert response.body == b""


# 400: body not a JSON object, or api_key not a string.


@pytest.mark.parametrize("endpoint", ENDPOINTS)
@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"not json",
        b"{",
        b"[]",
        b'"mlabk.x"',
        b"42",
        b"null",
        b"true",
        b'{"api_key": 42}',
        b'{"api_key": null}',
        b'{"api_key": ["k"]}',
        b'{"api_key": {"k": 1}}',
        b'{"api_key": "k"',
        b"trailing",
        b'{"api_key": NaN}',
        b"\xff\xfe{}",
        b"[" * 50000,
    ],
    ids=plain_id,
)
def test_invalid_request_body_is_400(service, endpoint, body):
    response = request(service.base_url, "POST", f"/v0/token/{endpoint}", body)
    assert_error(response, 400, "Invalid request body\n")


@pytest.mark.parametrize("endpoint", ENDPOINTS)
def test_oversized_body_is_413(service, endpoint):
    body = json.dumps({"api_key": "x" * 70_000})
    response = request(service.base_url, "POST", f"/v0/token/{endpoint}", body)
    assert_error(response, 413, "Request body too large\n")
    assert request(service.base_url, "GET", "/health").status == 200


# 401: malformed, unknown, not active, or secret mismatch.


@pytest.mark.parametrize("endpoint", ENDPOINTS)
@pytest.mark.parametrize("body", [b"{}", b'{"api_key": ""}', b'{"API_KEY": "x"}'])
def test_missing_or_empty_api_key_is_401(service, endpoint, body):
    response = request(service.base_url, "POST", f"/v0/token/{endpoint}", body)
    assert_error(response, 401, "Invalid API key\n")


def test_unknown_integration_or_key_id_is_401(service, integration_key):
    key = integration_key("acme")
    secret = key.api_key.rsplit(".", 1)[1]
    for api_key in (f"mlabk.cii_other.{key.key_id}.{secret}", f"mlabk.cii_acme.ki_0000000000000000.{secret}"):
        assert_error(exchange(service.base_url, "integration", api_key), 401, "Invalid API key\n")


def test_wrong_secret_is_401(service, integration_key):
    for scheme in ("bcrypt", "sha256"):
        key = integration_key(f"acme-{scheme}", hash_scheme=scheme)
        prefix, secret = key.api_key.rsplit(".", 1)
        for wrong in (secret[:-1] + ("A" if secret[-1] != "A" else "B"), secret[:-1], secret + "x", "x"):
            assert_error(exchange(service.base_url, "integration", f"{prefix}.{wrong}"), 401, "Invalid API key\n")
        assert exchange(service.base_url, "integration", key.api_key).status == 200


def test_inactive_key_is_401(service, store, integration_key, db_path):
    import sqlite3

    key = integration_key()
    assert exchange(service.base_url, "integration", key.api_key).status == 200
    with sqlite3.connect(db_path) as conn:
        conn.execute("UPDATE integration_keys SET status = 'revoked' WHERE key_id = ?", (key.key_id,))
    assert_error(exchange(service.base_url, "integration", key.api_key), 401, "Invalid API key\n")


def test_secret_longer_than_bcrypt_limit_is_401_not_500(service, integration_key):
    key = integration_key()
    prefix, secret = key.api_key.rsplit(".", 1)
    for length in (72, 73, 128):
        long_secret = (secret * 4)[:length]
        assert_error(exchange(service.base_url, "integration", f"{prefix}.{long_secret}"), 401, "Invalid API key\n")


def test_unknown_autojoin_key_is_401(service, autojoin_key):
    key = autojoin_key()
    for wrong in (key.api_key[:-1], key.api_key + "x", key.api_key.upper(), "x" * 2000):
        assert_error(exchange(service.base_url, "autojoin", wrong), 401, "Invalid API key\n")


def test_key_of_one_kind_is_refused_by_the_other_endpoint(service, integration_key, autojoin_key):
    assert_error(exchange(service.base_url, "autojoin", integration_key().api_key), 401, "Invalid API key\n")
    assert_error(exchange(service.base_url, "integration", autojoin_key().api_key), 401, "Invalid API key\n")


def test_namespaces_are_honoured(start_service, integration_key, autojoin_key):
    integration = integration_key()
    autojoin = autojoin_key()
    other = start_service(integration_ns="other-integrations", platform_ns="other-platform")
    assert_error(exchange(other.base_url, "integration", integration.api_key), 401, "Invalid API key\n")
    assert_error(exchange(other.base_url, "autojoin", autojoin.api_key), 401, "Invalid API key\n")


# 405: wrong method on a known path, with Allow.


@pytest.mark.parametrize(
    "method,path,allow",
    [
        ("GET", "/v0/token/integration", "POST"),
        ("PUT", "/v0/token/integration", "POST"),
        ("HEAD", "/v0/token/autojoin", "POST"),
        ("GET", "/v0/token/autojoin", "POST"),
        ("DELETE", "/v0/token/autojoin", "POST"),
        ("PUT", "/v0/token/autojoin", "POST"),  # with a body over the size limit, below
        ("POST", "/.well-known/jwks.json", "GET, HEAD"),
        ("PATCH", "/.well-known/jwks.json", "GET, HEAD"),
        ("BREW", "/health", "GET, HEAD, POST, DELETE, PATCH, PUT, OPTIONS"),
    ],
)
def test_wrong_method_is_405_with_allow(service, method, path, allow):
    body = b"x" * (MAX_BODY_BYTES + 1) if method == "PUT" and "autojoin" in path else None
    response = request(service.base_url, method, path, body)
    assert response.status == 405
    assert response.headers["Allow"] == allow
    if method != "HEAD":
        assert response.body == b"Method Not Allowed\n"  # Go's mux says it so


@pytest.mark.parametrize(
    "refused",
    [
        b"GET /v0/token/integration HTTP/1.1\r\nHost: x\r\n\r\n",
        b"PUT /v0/token/integration HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello",
        b"OPTIONS /v0/token/autojoin HTTP/1.1\r\nHost: x\r\n\r\n",
        b"DELETE /v0/token/autojoin HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}",
    ],
)
def test_wrong_method_on_a_token_path_keeps_the_connection(service, refused):
    # As Go's service: the 405 does not end the connection, and the request sent behind it is answered.
    answers = raw_request(service.port, refused + b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    first, _, second = answers.partition(b"Method Not Allowed\n")
    assert first.startswith(b"HTTP/1.1 405 Method Not Allowed\r\n")
    assert b"Connection: close" not in first
    assert second.startswith(b"HTTP/1.1 200 OK\r\n") and second.endswith(b"\r\n\r\nok"), answers


@pytest.mark.parametrize("path", ["/", "/v0/token", "/v0/token/integration/", "/v0/token/other", "/healthz"])
def test_unknown_path_is_404(service, path):
    assert_error(request(service.base_url, "GET", path), 404, "404 page not found\n")


# 500 and 503.


class FailingSigner:
    def sign(self, payload):
        raise RuntimeError("signing backend failed")


def FailingIssuer(signing_key):
    return TokenIssuer(signing_key, signer=FailingSigner())


def test_signing_failure_is_500(start_service, integration_key, autojoin_key):
    service = start_service(issuer_factory=FailingIssuer)
    assert_error(
        exchange(service.base_url, "integration", integration_key().api_key), 500, "Failed to generate token\n"
    )
    assert_error(exchange(service.base_url, "autojoin", autojoin_key().api_key), 500, "Failed to generate token\n")


def test_unavailable_store_is_503_with_retry_after(service, integration_key, autojoin_key, monkeypatch):
    integration = integration_key()
    autojoin = autojoin_key()

    def unavailable(*args):
        raise StoreUnavailable("disk I/O error")

    monkeypatch.setattr(service.store, "get_integration_key", unavailable)
    monkeypatch.setattr(service.store, "find_autojoin_org", unavailable)
    for endpoint, key in (("integration", integration), ("autojoin", autojoin)):
        response = exchange(service.base_url, endpoint, key.api_key)
        assert response.status == 503
        assert response.headers["Retry-After"] == "1"
        assert response.headers["Content-Type"] == TEXT_PLAIN
        assert response.body == b"Key store unavailable, retry later\n"
    monkeypatch.undo()
    assert exchange(service.base_url, "integration", integration.api_key).status == 200


@pytest.mark.parametrize("api_key", MALFORMED.values(), ids=MALFORMED.keys())
def test_malformed_keys_are_401_without_a_store_lookup(service, monkeypatch, api_key):
    lookups = []
    monkeypatch.setattr(service.store, "get_integration_key", lambda *args: lookups.append(args))
    response = exchange(service.base_url, "integration", api_key)
    assert response.status == 401
    assert response.body == b"Invalid API key\n"
    assert lookups == []


def test_well_formed_key_reaches_the_store(service, monkeypatch):
    lookups = []
    monkeypatch.setattr(service.store, "get_integration_key", lambda *args: lookups.append(args))
    assert exchange(service.base_url, "integration", well_formed_key()).status == 401
    assert lookups == [("acme", "ki_0123456789abcdef")]
