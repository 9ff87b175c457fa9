"""Integration and autojoin API keys (verification/apikey.py): the key format of the README's API table
and the parser's length limits, inclusive; each malformed key refused by the parser, its reason never
repeating the secret (tests/http/test_endpoints.py checks these are 401s without a store lookup)."""

import re

import pytest

from tests.support import MALFORMED, SECRET, key, plain_id
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


@pytest.mark.parametrize("integration_id", ["", "a.b", "a b", "a\nb", "i" * 65], ids=plain_id)
def test_ids_that_would_not_parse_back_are_refused(integration_id):
    with pytest.raises(MalformedKey):
        apikey.check_integration_id(integration_id)


@pytest.mark.parametrize("key_id", ["", "ki_", "custom", "ki_a.b", "ki_" + "k" * 62])
def test_key_ids_that_would_not_parse_back_are_refused(key_id):
    with pytest.raises(MalformedKey):
        apikey.check_key_id(key_id)


@pytest.mark.parametrize("key_id", ["ki1", "kix1", "k_1", "i_1", "Ki_1", "KI_1", "kj_1", "_ki_1", "xki_1"])
def test_a_key_id_must_start_with_exactly_ki_(key_id):
    with pytest.raises(MalformedKey, match="key id does not start with 'ki_'"):
        parse_integration_key(key(key_id=key_id))
    with pytest.raises(MalformedKey, match="key id must start with 'ki_'"):
        apikey.check_key_id(key_id)


@pytest.mark.parametrize(
    "api_key, reason",
    [
        ("m" * 301, "key longer than 300 bytes"),
        ("mlabk" + "x" * 20, "key does not start with 'mlabk.'"),
        ("Mlabk.cii_a.ki_b.c", "key does not start with 'mlabk.'"),
        ("mlabk.cii_a.ki_b", "expected 3 dot-separated parts, got 2"),
        ("mlabk.cii_a.ki_b.c.d", "expected 3 dot-separated parts, got 4"),
        # The split stops after the fourth part: a key of dots costs no more than any other.
        ("mlabk.cii_a.ki_b.c.d.e.f", "expected 3 dot-separated parts, got 4"),
        ("mlabk.cix_a.ki_b.c", "integration part does not start with 'cii_'"),
        ("mlabk.cii_.ki_b.c", "integration id must be 1..64 bytes"),
        (key(integration_id="i" * 65), "integration id must be 1..64 bytes"),
        ("mlabk.cii_a.ki_.c", "key id must be 4..64 bytes"),
        (key(key_id="ki_" + "k" * 62), "key id must be 4..64 bytes"),
        ("mlabk.cii_a.ki_b.", "secret must be 1..128 bytes"),
        (key(secret="s" * 129), "secret must be 1..128 bytes"),
        ("mlabk.cii_a.ki_b.\udc80", "key is not valid UTF-8"),
    ],
    ids=plain_id,
)
def test_each_malformed_key_is_refused_with_its_reason(api_key, reason):
    with pytest.raises(MalformedKey) as raised:
        parse_integration_key(api_key)
    assert str(raised.value) == reason


def test_limits_count_utf8_bytes_at_each_boundary():
    assert parse_integration_key(key(integration_id="é" * 32)).integration_id == "é" * 32
    assert parse_integration_key(key(key_id="ki_" + "é" * 30 + "k")).key_id == "ki_" + "é" * 30 + "k"
    with pytest.raises(MalformedKey):
        parse_integration_key(key(key_id="ki_" + "é" * 31))
    assert parse_integration_key(key(secret="é" * 64)).secret == "é".encode() * 64
    with pytest.raises(MalformedKey):
        parse_integration_key(key(secret="é" * 64 + "s"))
    whole = "mlabk.cii_a.ki_b." + "s" * 283
    assert len(whole.encode()) == 300
    with pytest.raises(MalformedKey, match="secret"):  # past the whole-key limit: refused only for its secret
        parse_integration_key(whole)
    with pytest.raises(MalformedKey, match="longer than 300 bytes"):
        parse_integration_key("mlabk.cii_a.ki_b." + "é" * 142)


def test_autojoin_key_limits_count_utf8_bytes():
    assert apikey.check_autojoin_key("é" * 750) == "é".encode() * 750
    with pytest.raises(MalformedKey, match="autojoin key must be 1..1500 bytes"):
        apikey.check_autojoin_key("é" * 750 + "k")
    with pytest.raises(MalformedKey, match="autojoin key must be 1..1500 bytes"):
        apikey.check_autojoin_key("")
    assert apikey.check_autojoin_key("k") == b"k"


@pytest.mark.parametrize("value", ["a", "i" * 64, "é" * 32, "acme-corp_1"], ids=plain_id)
def test_integration_ids_within_the_limits_are_accepted(value):
    apikey.check_integration_id(value)
    assert parse_integration_key(key(integration_id=value)).integration_id == value


@pytest.mark.parametrize(
    "value", ["ki_a", "ki_" + "k" * 61, "ki_" + "é" * 30 + "k", "ki_0123456789abcdef"], ids=plain_id
)
def test_key_ids_within_the_limits_are_accepted(value):
    apikey.check_key_id(value)
    assert parse_integration_key(key(key_id=value)).key_id == value


@pytest.mark.parametrize(
    "value, reason",
    [
        ("", "integration id must be 1..64 bytes"),
        ("i" * 65, "integration id must be 1..64 bytes"),
        ("é" * 32 + "i", "integration id must be 1..64 bytes"),
        ("a.b", "integration id must not contain '.'"),
        ("a b", "integration id must not contain spaces or control characters"),
        ("a\tb", "integration id must not contain spaces or control characters"),
        ("a\u00a0b", "integration id must not contain spaces or control characters"),
        ("a\x00b", "integration id must not contain spaces or control characters"),
        ("a\x7fb", "integration id must not contain spaces or control characters"),
        ("a\u200bb", "integration id must not contain spaces or control characters"),
        ("\udc80", "key is not valid UTF-8"),
    ],
    ids=plain_id,
)
def test_integration_ids_refused_with_their_reason(value, reason):
    with pytest.raises(MalformedKey) as raised:
        apikey.check_integration_id(value)
    assert str(raised.value) == reason


@pytest.mark.parametrize(
    "value, reason",
    [
        ("ki_", "key id must be 4..64 bytes"),
        ("ki_" + "k" * 62, "key id must be 4..64 bytes"),
        ("ki_a.b", "key id must not contain '.'"),
        ("ki_a b", "key id must not contain spaces or control characters"),
        ("ki_a\x00", "key id must not contain spaces or control characters"),
        ("ki_a\x1b", "key id must not contain spaces or control characters"),
    ],
    ids=plain_id,
)
def test_key_ids_refused_with_their_reason(value, reason):
    with pytest.raises(MalformedKey) as raised:
        apikey.check_key_id(value)
    assert str(raised.value) == reason
