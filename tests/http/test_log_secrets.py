"""No secret ever reaches a log line, while the useful lines are there.

The real service runs in-process; caplog captures every logger (ours,
tornado's, asyncio's) at DEBUG. Each test sends keys in every way a client
might (body, query string, header, broken bodies), and then checks every
captured record, message, arguments and traceback, against every secret:
API keys and their secret parts, issued tokens, stored hashes, and the
private parameters of the signing key.
"""

import json
import logging
import re
import sqlite3
import traceback

import pytest

from tests.httpclient import raw_request, request
from token_exchange.signing.tokens import SigningFailed, TokenIssuer
from token_exchange.web.handlers.base import UNKNOWN_PATH

LOGGERS = (
    "",
    "token_exchange",
    "token_exchange.access",
    "token_exchange.handlers",
    "tornado",
    "tornado.access",
    "tornado.application",
    "tornado.general",
    "asyncio",
)
PRIVATE_JWK_PARAMS = ("d", "p", "q", "dp", "dq", "qi")
# A log line quoting this many characters of a random secret leaks part of it.
WINDOW = 12
ACCESS_LINE = re.compile(r"(\S+) (\S+) (\d{3}) [\d.]+ms \S+")


def record_text(record):
    """Everything a log handler could write for a record."""
    parts = [record.getMessage(), repr(record.args), record.exc_text or "", record.stack_info or ""]
    if record.exc_info:
        parts.append("".join(traceback.format_exception(*record.exc_info)))
    return "\n".join(parts)


class LogCheck:
    """Requests against one service, the secrets they involve, and the log they leave."""

    def __init__(self, service, caplog, db_path, private_jwk):
        self.service = service
        self.caplog = caplog
        self.db_path = db_path
        self.secrets = {}  # value -> what it is
        self.windows = {}  # every WINDOW-character piece of a random secret -> what it is from
        self.expected_access = []  # (method, path, status) per request, in order
        for name in PRIVATE_JWK_PARAMS:
            self.secret(private_jwk[name], f"private JWK parameter {name}", random=True)

    def secret(self, value, what, random=False):
        """A value no log line may hold; nor any piece of it, when it is random."""
        # Shorter values could appear by chance; every real secret here is longer.
        if isinstance(value, str) and len(value) >= 8:
            self.secrets.setdefault(value, what)
            if random:
                for start in range(len(value) - WINDOW + 1):
                    self.windows.setdefault(value[start : start + WINDOW], f"part of {what}")

    def integration_key(self, new_key):
        """Register an integration key's secrets: the key, its secret part, its stored hash."""
        api_key = new_key.api_key
        self.secret(api_key, "integration API key")
        self.secret(api_key.rsplit(".", 1)[1], "integration key secret", random=True)
        with sqlite3.connect(self.db_path) as conn:
            (key_hash,) = conn.execute(
                "SELECT key_hash FROM integration_keys WHERE key_id = ?", (new_key.key_id,)
            ).fetchone()
        self.secret(key_hash, "stored key hash", random=True)
        return api_key

    def autojoin_key(self, new_key):
        self.secret(new_key.api_key, "autojoin API key", random=True)
        with sqlite3.connect(self.db_path) as conn:
            for (key_hash,) in conn.execute("SELECT key_sha256 FROM autojoin_keys"):
                self.secret(key_hash, "stored autojoin key hash", random=True)
        return new_key.api_key

    def send(self, method, path, body=None, headers=None, status=None):
        """One request; a presented key is a secret too. Returns the response."""
        response = request(self.service.base_url, method, path, body, headers)
        if status is not None:
            assert response.status == status, (method, path, response.status, response.body)
        if response.status == 200 and response.headers["Content-Type"] == "application/json":
            token = response.json()["token"]
            self.secret(token, "issued token")
            self.secret(token.rsplit(".", 1)[1], "issued token signature", random=True)
        # A path that is none of the routes is the client's words, a key possibly: not logged.
        logged_path = UNKNOWN_PATH if response.status == 404 else path.split("?", 1)[0]
        self.expected_access.append((method, logged_path, response.status))
        return response

    def exchange(self, endpoint, api_key, status):
        if isinstance(api_key, str):
            self.secret(api_key, f"presented {endpoint} key")
        body = json.dumps({"api_key": api_key})
        return self.send("POST", f"/v0/token/{endpoint}", body, {"Content-Type": "application/json"}, status)

    def records(self, name=None):
        self.service.settle()
        return [r for r in self.caplog.records if name is None or r.name == name]

    def assert_no_secret_logged(self):
        records = self.records()
        assert records, "nothing was logged: the check would be vacuous"
        for record in records:
            text = record_text(record)
            for value, what in self.secrets.items():
                assert value not in text, f"{what} in a log record of {record.name}: {record.getMessage()!r}"
            pieces = {text[start : start + WINDOW] for start in range(len(text) - WINDOW + 1)}
            for piece in pieces & self.windows.keys():
                pytest.fail(f"{self.windows[piece]} in a log record of {record.name}: {record.getMessage()!r}")
        for value, what in self.secrets.items():
            assert value not in self.caplog.text, f"{what} in the formatted log"

    def assert_access_lines(self):
        """Exactly one access line per request: method, path without query, status."""
        lines = []
        for record in self.records("token_exchange.access"):
            match = ACCESS_LINE.fullmatch(record.getMessage())
            assert match, record.getMessage()
            lines.append((match[1], match[2], int(match[3])))
        assert lines == self.expected_access

    def messages(self, name=None, level=None):
        return [r.getMessage() for r in self.records(name) if level is None or r.levelno == level]


