"""Reading api_key out of a token request's body (web/body.py) as the Go service's decoder reads it:
json.NewDecoder(body).Decode(&struct{APIKey string `json:"api_key"`})."""

import pytest
from tornado.httputil import HTTPHeaders

from tests.support import plain_id
from token_exchange.web.body import MAX_BODY_BYTES, InvalidBody, api_key_from_body, declared_body_length


@pytest.mark.parametrize(
    "name",
    ["api_key", "API_KEY", "Api_Key", "aPI_kEY", "api_\u212aey", "API_\u212aEY", "\\u0061pi_key", "api_k\\u0065y"],
    ids=plain_id,
)
def test_the_field_name_matches_under_case_folding(name):
    # The Kelvin sign (U+212A) folds to k under Unicode simple folding, as Go's decoder folds names.
    assert api_key_from_body(b'{"%s": "the key"}' % name.encode()) == "the key"


@pytest.mark.parametrize(
    "name",
    ["api_\u017fey", "apikey", "api-key", "api_key ", " api_key", "api_keys", "\u0130pi_key", "api_\u0138ey", ""],
    ids=plain_id,
)
def test_other_names_are_ignored(name):
    # The long s (U+017F) folds to s, not k; the dotted capital I and kra fold to no ASCII letter.
    assert api_key_from_body(b'{"%s": "the key"}' % name.encode()) == ""


@pytest.mark.parametrize(
    "body, api_key",
    [
        (b'{"api_key": "first", "API_KEY": "last"}', "last"),
        (b'{"API_KEY": "first", "api_key": "last"}', "last"),
        (b'{"api_key": "first", "api_key": "last"}', "last"),
        (b'{"Api_Key": "first", "x": 1, "api_\xe2\x84\xaaey": "last"}', "last"),
    ],
    ids=plain_id,
)
def test_the_last_matching_field_wins(body, api_key):
    assert api_key_from_body(body) == api_key


@pytest.mark.parametrize(
    "body",
    [
        b'{"api_key": "k"} garbage',
        b'{"api_key": "k"}{"api_key": "other"}',
        b'{"api_key": "k"}}',
        b'{"api_key": "k"}{"a',
        b'{"api_key": "k"}\n\xff\xfe',
        b'{"api_key": "k"}[1, 2',
        b' \t\r\n{"api_key": "k"} ',
    ],
    ids=plain_id,
)
def test_only_the_first_json_value_is_read(body):
    assert api_key_from_body(body) == "k"


@pytest.mark.parametrize(
    "body, api_key",
    [
        (b'{"api_key": "k\xff"}', "k\ufffd"),
        (b'{"api_key": "\xc3"}', "\ufffd"),
        (b'{"x": "\xff\xfe", "api_key": "k"}', "k"),
        (b'{"api_key\xff": "k"}', ""),  # a name with invalid UTF-8 names no field we read
    ],
    ids=plain_id,
)
def test_invalid_utf8_in_a_string_reads_as_the_replacement_character(body, api_key):
    assert api_key_from_body(body) == api_key


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"  \n",
        b"[]",
        b'"k"',
        b"42",
        b"123abc",
        b"true",
        b"null",  # Go reads null as the empty key (401); here it is a 400 (README: differences)
        b'{"api_key": null}',
        b'{"api_key": "k", "API_KEY": null}',
        b'{"api_key": 42}',
        b'{"api_key": "k", "API_KEY": 5}',  # a later match that is not a string fails the body, as in Go
        b'{"API_KEY": ["k"]}',
        b'{"api_key": {"k": 1}}',
        b'{"api_key": "k"',
        b'{"api_key": "k",}',
        b"{'api_key': 'k'}",
        b'{"api_key": "k", "x": NaN}',
        b'{"x": Infinity, "api_key": "k"}',
        b'{"x": -Infinity, "api_key": "k"}',
        b'{"x": 01, "api_key": "k"}',
        b'{"api_key": "\\x41"}',
        b'{"api_key": "k\x01"}',
        b'\xef\xbb\xbf{"api_key": "k"}',
        b'{"api_key": "k", \xff}',
        b"[" * 50_000,
    ],
    ids=plain_id,
)
def test_a_body_that_is_not_an_object_with_a_string_api_key_is_invalid(body):
    with pytest.raises(InvalidBody):
        api_key_from_body(body)


def test_a_missing_api_key_is_the_empty_key():
    assert api_key_from_body(b'{"x": {"y": [1, 2.5e3, {"z": null}]}, "t": true}') == ""


def test_numbers_in_other_fields_are_left_as_text():
    # A 5000-digit integer is beyond what Python's int() takes by default; Go's decoder skips it.
    assert api_key_from_body(b'{"x": ' + b"1" * 5000 + b', "y": 1e999999, "api_key": "k"}') == "k"


def test_the_body_limit_is_64_kib():
    # The README's figure, written out: the handlers and the fuzz tests read the constant itself.
    assert MAX_BODY_BYTES == 65_536


@pytest.mark.parametrize(
    "body",
    [b'X{"api_key": "k"}', b'XX{"api_key": "k"}', b'\x0b{"api_key": "k"}', b'\x0c{"api_key": "k"}', b'\xa0{"a": 1}'],
    ids=plain_id,
)
def test_only_json_whitespace_may_come_before_the_object(body):
    with pytest.raises(InvalidBody):
        api_key_from_body(body)


@pytest.mark.parametrize(
    "body",
    [
        b'{"api_key": NaN}',
        b'{"api_key": Infinity}',
        b'{"api_key": -Infinity}',
        b'{"x": [NaN], "api_key": "k"}',
        b'{"x": {"y": Infinity}, "api_key": "k"}',
        b"NaN",
    ],
    ids=plain_id,
)
def test_nan_and_infinity_are_not_json_anywhere(body):
    with pytest.raises(InvalidBody):
        api_key_from_body(body)


def test_numbers_of_every_shape_beside_the_key_are_accepted():
    body = b'{"a": 0, "b": -1, "c": 1.5, "d": -2.5e-3, "e": 1E400, "f": [1, 2.0], "api_key": "k"}'
    assert api_key_from_body(body) == "k"


@pytest.mark.parametrize(
    "headers, length",
    [
        ({"Content-Length": "5"}, 5),
        ({"Content-Length": "0"}, 0),
        ({"Content-Length": "007"}, 7),
        ({"Content-Length": "65537"}, 65537),
        ({}, None),
        ({"Content-Length": "5", "Transfer-Encoding": "chunked"}, None),
        ({"Transfer-Encoding": "chunked"}, None),
        ({"Content-Length": ""}, None),
        ({"Content-Length": "+5"}, None),
        ({"Content-Length": "-5"}, None),
        ({"Content-Length": " 5"}, None),
        ({"Content-Length": "5 "}, None),
        ({"Content-Length": "5a"}, None),
        ({"Content-Length": "0x5"}, None),
        ({"Content-Length": "\u00b2"}, None),
        ({"Content-Length": "\u0663"}, None),
    ],
    ids=plain_id,
)
def test_the_declared_body_length(headers, length):
    assert declared_body_length(HTTPHeaders(headers)) == length


def test_a_repeated_content_length_declares_nothing():
    headers = HTTPHeaders()
    headers.add("Content-Length", "5")
    headers.add("Content-Length", "5")
    assert declared_body_length(headers) is None
