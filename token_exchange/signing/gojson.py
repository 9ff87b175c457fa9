"""JSON text as Go's encoding/json writes a map[string]interface{}, byte for byte.

The Go service marshals a token's header and claims as maps: the members
come in sorted order, compact, and strings are escaped the Go way: <, >
and & as \\u003c, \\u003e, \\u0026 (HTML-safe), U+2028 and U+2029 escaped,
\\n, \\r and \\t by letter and every other control character as \\u00XX;
other non-ASCII text stays UTF-8. Python's json module writes \\b and \\f
by letter and none of the HTML escapes, so the token would differ.
"""

import re

_ESCAPED = re.compile('[\x00-\x1f"\\\\<>&\u2028\u2029\ud800-\udfff]')
_BY_LETTER = {'"': '\\"', "\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escape(match):
    ch = match.group()
    if "\ud800" <= ch <= "\udfff":
        return "\ufffd"  # Go writes invalid UTF-8 as the replacement character
    return _BY_LETTER.get(ch) or f"\\u{ord(ch):04x}"


def go_string(text: str) -> str:
    return '"' + _ESCAPED.sub(_escape, text) + '"'


def go_object(members: dict) -> str:
    """A flat object of str and int values, members in sorted order."""
    parts = []
    for name in sorted(members):
        value = members[name]
        parts.append(go_string(name) + ":" + (go_string(value) if isinstance(value, str) else str(int(value))))
    return "{" + ",".join(parts) + "}"