@pytest.fixture
def logs(caplog):
    for name in LOGGERS:
        caplog.set_level(logging.DEBUG, logger=name or None)
    return caplog


@pytest.fixture
def check_logs(logs, db_path, private_jwks):
    """LogCheck for a service started by start_service."""

    def make(service):
        return LogCheck(service, logs, db_path, private_jwks[service.signing_key.alg])

    return make


def assert_secret_list_is_complete(check, *kinds):
    what = set(check.secrets.values())
    for kind in kinds:
        assert kind in what, f"no {kind} was checked"


def test_exchanges_refusals_and_odd_requests_log_no_secret(start_service, check_logs, integration_key, autojoin_key):
    check = check_logs(start_service("RS256"))
    bcrypt_key = integration_key("acme")
    key = check.integration_key(bcrypt_key)
    sha_key = check.integration_key(integration_key("acme-go", hash_scheme="sha256"))
    autojoin = check.autojoin_key(autojoin_key("example-org"))
    prefix, secret = key.rsplit(".", 1)

    # Valid exchanges.
    check.exchange("integration", key, 200)
    check.exchange("integration", sha_key, 200)
    check.exchange("autojoin", autojoin, 200)
    # Wrong secrets, unknown keys, keys for the other endpoint.
    check.exchange("integration", f"{prefix}.{secret[:-1]}x", 401)
    check.exchange("integration", f"{prefix}.{secret}{secret}", 401)
    check.exchange("integration", f"{sha_key.rsplit('.', 1)[0]}.{secret}", 401)
    check.exchange("integration", f"mlabk.cii_acme.ki_0000000000000000.{secret}", 401)
    check.exchange("integration", f"mlabk.cii_nobody.{bcrypt_key.key_id}.{secret}", 401)
    check.exchange("autojoin", autojoin[:-1] + "x", 401)
    check.exchange("autojoin", key, 401)
    check.exchange("integration", autojoin, 401)
    # Malformed keys.
    for malformed in (
        f"{prefix}.{secret * 4}",
        f"mlabk.cii_acme.{secret}",
        f"{key}.extra",
        f"MLABK{key[5:]}",
        f"mlabk.cii_acme.ki_.{secret}",
        f"{key}\ud800",
        "x" * 2000 + secret,
    ):
        check.exchange("integration", malformed, 401)
    # The key in the query string, on the right path, a wrong method and an unknown path.
    check.send("POST", f"/v0/token/integration?api_key={key}", status=400)  # no body
    check.send("POST", f"/v0/token/integration?api_key={key}", b"{}", status=401)
    check.send("POST", f"/v0/token/autojoin?api_key={autojoin}&key={key}", b"{}", status=401)
    check.send("GET", f"/v0/token/integration?api_key={key}", status=405)
    check.send("POST", f"/v0/token/other?api_key={key}", status=404)
    # The key in headers.
    for header in ("Authorization", "X-Api-Key", "Cookie"):
        value = f"Bearer {key}" if header == "Authorization" else key
        check.send("POST", "/v0/token/integration", b"{}", {header: value}, status=401)
        check.send("POST", "/v0/token/autojoin", b"{}", {header: autojoin}, status=401)
    # Bodies holding the key that are not valid requests.
    for body in (
        key,
        f'{{"api_key": "{key}"',
        json.dumps({"api_key": [key]}),
        json.dumps([{"api_key": key}]),
        json.dumps({"api_key": {"key": key}}),
        f'{{"api_key": "{key}", NaN}}',
    ):
        check.send("POST", "/v0/token/integration", body, status=400)
        check.send("POST", "/v0/token/autojoin", body.replace(key, autojoin), status=400)
    check.send("POST", "/v0/token/integration", json.dumps({"api_key": key, "pad": "x" * 70_000}), status=413)

    assert_secret_list_is_complete(
        check,
        "integration API key",
        "integration key secret",
        "stored key hash",
        "autojoin API key",
        "stored autojoin key hash",
        "issued token",
        *(f"private JWK parameter {name}" for name in PRIVATE_JWK_PARAMS),
    )
    check.assert_no_secret_logged()
    check.assert_access_lines()
    assert len(check.expected_access) > 40

    # The refusals say which key was refused and why, without its secret.
    refused = check.messages("token_exchange.handlers", logging.INFO)
    assert f"integration key refused: secret does not match (integration=acme key_id={bcrypt_key.key_id})" in refused
    # An unknown key's ids are the client's words, where it may have put its secret: not logged.
    assert "integration key refused: unknown key (ids not logged: a client may put anything there)" in refused
    assert not any("ki_0000000000000000" in m for m in refused)
    assert any(m.startswith("integration key refused: malformed key:") for m in refused)
    assert "autojoin key refused: unknown autojoin key" in refused


