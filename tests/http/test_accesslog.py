"""Access lines (web/accesslog.py): one per request, fields as JSON, ids but no secret, the
-access-log choice and the log level, while metrics count every request."""

import json
import logging
import re
import time

import pytest

from tests.httpclient import exchange, request
from tests.support import samples, value
from token_exchange.observability.logs import JSONFormatter, TextFormatter


def access_record(logs, path):
    records = [
        r
        for r in logs.records
        if r.name == "token_exchange.access" and r.json_fields["httpRequest"]["requestUrl"] == path
    ]
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
    assert http_request == {
        "requestMethod": "POST",
        "requestUrl": "/v0/token/integration",
        "status": 200,
        "remoteIp": "127.0.0.1",
    }
    assert (line["integration_id"], line["key_id"]) == ("acme", key.key_id)
    autojoin_line = json.loads(formatter.format(access_record(caplog, "/v0/token/autojoin")))
    assert autojoin_line["org"] == "example-org"
    health_line = json.loads(formatter.format(access_record(caplog, "/health")))
    assert "integration_id" not in health_line and "org" not in health_line

    text = TextFormatter().format(access_record(caplog, "/v0/token/integration"))
    assert re.search(
        r" INFO token_exchange\.access: POST /v0/token/integration 200 [\d.]+ms 127\.0\.0\.1 "
        rf"integration_id=acme key_id={key.key_id}$",
        text,
    ), text
    everything = "\n".join(formatter.format(r) + TextFormatter().format(r) for r in caplog.records)
    for secret in (key.api_key, key.api_key.rsplit(".", 1)[1], autojoin.api_key, integration_token, autojoin_token):
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
        "token_exchange.access", logging.INFO, __file__, 1, "m", (), None
    )
    # Every attribute a formatter or filter may read is there, as for a record logger.info() makes.
    assert set(vars(ordinary)) <= set(vars(first))
    assert (first.levelname, first.levelno, first.process) == ("INFO", logging.INFO, ordinary.process)
    assert (first.thread, first.threadName) == (service._thread.ident, service._thread.name)
    # Each line has its own time: the moment its request was answered.
    for record, (sent, settled) in zip((first, second), windows):
        assert sent <= record.created <= settled
    assert first.getMessage().startswith("GET /health 200 ")


@pytest.mark.parametrize(
    "access_log, logged_statuses", [("all", [200, 401, 405, 200, 404]), ("errors", [401, 405, 404]), ("off", [])]
)
def test_access_log_choice_picks_the_lines_and_metrics_count_every_request(
    caplog, start_service, integration_key, access_log, logged_statuses
):
    caplog.set_level(logging.INFO)
    service = start_service(access_log=access_log)
    key = integration_key("acme")
    assert exchange(service.base_url, "integration", key.api_key).status == 200
    assert exchange(service.base_url, "integration", key.api_key[:-1] + "~").status == 401
    assert request(service.base_url, "GET", "/v0/token/integration").status == 405
    assert request(service.base_url, "GET", "/health").status == 200
    assert request(service.base_url, "GET", "/nowhere").status == 404
    service.settle()
    assert [
        r.json_fields["httpRequest"]["status"] for r in caplog.records if r.name == "token_exchange.access"
    ] == logged_statuses
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


def test_a_presented_id_cannot_forge_a_log_line(caplog, service):
    caplog.set_level(logging.INFO)
    forged = "acme\n2026-01-01 00:00:00,000 ERROR token_exchange: forged"  # no dot: a well-formed key
    assert exchange(service.base_url, "integration", f"mlabk.cii_{forged}.ki_0123456789abcdef.s3cr3t").status == 401
    service.settle()
    record = access_record(caplog, "/v0/token/integration")
    assert "integration_id" not in record.fields  # the store knows no such key: its ids are not logged
    assert not any(forged in r.getMessage() for r in caplog.records)
    for formatter in (TextFormatter(), JSONFormatter()):
        lines = "\n".join(formatter.format(r) for r in caplog.records).splitlines()
        assert len(lines) == len(caplog.records)
        assert not any(line.startswith("2026-01-01") for line in lines)
