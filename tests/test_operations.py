"""What an operator sees: metrics, readiness, log lines, the logged configuration.

The real service runs in-process with a metrics registry of its own; the
built zipapp is covered in test_zipapp_operations.py.
"""

import datetime
import io
import json
import logging
import re
import socket
import time
import urllib.parse
from types import SimpleNamespace

import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from tests.consumer import verify_token
from tests.httpclient import exchange, request
from token_exchange.observability.logs import JSONFormatter, TextFormatter, setup_logging
from token_exchange.cli.service import REDACTED, effective_configuration
from token_exchange.store import StoreUnavailable

ALLOWED_LABELS = {"code", "method", "operation", "audience", "result", "le"}


def samples(registry):
    """{(name, frozenset(labels)): value} of every sample the registry exposes."""
    text = generate_latest(registry).decode()
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def value(all_samples, name, **labels):
    return all_samples.get((name, frozenset(labels.items())), 0.0)


def test_requests_tokens_and_store_calls_are_counted(service, integration_key, autojoin_key):
    key = integration_key("acme")
    autojoin = autojoin_key("example-org")
    for _ in range(3):
        response = exchange(service.base_url, "integration", key.api_key)
        assert response.status == 200
        verify_token(service.base_url, response.json()["token"], "integration")
    assert exchange(service.base_url, "integration", key.api_key[:-1] + "x").status == 401
    assert exchange(service.base_url, "autojoin", autojoin.api_key).status == 200
    assert request(service.base_url, "GET", "/v0/token/autojoin").status == 405
    assert request(service.base_url, "GET", "/health").status == 200

    service.settle()
    got = samples(service.metrics.registry)
    assert value(got, "tokenexchange_integration_requests_total", code="200", method="post") == 3
    assert value(got, "tokenexchange_integration_requests_total", code="401", method="post") == 1
    assert value(got, "tokenexchange_autojoin_requests_total", code="200", method="post") == 1
    assert value(got, "tokenexchange_autojoin_requests_total", code="405", method="get") == 1
    assert value(got, "tokenexchange_integration_request_duration_seconds_count", code="200", method="post") == 3
    # Prometheus' default buckets.
    buckets = sorted(float(dict(labels)["le"]) for name, labels in got
                     if name == "tokenexchange_integration_request_duration_seconds_bucket"
                     and ("code", "200") in labels)
    assert buckets == [.005, .01, .025, .05, .075, .1, .25, .5, .75, 1.0, 2.5, 5.0, 7.5, 10.0, float("inf")]
    assert value(got, "tokenexchange_tokens_issued_total", audience="integration") == 3
    assert value(got, "tokenexchange_tokens_issued_total", audience="autojoin") == 1
    assert value(got, "tokenexchange_store_call_duration_seconds_count", operation="get_integration_key") == 4
    assert value(got, "tokenexchange_store_call_duration_seconds_count", operation="find_autojoin_org") == 1
    # /health is no token endpoint: no metric names it.
    assert not any("/health" in str(labels) for _, labels in got)
    # Only bounded labels; no key, key id or integration id anywhere.
    text = generate_latest(service.metrics.registry).decode()
    for name, labels in got:
        assert {label for label, _ in labels} <= ALLOWED_LABELS, name
    for secretish in (key.api_key, key.key_id, "acme", autojoin.api_key, "example-org"):
        assert secretish not in text


def test_made_up_methods_share_one_method_label(service):
    for method in ("BREW", "PROPFIND", "X-7f3a", "post"):
        assert request(service.base_url, method, "/v0/token/integration").status == 405
    assert request(service.base_url, "POST", "/v0/token/integration", b"{}").status == 401
    service.settle()
    got = samples(service.metrics.registry)
    methods = {dict(labels)["method"] for name, labels in got if name == "tokenexchange_integration_requests_total"}
    assert methods == {"other", "post"}
    assert value(got, "tokenexchange_integration_requests_total", code="405", method="other") == 4


def test_store_errors_are_counted_by_operation(service, integration_key, monkeypatch):
    key = integration_key("acme")

    def unavailable(*args):
        raise StoreUnavailable("sqlite read failed: test")

    monkeypatch.setattr(service.key_store, "get_integration_key", unavailable)
    assert exchange(service.base_url, "integration", key.api_key).status == 503
    service.settle()
    got = samples(service.metrics.registry)
    assert value(got, "tokenexchange_store_errors_total", operation="get_integration_key") == 1
    assert value(got, "tokenexchange_integration_requests_total", code="503", method="post") == 1


