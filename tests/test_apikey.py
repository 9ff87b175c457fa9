"""API key limits of SPEC.md: checked before any lookup, each malformed case a 401."""

import re

import pytest

from tests.httpclient import exchange
from token_exchange.verification import apikey
from token_exchange.verification.apikey import MalformedKey, parse_integration_key

SECRET = "s" * 43


def key(integration_id="acme", key_id="ki_0123456789abcdef", secret=SECRET):
    return f"mlabk.cii_{integration_id}.{key_id}.{secret}"


MALFORMED = {
    "empty": "",
    "no prefix": "cii_acme.ki_1.secret",
    "wrong prefix": "mlabx.cii_acme.ki_1.secret",
    "prefix only": "mlabk.",
    "two parts": "mlabk.cii_acme.ki_1",
    "four parts": "mlabk.cii_acme.ki_1.sec.ret",
    "no cii_": "mlabk.acme.ki_1.secret",
    "empty integration id": "mlabk.cii_.ki_1.secret",
    "integration id 65 bytes": key(integration_id="i" * 65),
    "integration id 65 bytes utf-8": key(integration_id="é" * 32 + "i"),
    "no ki_": "mlabk.cii_acme.kx_1.secret",
    "key id only ki_": "mlabk.cii_acme.ki_.secret",
    "key id 65 bytes": key(key_id="ki_" + "k" * 62),
    "empty secret": key(secret=""),
    "secret 129 bytes": key(secret="s" * 129),
    "whole key 301 bytes": "mlabk.cii_a.ki_b." + "s" * 284,
    "lone surrogate": key(secret="\ud800"),
    "empty parts": "mlabk...",
}


@pytest.mark.parametrize("api_key", MALFORMED.values(), ids=MALFORMED.keys())
def test_malformed_keys_are_refused_by_the_parser(api_key):
    with pytest.raises(MalformedKey) as raised:
        parse_integration_key(api_key)
    # The reason is for logs: it must never repeat the secret.
    assert SECRET not in str(raised.value)


@pytest.mark.parametrize("api_key", MALFORMED.values(), ids=MALFORMED.keys())
def test_malformed_keys_are_401_without_a_store_lookup(service, monkeypatch, api_key):
    lookups = []
    monkeypatch.setattr(service.store, "get_integration_key", lambda *args: lookups.append(args))
    response = exchange(service.base_url, "integration", api_key)
    assert response.status == 401
    assert response.body == b"Invalid API key\n"
    assert lookups == []


def test_limits_are_inclusive():
    longest = key(integration_id="i" * 64, key_id="ki_" + "k" * 61, secret="s" * 128)
    assert len(longest) == 268
    parsed = parse_integration_key(longest)
    assert (parsed.integration_id, parsed.key_id, parsed.secret) == ("i" * 64, "ki_" + "k" * 61, b"s" * 128)
    shortest = parse_integration_key("mlabk.cii_a.ki_b.c")
    assert (shortest.integration_id, shortest.key_id, shortest.secret) == ("a", "ki_b", b"c")


def test_whole_key_limit_is_checked_before_splitting():
    with pytest.raises(MalformedKey, match="longer than 300 bytes"):
        parse_integration_key("mlabk.cii_a.ki_b." + "s" * 284)
    with pytest.raises(MalformedKey, match="secret"):
        parse_integration_key("mlabk.cii_a.ki_b." + "s" * 283)


def test_well_formed_key_reaches_the_store(service, monkeypatch):
    lookups = []
    monkeypatch.setattr(service.store, "get_integration_key", lambda *args: lookups.append(args))
    assert exchange(service.base_url, "integration", key()).status == 401
    assert lookups == [("acme", "ki_0123456789abcdef")]


def test_parsed_key_repr_hides_the_secret():
    assert SECRET not in repr(parse_integration_key(key()))


def test_autojoin_key_limits():
    assert apikey.check_autojoin_key("k" * 1500) == b"k" * 1500
    for bad in ("", "k" * 1501, "\udfff"):
        with pytest.raises(MalformedKey):
            apikey.check_autojoin_key(bad)


def test_generated_keys_have_the_spec_format():
    assert re.fullmatch(r"ki_[0-9a-f]{16}", apikey.generate_key_id())
    secret = apikey.generate_secret()
    assert re.fullmatch(r"[A-Za-z0-9_-]{43}", secret)
    assert re.fullmatch(r"[A-Za-z0-9_-]{43}", apikey.generate_autojoin_key())
    assert len({apikey.generate_secret() for _ in range(100)}) == 100
    formatted = apikey.format_integration_key("acme", "ki_0123456789abcdef", secret)
    parsed = parse_integration_key(formatted)
    assert (parsed.integration_id, parsed.key_id, parsed.secret) == ("acme", "ki_0123456789abcdef", secret.encode())


@pytest.mark.parametrize("integration_id", ["", "a.b", "a b", "a\nb", "i" * 65])
def test_ids_that_would_not_parse_back_are_refused(integration_id):
    with pytest.raises(MalformedKey):
        apikey.check_integration_id(integration_id)


@pytest.mark.parametrize("key_id", ["", "ki_", "custom", "ki_a.b", "ki_" + "k" * 62])
def test_key_ids_that_would_not_parse_back_are_refused(key_id):
    with pytest.raises(MalformedKey):
        apikey.check_key_id(key_id)
