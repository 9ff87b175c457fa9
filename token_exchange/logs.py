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
    # Every request writes a line: the encoder is built once, and the time's
    # text up to the second is reused while the second lasts.
    def __init__(self):
        super().__init__()
        self._encode = json.JSONEncoder(ensure_ascii=False, default=str).encode
        self._second = None
        self._second_text = ""

    def _time(self, record):
        """RFC 3339 in UTC with milliseconds, as Cloud Logging reads it."""
        second = int(record.created)
        if second != self._second:
            self._second_text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
            self._second = second
        return f"{self._second_text}.{int(record.msecs):03d}Z"

    def format(self, record):
        entry = {
            "severity": record.levelname,
            "message": record.getMessage(),
            "time": self._time(record),
            "logger": record.name,
            "pid": record.process,
        }
        for fields in (getattr(record, "json_fields", None) or {}, _fields(record)):
            for name, value in fields.items():
                entry.setdefault(name, value)
        if record.exc_info:
            entry["message"] += "\n" + self.formatException(record.exc_info)
        return self._encode(entry)


# A presented key's integration id may hold a newline: escaped, it cannot forge a line.
CONTROL_CHARACTERS = {code: f"\\x{code:02x}" for code in (*range(0x20), 0x7f)}


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
