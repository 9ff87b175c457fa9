"""A token request's body: its size limit and reading the api_key out of it."""

import json
import re

# A token request is a short JSON object; 64 KiB is generous.
MAX_BODY_BYTES = 64 * 1024

# Content-Length as RFC 9110 writes it: ASCII digits only (str.isdigit() also takes "²").
_DECIMAL = re.compile(r"[0-9]+")


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


def _reject_constant(name):
    raise ValueError(f"{name} is not JSON")


# Numbers stay unconverted: a 5000-digit number beside the key must not fail parsing.
_BODY_DECODER = json.JSONDecoder(parse_constant=_reject_constant, parse_int=_JSONNumber, parse_float=_JSONNumber)


def api_key_from_body(raw: bytes) -> str:
    """The api_key of a request body; "" when absent (the Go service reads it as the empty key).

    InvalidBody unless the body is a UTF-8 JSON object whose api_key, if present, is a string.
    """
    try:
        body = _BODY_DECODER.decode(raw.decode("utf-8"))
    except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
        raise InvalidBody() from None
    if not isinstance(body, dict):
        raise InvalidBody()
    api_key = body.get("api_key", "")
    if not isinstance(api_key, str):
        raise InvalidBody()
    return api_key
