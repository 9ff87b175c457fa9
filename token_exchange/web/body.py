"""A token request's body: its size limit, and reading the api_key out of it as Go's service does.

The Go service decodes the body with json.NewDecoder(body).Decode(&req)
into a struct with one string field tagged "api_key". This module reads it
the same way, rule for rule:

- only the first JSON value is read: anything after it is ignored;
- a field name matches "api_key" case-insensitively, under Unicode simple
  case folding (so "API_KEY", "Api_Key" and "api_\u212aey", with a Kelvin
  sign, all match), and when several names match, the last one wins;
- invalid UTF-8 is replaced with U+FFFD (inside a string it then simply
  fails to match any key: 401);
- a body that is not a JSON object, or a matching field that is not a
  string, is a 400.

Deliberate differences (README, "Differences from the Go service"): null,
as the body or as a matching field, is a 400 (Go reads it as the empty
key, or ignores it), and a body nested deeper than Python's recursion
limit allows is a 400.
"""

import json
import re

# A token request is a short JSON object; 64 KiB is generous.
MAX_BODY_BYTES = 64 * 1024

# Content-Length as RFC 9110 writes it: ASCII digits only (str.isdigit() also takes "²").
_DECIMAL = re.compile(r"[0-9]+")
# What JSON, and Go's decoder, skip before a value.
_JSON_WHITESPACE = " \t\r\n"


class InvalidBody(ValueError):
    """The body is not a JSON object whose api_key, if present, is a string (400)."""


class BodyTooLarge(ValueError):
    """The body is longer than MAX_BODY_BYTES (413)."""


def declared_body_length(headers):
    """The body length a request's headers declare, or None: no Content-Length, a malformed one, or chunked."""
    lengths = headers.get_list("Content-Length")
    if len(lengths) != 1 or "Transfer-Encoding" in headers or not _DECIMAL.fullmatch(lengths[0]):
        return None  # Tornado checks a repeated or malformed Content-Length itself
    return int(lengths[0])


class _JSONNumber:
    """A number left as its text, as Go's decoder leaves numbers in fields it ignores."""

    __slots__ = ("text",)

    def __init__(self, text):
        self.text = text


class _JSONObject(list):
    """An object's (name, value) pairs in order, duplicates kept: Go's last match wins."""


def _reject_constant(name):
    raise ValueError(f"{name} is not JSON")


# Numbers stay unconverted: a 5000-digit number beside the key must not fail parsing.
_BODY_DECODER = json.JSONDecoder(
    parse_constant=_reject_constant,
    parse_int=_JSONNumber,
    parse_float=_JSONNumber,
    object_pairs_hook=_JSONObject,
)

# The field's name as Go folds it (ASCII letters upper-cased), and the only non-ASCII
# characters whose simple case folding reaches an ASCII letter: the Kelvin sign (k) and the
# long s (s). Go's foldName maps each character to the smallest of its fold orbit.
_API_KEY_FOLDED = "API_KEY"
_NON_ASCII_FOLDS = {"\u212a": "K", "\u017f": "S"}


def _folds_to_api_key(name):
    if len(name) != len(_API_KEY_FOLDED):
        return False
    folded = "".join(ch.upper() if ch < "\x80" else _NON_ASCII_FOLDS.get(ch, ch) for ch in name)
    return folded == _API_KEY_FOLDED


def api_key_from_body(raw: bytes) -> str:
    """The api_key of a request body, read as Go's service reads it; "" when no field matches.

    InvalidBody when the first JSON value of the body is not an object, or a matching field is
    not a string.
    """
    text = raw.decode("utf-8", errors="replace")
    start = len(text) - len(text.lstrip(_JSON_WHITESPACE))
    try:
        body, _end = _BODY_DECODER.raw_decode(text, start)  # the first value; the rest is ignored
    except (ValueError, RecursionError):
        raise InvalidBody() from None
    if not isinstance(body, _JSONObject):
        raise InvalidBody()
    api_key = ""
    for name, value in body:
        if _folds_to_api_key(name):
            if not isinstance(value, str):
                raise InvalidBody()
            api_key = value
    return api_key
