"""Log set-up: JSON lines for Cloud Logging, or readable text for a terminal.

A JSON line carries `severity`, `message` and `time` (the fields Cloud
Logging reads), the logger name and pid, and the structured fields a caller
passed: extra={"fields": {...}} appear in both formats, extra={"json_fields":
{...}} only in JSON (for what the message already says in words). Callers
never pass a key, secret, token or hash.
"""

import json
import logging
import sys
import time

JSON = "json"
TEXT = "text"
FORMATS = (JSON, TEXT)


def default_format(stream=None):
    """Text on a terminal, JSON otherwise (Cloud Run, systemd's journal, files)."""
    stream = stream or sys.stderr
    return TEXT if stream.isatty() else JSON


def _fields(record):
    return getattr(record, "fields", None) or {}


class JSONFormatter(logging.Formatter):
    """One JSON object per line: severity, message, time, logger, pid, then the fields."""

    def format(self, record):
        message = record.getMessage()
        if record.exc_info:
            message += "\n" + self.formatException(record.exc_info)
        # RFC 3339 in UTC with milliseconds, as Cloud Logging reads it.
        when = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
        line = {
            "severity": record.levelname,
            "message": message,
            "time": f"{when}.{int(record.msecs):03d}Z",
            "logger": record.name,
            "pid": record.process,
            **_json_fields(record),
        }
        return json.dumps(line, ensure_ascii=False, default=str)


# Members every JSON line has; a field of the same name is left out.
_JSON_MEMBERS = frozenset(("severity", "message", "time", "logger", "pid"))


def _json_fields(record):
    """The record's json_fields, then its fields under names not taken yet."""
    fields = dict(getattr(record, "json_fields", None) or ())
    for name, value in _fields(record).items():
        fields.setdefault(name, value)
    if not _JSON_MEMBERS.isdisjoint(fields):
        fields = {name: value for name, value in fields.items() if name not in _JSON_MEMBERS}
    return fields


# A presented key's integration id may hold a newline: escaped, it cannot forge a line.
CONTROL_CHARACTERS = {code: f"\\x{code:02x}" for code in (*range(0x20), 0x7F)}


class TextFormatter(logging.Formatter):
    def __init__(self):
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def formatMessage(self, record):
        line = super().formatMessage(record)
        fields = _fields(record)
        if fields:
            line += " " + " ".join(f"{name}={value}" for name, value in fields.items())
        return line.translate(CONTROL_CHARACTERS)  # a traceback follows on lines of its own


# Tornado's line for a request it cannot parse ends with its reason, which quotes the offending header
# value or line: where a client may have put its key (a Content-Length of "mlabk...").
MALFORMED_MESSAGE = "Malformed HTTP message from %s: %s"
# The fixed words that begin Tornado's reasons (tornado.http1connection, tornado.httputil); what follows
# them may be the client's.
MALFORMED_REASONS = (
    "Malformed HTTP request line",
    "Malformed HTTP version",
    "Malformed HTTP headers",
    "Missing Host header",
    "Invalid Host header",
    "Multiple host headers not allowed",
    "Invalid header name",
    "Invalid header value",
    "header line cannot start with whitespace",
    "no colon in header line",
    "Multiple unequal Content-Lengths",
    "Only integer Content-Length is allowed",
    "Content-Length too long",
    "Message with both Transfer-Encoding and Content-Length",
    "Unsupported Transfer-Encoding",
    "Unsupported Content-Encoding",
    "invalid chunk size",
    "improperly terminated chunk",
    "chunked body too large",
    "Body too long",
    "invalid gzip data",
    "decompressed body too large",
    "Invalid query string",
    "Invalid x-www-form-urlencoded body",
)


def malformed_reason(message):
    """Tornado's reason for refusing a request, without what the client sent."""
    for reason in MALFORMED_REASONS:
        if message.startswith(reason):
            return reason
    return "unrecognised reason (not logged: it may quote the request)"


class WithholdClientInput(logging.Filter):
    """On Tornado's tornado.general logger: its "Malformed HTTP message" line keeps only the reason."""

    def filter(self, record):
        if record.msg == MALFORMED_MESSAGE and isinstance(record.args, tuple) and len(record.args) == 2:
            record.args = (record.args[0], malformed_reason(str(record.args[1])))
        return True


_WITHHOLD = WithholdClientInput()


def withhold_client_input():
    """Install the filter on Tornado's logger, once: every handler, ours or a test's, sees the lines filtered."""
    logger = logging.getLogger("tornado.general")
    if _WITHHOLD not in logger.filters:
        logger.addFilter(_WITHHOLD)


def setup_logging(log_format, stream=None):
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JSONFormatter() if log_format == JSON else TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.INFO)