class FailingSigner:
    def sign(self, payload):
        raise RuntimeError("boom")


def FailingIssuer(signing_key):
    return TokenIssuer(signing_key, signer=FailingSigner())


def test_signing_failure_logs_the_error_but_no_secret(start_service, check_logs, integration_key, autojoin_key):
    check = check_logs(start_service("RS256", issuer_factory=FailingIssuer))
    new_key = integration_key("acme")
    key = check.integration_key(new_key)
    autojoin = check.autojoin_key(autojoin_key("example-org"))

    check.exchange("integration", key, 500)
    check.exchange("autojoin", autojoin, 500)

    check.assert_no_secret_logged()
    check.assert_access_lines()
    failures = [r for r in check.records("token_exchange.handlers") if r.levelno == logging.ERROR]
    assert [r.getMessage() for r in failures] == [
        "signing failed for /v0/token/integration",
        "signing failed for /v0/token/autojoin",
    ]
    for record in failures:
        assert record.exc_info[0] is SigningFailed
        assert isinstance(record.exc_info[1].__cause__, RuntimeError)
        assert "boom" in record_text(record)
    assert_secret_list_is_complete(
        check, "integration key secret", "stored key hash", "autojoin API key", "private JWK parameter d"
    )


def test_unavailable_store_logs_the_error_but_no_secret(start_service, check_logs, integration_key, autojoin_key):
    service = start_service("RS256")
    check = check_logs(service)
    key = check.integration_key(integration_key("acme"))
    autojoin = check.autojoin_key(autojoin_key("example-org"))
    check.exchange("integration", key, 200)

    # Every later read fails inside the real store, whichever thread makes it.
    with sqlite3.connect(service.key_store.path) as conn:
        conn.execute("DROP TABLE integration_keys")
        conn.execute("DROP TABLE autojoin_keys")
    check.exchange("integration", key, 503)
    check.exchange("autojoin", autojoin, 503)

    check.assert_no_secret_logged()
    check.assert_access_lines()
    errors = check.messages("token_exchange.handlers", logging.ERROR)
    assert len(errors) == 2
    assert errors[0].startswith("key store unavailable (integration): sqlite read failed")
    assert errors[1].startswith("key store unavailable (autojoin): sqlite read failed")