def test_the_verifier_reports_cache_and_queue_through_requests(service, integration_key):
    key = integration_key("acme")
    for _ in range(3):
        assert exchange(service.base_url, "integration", key.api_key).status == 200
    assert exchange(service.base_url, "integration", key.api_key[:-1] + "x").status == 401
    service.settle()
    got = samples(service.metrics.registry)
    # One bcrypt check for the first exchange and one for the wrong secret; the repeats hit the cache.
    assert value(got, "tokenexchange_verification_cache_total", result="miss") == 2
    assert value(got, "tokenexchange_verification_cache_total", result="hit") == 2
    assert value(got, "tokenexchange_hashing_queue_depth") == 0


def test_verifier_events_feed_cache_and_queue_metrics(service):
    events = service.metrics.verifier_events
    events.cache_miss()
    events.cache_hit()
    events.cache_hit()
    events.verification_queued(3)
    events.verification_refused("throttled")
    got = samples(service.metrics.registry)
    assert value(got, "tokenexchange_verification_cache_total", result="hit") == 2
    assert value(got, "tokenexchange_verification_cache_total", result="miss") == 1
    assert value(got, "tokenexchange_hashing_queue_depth") == 3
    assert value(got, "tokenexchange_verifications_refused_total", result="throttled") == 1
    events.verification_done(0)
    assert value(samples(service.metrics.registry), "tokenexchange_hashing_queue_depth") == 0


def test_ready_answers_200_when_the_store_answers(service):
    response = request(service.base_url, "GET", "/ready")
    assert (response.status, response.body) == (200, b"ready")
    assert request(service.base_url, "POST", "/ready").status == 405


def test_ready_answers_503_when_the_store_fails(service, monkeypatch):
    def unavailable():
        raise StoreUnavailable("sqlite read failed: test")

    monkeypatch.setattr(service.key_store, "check", unavailable)
    response = request(service.base_url, "GET", "/ready")
    assert response.status == 503
    assert response.body == b"Key store unavailable, retry later\n"
    assert response.headers["Content-Type"] == "text/plain; charset=utf-8"
    assert response.headers["Retry-After"] == "1"
    assert request(service.base_url, "GET", "/health").body == b"ok"  # /health says nothing about the store


def test_ready_answers_503_when_the_store_is_too_slow(start_service, monkeypatch):
    service = start_service(store_timeout=0.2)
    monkeypatch.setattr(service.key_store, "check", lambda: time.sleep(2))
    response = request(service.base_url, "GET", "/ready")
    assert response.status == 503
    assert response.body == b"Key store unavailable, retry later\n"


def access_record(logs, path):
    records = [r for r in logs.records if r.name == "token_exchange.access"
               and r.json_fields["httpRequest"]["requestUrl"] == path]
    assert len(records) == 1
    return records[0]


def test_access_line_carries_ids_as_json_fields_and_no_secret(caplog, service, integration_key, autojoin_key):
    caplog.set_level(logging.INFO, logger="token_exchange.access")
    key = integration_key("acme")
    autojoin = autojoin_key("example-org")
    integration_token = exchange(service.base_url, "integration", key.api_key).json()["token"]
    autojoin_token = exchange(service.base_url, "autojoin", autojoin.api_key).json()["token"]
    assert request(service.base_url, "GET", "/health").status == 200
    service.settle()

    formatter = JSONFormatter()
    line = json.loads(formatter.format(access_record(caplog, "/v0/token/integration")))
    assert line["severity"] == "INFO"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", line["time"])
    assert line["message"].startswith("POST /v0/token/integration 200 ")
    http_request = line["httpRequest"]
    assert re.fullmatch(r"\d+\.\d{6}s", http_request.pop("latency"))
    assert http_request == {"requestMethod": "POST", "requestUrl": "/v0/token/integration", "status": 200,
                            "remoteIp": "127.0.0.1"}
    assert (line["integration_id"], line["key_id"]) == ("acme", key.key_id)
    autojoin_line = json.loads(formatter.format(access_record(caplog, "/v0/token/autojoin")))
    assert autojoin_line["org"] == "example-org"
    health_line = json.loads(formatter.format(access_record(caplog, "/health")))
    assert "integration_id" not in health_line and "org" not in health_line

    text = TextFormatter().format(access_record(caplog, "/v0/token/integration"))
    assert re.search(r" INFO token_exchange\.access: POST /v0/token/integration 200 [\d.]+ms 127\.0\.0\.1 "
                     rf"integration_id=acme key_id={key.key_id}$", text), text
    everything = "\n".join(formatter.format(r) + TextFormatter().format(r) for r in caplog.records)
    for secret in (key.api_key, key.api_key.rsplit(".", 1)[1], autojoin.api_key, integration_token,
                   autojoin_token):
        assert secret not in everything


