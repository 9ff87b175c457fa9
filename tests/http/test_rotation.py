"""Signing-key rotation over HTTP: the JWKS serves every key of the set, and a
token keeps verifying as a consumer does while its key stays in the set."""

import concurrent.futures
import json
import time

import pytest

from tests.consumer import token_header, verify_token
from tests.httpclient import exchange, request
from tests.support import CountingVerify
from token_exchange.signing.keyfile import PRIVATE_PARAMS, generate_private_jwk, parse_key_set


def public_half(private):
    return {name: value for name, value in private.items() if name not in PRIVATE_PARAMS}


def write_key_file(path, data):
    path.write_text(json.dumps(data))
    return path


def autojoin_token(service, api_key):
    response = exchange(service.base_url, "autojoin", api_key)
    assert response.status == 200, response.body
    return response.json()["token"]


def test_jwks_lists_every_published_key_and_no_private_parameter(start_service, tmp_path, private_jwks):
    older = public_half(private_jwks["EdDSA"])
    members = [private_jwks["RS256"], private_jwks["ES256"], older]
    service = start_service(key_path=write_key_file(tmp_path / "jwks.json", {"keys": members}))
    response = request(service.base_url, "GET", "/.well-known/jwks.json")
    assert response.status == 200
    published = json.loads(response.body)["keys"]
    assert [key["kid"] for key in published] == [member["kid"] for member in members]
    for key, member in zip(published, members):
        assert not set(PRIVATE_PARAMS) & set(key)
        assert (key["alg"], key["use"], key["kty"]) == (member["alg"], "sig", member["kty"])
    for member in members[:2]:
        for name in PRIVATE_PARAMS:
            assert name not in member or member[name].encode() not in response.body


def test_token_of_the_previous_key_verifies_until_that_key_leaves_the_set(start_service, tmp_path, autojoin_key):
    old = generate_private_jwk("RS256")
    new = generate_private_jwk("ES256")
    api_key = autojoin_key().api_key

    before = start_service(key_path=write_key_file(tmp_path / "before.json", old))
    old_token = autojoin_token(before, api_key)
    old_issued = time.time()  # restarts take a while: verify its iat against when it was issued
    assert token_header(old_token)["kid"] == old["kid"]

    # Switched: the new key signs, the old one is still published.
    switched = start_service(key_path=write_key_file(tmp_path / "switched.json", {"keys": [new, old]}))
    new_token = autojoin_token(switched, api_key)
    assert token_header(new_token)["kid"] == new["kid"]
    assert verify_token(switched.base_url, old_token, "autojoin", now=old_issued)["org"] == "example-org"
    assert verify_token(switched.base_url, new_token, "autojoin")["org"] == "example-org"

    # Retired: the old key is gone from the set, and its tokens with it.
    retired = start_service(key_path=write_key_file(tmp_path / "retired.json", {"keys": [new]}))
    assert verify_token(retired.base_url, new_token, "autojoin")["org"] == "example-org"
    with pytest.raises(AssertionError, match="no JWKS key with the token's kid"):
        verify_token(retired.base_url, old_token, "autojoin", now=old_issued)


def test_previous_key_kept_public_only_still_verifies_its_tokens(start_service, tmp_path, autojoin_key):
    old = generate_private_jwk("EdDSA")
    new = generate_private_jwk("RS256")
    api_key = autojoin_key().api_key
    old_token = autojoin_token(start_service(key_path=write_key_file(tmp_path / "old.json", old)), api_key)
    old_issued = time.time()
    switched = start_service(key_path=write_key_file(tmp_path / "switched.json", {"keys": [public_half(old), new]}))
    assert token_header(autojoin_token(switched, api_key))["kid"] == new["kid"]
    assert verify_token(switched.base_url, old_token, "autojoin", now=old_issued)["org"] == "example-org"


def jwks(service, headers=None):
    return request(service.base_url, "GET", "/.well-known/jwks.json", None, headers)


def replace_keys(service, data):
    """Replace the service's key set on its loop, as a reload does."""
    service.loop.call_soon_threadsafe(service.signing_keys.replace, parse_key_set(json.dumps(data)))
    service.settle()


def test_a_replaced_key_set_signs_and_is_published_at_once(start_service, tmp_path, autojoin_key):
    old = generate_private_jwk("RS256")
    new = generate_private_jwk("ES256")
    api_key = autojoin_key().api_key
    service = start_service(key_path=write_key_file(tmp_path / "old.json", old))
    etag = jwks(service).headers["Etag"]
    assert jwks(service, {"If-None-Match": etag}).status == 304

    replace_keys(service, {"keys": [new, old]})
    token = autojoin_token(service, api_key)
    assert token_header(token)["kid"] == new["kid"]
    assert verify_token(service.base_url, token, "autojoin")["org"] == "example-org"
    # A cache revalidating with the old ETag gets the new body, with its own ETag.
    after = jwks(service, {"If-None-Match": etag})
    assert after.status == 200
    assert [key["kid"] for key in json.loads(after.body)["keys"]] == [new["kid"], old["kid"]]
    assert after.headers["Etag"] not in (etag, None)
    assert jwks(service, {"If-None-Match": after.headers["Etag"]}).status == 304


def test_a_token_is_signed_with_the_keys_in_use_when_its_key_has_been_checked(start_service, tmp_path, integration_key):
    # The key set is replaced while the request's bcrypt check runs: the token carries the new kid, not
    # the one of the request's start, which the new set may no longer publish.
    old = generate_private_jwk("RS256")
    new = generate_private_jwk("ES256")
    verify = CountingVerify()
    service = start_service(key_path=write_key_file(tmp_path / "old.json", old), verifier_options=dict(verify=verify))
    key = integration_key()
    verify.hold()
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        answer = pool.submit(exchange, service.base_url, "integration", key.api_key)
        assert verify.started.acquire(timeout=30)
        replace_keys(service, {"keys": [new]})
        verify.release.set()
        response = answer.result(30)
    assert response.status == 200
    token = response.json()["token"]
    assert token_header(token)["kid"] == new["kid"]
    assert verify_token(service.base_url, token, "integration")["int_id"] == "acme"