def test_unexpected_store_error_logs_a_traceback_but_no_secret(
    start_service, check_logs, integration_key, autojoin_key, monkeypatch
):
    service = start_service("RS256")
    check = check_logs(service)
    key = check.integration_key(integration_key("acme"))
    autojoin = check.autojoin_key(autojoin_key("example-org"))

    def broken(*args):
        raise RuntimeError("boom")

    monkeypatch.setattr(service.store, "get_integration_key", broken)
    monkeypatch.setattr(service.store, "find_autojoin_org", broken)
    check.exchange("integration", key, 500)
    check.send("POST", f"/v0/token/autojoin?api_key={autojoin}", json.dumps({"api_key": autojoin}), status=500)

    check.assert_no_secret_logged()
    check.assert_access_lines()
    errors = [r for r in check.records("token_exchange.handlers") if r.levelno == logging.ERROR]
    assert [r.getMessage() for r in errors] == [
        "unexpected error in POST /v0/token/integration",
        "unexpected error in POST /v0/token/autojoin",
    ]
    assert all(r.exc_info[0] is RuntimeError for r in errors)


def test_a_key_wherever_a_client_misplaces_it_is_not_logged(start_service, check_logs, integration_key):
    service = start_service("RS256")
    check = check_logs(service)
    key = check.integration_key(integration_key("acme"))
    prefix, secret = key.rsplit(".", 1)
    # In the path of an unknown route, and as the method.
    check.send("GET", f"/{key}", status=404)
    check.send("POST", f"/v0/token/{key}", b"{}", status=404)
    assert raw_request(
        service.port, f"{key} /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode()
    ).startswith(b"HTTP/1.1 405 ")
    check.expected_access.append(("(other-method)", "/health", 405))
    # Where the integration id goes: the store knows no such integration, so its "ids" are not logged.
    check.exchange("integration", f"mlabk.cii_{secret}.{prefix.rsplit('.', 1)[1]}.{secret}", 401)
    # As the value of headers Tornado refuses, quoting them in its own log line.
    for header in ("Content-Length", "Transfer-Encoding", "Host"):
        answer = raw_request(service.port, f"POST /health HTTP/1.1\r\nHost: x\r\n{header}: {key}\r\n\r\n".encode())
        assert answer.startswith(b"HTTP/1.1 400 Bad Request\r\n"), (header, answer)
    answer = raw_request(service.port, f"GET /health HTTP/1.1\r\nHost: x\r\nX-Key: {key}\x01\r\n\r\n".encode())
    assert answer.startswith(b"HTTP/1.1 400 Bad Request\r\n")
    assert raw_request(service.port, f"GET /{key} HTTP/9.9\r\n\r\n".encode()).startswith(
        b"HTTP/1.1 400 Bad Request\r\n"
    )

    check.assert_no_secret_logged()
    check.assert_access_lines()
    # Tornado's lines say why, without the value.
    malformed = check.messages("tornado.general")
    assert "Malformed HTTP message from 127.0.0.1: Only integer Content-Length is allowed" in malformed
    assert "Malformed HTTP message from 127.0.0.1: Unsupported Transfer-Encoding" in malformed
    assert "Malformed HTTP message from 127.0.0.1: Invalid header value" in malformed