def test_access_records_are_whole_fresh_log_records(caplog, service):
    caplog.set_level(logging.INFO)
    windows = []  # (sent, settled): each request's access line is written between the two
    for _ in range(2):
        sent = time.time()
        assert request(service.base_url, "GET", "/health").status == 200
        service.settle()
        windows.append((sent, time.time()))
    first, second = [r for r in caplog.records if r.name == "token_exchange.access"]
    ordinary = logging.getLogger("token_exchange.access").makeRecord(
        "token_exchange.access", logging.INFO, __file__, 1, "m", (), None)
    # Every attribute a formatter or filter may read is there, as for a record logger.info() makes.
    assert set(vars(ordinary)) <= set(vars(first))
    assert (first.levelname, first.levelno, first.process) == ("INFO", logging.INFO, ordinary.process)
    assert (first.thread, first.threadName) == (service._thread.ident, service._thread.name)
    # Each line has its own time: the moment its request was answered.
    for record, (sent, settled) in zip((first, second), windows):
        assert sent <= record.created <= settled
    assert first.getMessage().startswith("GET /health 200 ")


@pytest.mark.parametrize("access_log, logged_statuses", [("all", [200, 401, 405, 200, 404]),
                                                         ("errors", [401, 405, 404]), ("off", [])])
def test_access_log_choice_picks_the_lines_and_metrics_count_every_request(
        caplog, start_service, integration_key, access_log, logged_statuses):
    caplog.set_level(logging.INFO)
    service = start_service(access_log=access_log)
    key = integration_key("acme")
    assert exchange(service.base_url, "integration", key.api_key).status == 200
    assert exchange(service.base_url, "integration", key.api_key[:-1] + "~").status == 401
    assert request(service.base_url, "GET", "/v0/token/integration").status == 405
    assert request(service.base_url, "GET", "/health").status == 200
    assert request(service.base_url, "GET", "/nowhere").status == 404
    service.settle()
    assert [r.json_fields["httpRequest"]["status"] for r in caplog.records
            if r.name == "token_exchange.access"] == logged_statuses
    # The refusal's reason is logged whatever the choice.
    assert any(r.getMessage().startswith("integration key refused: secret does not match") for r in caplog.records)
    got = samples(service.metrics.registry)
    for code, method in (("200", "post"), ("401", "post"), ("405", "get")):
        assert value(got, "tokenexchange_integration_requests_total", code=code, method=method) == 1


def test_access_lines_follow_the_level_while_metrics_still_count(caplog, service, integration_key):
    caplog.set_level(logging.WARNING, logger="token_exchange.access")
    assert exchange(service.base_url, "integration", integration_key("acme").api_key).status == 200
    service.settle()
    assert not [r for r in caplog.records if r.name == "token_exchange.access"]
    got = samples(service.metrics.registry)
    assert value(got, "tokenexchange_integration_requests_total", code="200", method="post") == 1


def test_json_lines_are_what_json_encoder_writes_for_any_field_values():
    fields = {"text": 'é "q" \\ \n \u2028 \x00 \ud800', "int": -3, "big": 10 ** 30, "bool": True, "none": None,
              "float": 1.5, "nan": float("nan"), "list": [1, "x", {"k": False}], "empty": {},
              "nested": {"a": {"b": "c"}, 2: "two", True: "yes", None: "none"}, 7: "seven",
              "other": datetime.date(2026, 1, 2), "message": "not this one", "pid": "nor this"}
    record = logging.LogRecord("token_exchange.x", logging.WARNING, __file__, 1, "said %s", ("é\n",), None)
    record.json_fields = {"httpRequest": {"status": 200, "requestUrl": "/p?q=\"1\""}}
    record.fields = fields
    formatter = JSONFormatter()
    entry = {"severity": "WARNING", "message": "said é\n", "time": formatter.format(record).split('"time": "')[1][:24],
             "logger": "token_exchange.x", "pid": record.process, **record.json_fields,
             **{name: value for name, value in fields.items() if name not in ("message", "pid")}}
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


