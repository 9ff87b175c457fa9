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


def setup_logging(log_format, stream=None):
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JSONFormatter() if log_format == JSON else TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.INFO)
