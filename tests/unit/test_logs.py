"""The log formatters and set-up (observability/logs.py): JSON lines as json.JSONEncoder writes them,
their time, a traceback inside the one line."""

import datetime
import io
import json
import logging

from token_exchange.observability.logs import JSONFormatter, setup_logging


def test_json_lines_are_what_json_encoder_writes_for_any_field_values():
    fields = {
        "text": 'é "q" \\ \n \u2028 \x00 \ud800',
        "int": -3,
        "big": 10**30,
        "bool": True,
        "none": None,
        "float": 1.5,
        "nan": float("nan"),
        "list": [1, "x", {"k": False}],
        "empty": {},
        "nested": {"a": {"b": "c"}, 2: "two", True: "yes", None: "none"},
        7: "seven",
        "other": datetime.date(2026, 1, 2),
        "message": "not this one",
        "pid": "nor this",
    }
    record = logging.LogRecord("token_exchange.x", logging.WARNING, __file__, 1, "said %s", ("é\n",), None)
    record.json_fields = {"httpRequest": {"status": 200, "requestUrl": '/p?q="1"'}}
    record.fields = fields
    formatter = JSONFormatter()
    entry = {
        "severity": "WARNING",
        "message": "said é\n",
        "time": formatter.format(record).split('"time": "')[1][:24],
        "logger": "token_exchange.x",
        "pid": record.process,
        **record.json_fields,
        **{name: value for name, value in fields.items() if name not in ("message", "pid")},
    }
    expected = json.JSONEncoder(ensure_ascii=False, default=str).encode(entry)
    for _ in range(2):  # the second time from what the formatter keeps
        assert formatter.format(record) == expected


def test_json_time_is_the_records_utc_time_to_the_millisecond_across_seconds():
    formatter = JSONFormatter()

    def time_of(created):
        record = logging.LogRecord("token_exchange", logging.INFO, __file__, 1, "m", None, None)
        record.created, record.msecs = created, int((created - int(created)) * 1000) + 0.0
        return json.loads(formatter.format(record))["time"]

    # The formatter reuses the text of a second while it lasts: each line must still be its own time.
    assert time_of(1795000000.9994) == "2026-11-18T11:06:40.999Z"
    assert time_of(1795000001.0) == "2026-11-18T11:06:41.000Z"
    assert time_of(1795000001.25) == "2026-11-18T11:06:41.250Z"
    assert time_of(1795000000.5) == "2026-11-18T11:06:40.500Z"
    assert time_of(0.001) == "1970-01-01T00:00:00.001Z"


def test_json_lines_carry_the_traceback_inside_the_one_line():
    stream = io.StringIO()
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    setup_logging("json", stream)
    try:
        try:
            raise RuntimeError("boom")
        except RuntimeError:
            logging.getLogger("token_exchange").exception("it failed")
    finally:
        root.handlers[:], level = saved
        root.setLevel(level)
    lines = stream.getvalue().splitlines()
    assert len(lines) == 1
    entry = json.loads(lines[0])
    assert entry["severity"] == "ERROR"
    assert entry["message"].startswith("it failed\nTraceback")
    assert "RuntimeError: boom" in entry["message"]