def test_a_presented_id_cannot_forge_a_log_line(caplog, service):
    caplog.set_level(logging.INFO)
    forged = "acme\n2026-01-01 00:00:00,000 ERROR token_exchange: forged"  # no dot: a well-formed key
    assert exchange(service.base_url, "integration", f"mlabk.cii_{forged}.ki_0123456789abcdef.s3cr3t").status == 401
    service.settle()
    record = access_record(caplog, "/v0/token/integration")
    assert record.fields["integration_id"] == forged
    for formatter in (TextFormatter(), JSONFormatter()):
        lines = "\n".join(formatter.format(r) for r in caplog.records).splitlines()
        assert len(lines) == len(caplog.records)
        assert not any(line.startswith("2026-01-01") for line in lines)


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


def test_logged_configuration_redacts_secrets():
    config = SimpleNamespace(port=8080, private_key_path="/secrets/jwk-priv.json", store="datastore",
                             log_format=None, db_password="hunter2-secret-value",
                             api_token="tok-secret-value")
    environ = {"DATASTORE_EMULATOR_HOST": "http://user:pa55word-secret@localhost:8081",
               "GOOGLE_APPLICATION_CREDENTIALS": "/etc/sa.json", "UNRELATED_SECRET": "never-logged-value"}
    settings = effective_configuration(config, environ)
    assert settings["port"] == 8080
    assert settings["private_key_path"] == "/secrets/jwk-priv.json"
    assert settings["log_format"] == "auto"
    assert settings["db_password"] == REDACTED
    assert settings["api_token"] == REDACTED
    assert settings["GOOGLE_APPLICATION_CREDENTIALS"] == REDACTED
    assert settings["DATASTORE_EMULATOR_HOST"] == f"http://user:{REDACTED}@localhost:8081"
    text = json.dumps(settings)
    for secret in ("hunter2", "tok-secret", "pa55word", "never-logged"):
        assert secret not in text


def test_requests_in_flight_are_counted_once_however_they_end(start_service, integration_key, caplog):
    # A refused method and an oversized body end with the connection closing after the answer:
    # each request must leave the in-flight count (which shutdown waits on) exactly once.
    caplog.set_level(logging.INFO)
    key = integration_key()
    service = start_service()
    assert request(service.base_url, "GET", "/v0/token/integration").status == 405
    assert request(service.base_url, "POST", "/v0/token/autojoin", "{}",
                   {"Content-Length": str(1 << 20)}, timeout=5).status == 413
    assert exchange(service.base_url, "integration", key.api_key).status == 200
    assert request(service.base_url, "GET", "/health").status == 200
    assert request(service.base_url, "GET", "/nowhere").status == 404
    body = json.dumps({"api_key": key.api_key}).encode()
    # Counted from the headers on: a body that never comes in full, a chunked one, a malformed request.
    assert raw_exchange(service.base_url, b"Content-Length: %d\r\n\r\n%s" % (len(body), body[:10]),
                        stop_sending=True) == b""
    chunked = b"Transfer-Encoding: chunked\r\n\r\n%x\r\n%s\r\n0\r\n\r\n" % (len(body), body)
    assert raw_exchange(service.base_url, chunked).startswith(b"HTTP/1.1 200 ")
    assert raw_exchange(service.base_url, b"Content-Length: x\r\n\r\n").startswith(b"HTTP/1.1 400 ")
    service.settle()
    assert service.in_flight.count == 0
    assert [r for r in caplog.records if r.levelno >= logging.ERROR] == []


def raw_exchange(base_url, rest, stop_sending=False, timeout=5):
    """POST /v0/token/integration with the header lines and body in rest; what comes back until the service
    closes the connection (b"" when it closes without an answer). stop_sending: shut this side's sending
    down after rest (Tornado then drops the connection)."""
    url = urllib.parse.urlsplit(base_url)
    with socket.create_connection((url.hostname, url.port), timeout=timeout) as conn:
        conn.sendall(b"POST /v0/token/integration HTTP/1.1\r\nHost: x\r\nConnection: close\r\n" + rest)
        if stop_sending:
            conn.shutdown(socket.SHUT_WR)
        received = b""
        while chunk := conn.recv(65536):
            received += chunk
        return received
