"""Signing-key rotation with the built service and generate-jwk, step by step
as the README's runbook does it; tokens are checked as a consumer checks them
(JWKS by kid, signature, iss, aud, exp).
"""

import json

import pytest

from tests.consumer import token_header, verify_token
from tests.httpclient import exchange, request
from tests.test_tools import tools  # noqa: F401 (fixture)
from tests.zipapp_service import zipapp_home, zipapp_services  # noqa: F401 (fixtures)


def published_keys(service):
    """The JWKS keys in the order served."""
    response = request(service.base_url, "GET", "/.well-known/jwks.json")
    assert response.status == 200
    return response.json()["keys"]


def autojoin_token(service, api_key):
    response = exchange(service.base_url, "autojoin", api_key)
    assert response.status == 200, response.body
    return response.json()["token"]


def generate(tools, *args):
    done = tools.run("generate-jwk", *args)
    assert done.returncode == 0, done.stderr
    return done.stdout


def rewrite_keys(source, target, reorder):
    """What the runbook's jq one-liners do: a new file with the set's keys rearranged."""
    keys = json.loads(source.read_text())["keys"]
    target.write_text(json.dumps({"keys": reorder(keys)}))
    return target


def test_rotation_runbook_keeps_tokens_verifying_until_the_old_key_is_removed(
        tools, zipapp_services, autojoin_key, db_path, tmp_path):
    api_key = autojoin_key("example-org").api_key
    old = tmp_path / "jwk-priv.json"
    generate(tools, "-out", old, "-kid", "old-key")
    before = zipapp_services.start(key_path=old, store_path=db_path)
    old_token = autojoin_token(before, api_key)
    assert token_header(old_token)["kid"] == "old-key"

    # 1. Generate the new key and publish it: the old key still signs.
    published = tmp_path / "jwk-set-publish.json"
    assert "kid=new-key" in generate(tools, "-alg", "ES256", "-kid", "new-key", "-add-to", old, "-out", published)
    service = zipapp_services.start(key_path=published, store_path=db_path)
    assert [key["kid"] for key in published_keys(service)] == ["old-key", "new-key"]
    assert token_header(autojoin_token(service, api_key))["kid"] == "old-key"
    verify_token(service.base_url, old_token, "autojoin")

    # 2. Switch signing: the new key moves first; the old one stays published.
    switched = rewrite_keys(published, tmp_path / "jwk-set-switch.json", lambda keys: [keys[-1], *keys[:-1]])
    service = zipapp_services.start(key_path=switched, store_path=db_path)
    new_token = autojoin_token(service, api_key)
    assert token_header(new_token)["kid"] == "new-key"
    assert verify_token(service.base_url, new_token, "autojoin")["org"] == "example-org"
    assert verify_token(service.base_url, old_token, "autojoin")["org"] == "example-org"
    assert all(not {"d", "p", "q", "dp", "dq", "qi"} & set(key) for key in published_keys(service))

    # 3. Retire the old key: its tokens no longer verify, the new key's do.
    retired = rewrite_keys(switched, tmp_path / "jwk-set-retire.json", lambda keys: keys[:1])
    service = zipapp_services.start(key_path=retired, store_path=db_path)
    assert [key["kid"] for key in published_keys(service)] == ["new-key"]
    verify_token(service.base_url, new_token, "autojoin")
    with pytest.raises(AssertionError, match="no JWKS key with the token's kid"):
        verify_token(service.base_url, old_token, "autojoin")


def test_a_retired_public_key_alone_keeps_verifying(tools, zipapp_services, autojoin_key, db_path, tmp_path):
    """A set may hold a retired key's public half only: the private key can be destroyed at the switch."""
    api_key = autojoin_key("example-org").api_key
    old = tmp_path / "old.json"
    generate(tools, "-out", old, "-alg", "EdDSA", "-kid", "old-key")
    old_token = autojoin_token(zipapp_services.start(key_path=old, store_path=db_path), api_key)
    new = tmp_path / "new.json"
    generate(tools, "-out", new, "-kid", "new-key")
    old_public = {name: value for name, value in json.loads(old.read_text()).items() if name != "d"}
    key_set = tmp_path / "set.json"
    key_set.write_text(json.dumps({"keys": [old_public, json.loads(new.read_text())]}))

    service = zipapp_services.start(key_path=key_set, store_path=db_path)
    assert token_header(autojoin_token(service, api_key))["kid"] == "new-key"  # the only private key signs
    verify_token(service.base_url, old_token, "autojoin")


def test_generate_jwk_add_to_refuses_a_taken_kid_and_a_bad_file(tools, tmp_path):
    old = tmp_path / "old.json"
    generate(tools, "-out", old, "-kid", "same")
    taken = tools.run("generate-jwk", "-add-to", old, "-kid", "same", "-out", tmp_path / "set.json")
    assert taken.returncode == 1 and "already has a key with kid 'same'" in taken.stderr
    bad = tmp_path / "bad.json"
    bad.write_text("{}")
    refused = tools.run("generate-jwk", "-add-to", bad, "-out", tmp_path / "set.json")
    assert refused.returncode == 1 and f"private key file {bad}" in refused.stderr
    assert not (tmp_path / "set.json").exists()

