"""Integration and autojoin API keys (verification/apikey.py): the key format of the README's API table
and the parser's length limits, inclusive; each malformed key refused by the parser, its reason never
repeating the secret (tests/http/test_endpoints.py checks these are 401s without a store lookup)."""

import re

import pytest

from tests.support import MALFORMED, SECRET, key
from token_exchange.verification import apikey
from token_exchange.verification.apikey import MalformedKey, parse_integration_key


@pytest.mark.parametrize("api_key", MALFORMED.values(), ids=MALFORMED.keys())
def test_malformed_keys_are_refused_by_the_parser(api_key):
    with pytest.raises(MalformedKey) as raised:
        parse_integration_key(api_key)
    # The reason is for logs: it must never repeat the secret.
    assert SECRET not in str(raised.value)


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
