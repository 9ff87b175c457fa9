"""Start-up of the built service zipapp, run by a plain python3 -I.

Bad configuration stops it with one line on stderr and a non-zero status;
good configuration, in every Go flag spelling, makes it answer /health; a
signal stops it with status 0; it serves metrics over HTTP and JSON log lines.
"""

import http.client
import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time

import pytest
from jwcrypto import jwk

from tests.httpclient import exchange, request, send_headers_awaiting_body
from tests.support import ROOT, missing_documented_metrics
from tests.zipapp_service import (
    LIMIT_MEMORY,
    START_TIMEOUT_SECONDS,
    access_lines,
    error_line,
    free_port,
    hashing_queue_depth,
    health,
    metric_values,
    only_line,
    run_zipapp,
    settled,
)
from token_exchange.signing.keyfile import MAX_KEY_FILE_BYTES, PRIVATE_PARAMS

PROG = "token-exchange"


FLAGS = (
    "-port",
    "-private-key-path",
    "-platform-ns",
    "-client-integration-ns",
    "-project-id",
    "-prometheusx.listen-address",
    "-store",
    "-store-timeout",
    "-key-cache-ttl",
    "-max-pending-verifications",
)


def run_service(pyz, home, *args, env=None, **kwargs):
    """Run the service zipapp expecting it to stop by itself (a start-up failure); fail if it keeps running."""
    # Not the default :9990, which another program on this machine may hold; a flag still wins.
    env = {"PROMETHEUSX_LISTEN_ADDRESS": f"127.0.0.1:{free_port()}", **(env or {})}
    try:
        return run_zipapp(pyz, args, home, env, timeout=START_TIMEOUT_SECONDS, **kwargs)
    except subprocess.TimeoutExpired as e:
        pytest.fail(f"the service kept running instead of stopping; its stderr: {e.stderr!r}")


def test_help_with_a_minimal_environment(service_pyz, tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    done = run_zipapp(service_pyz, ["-h"], home)
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    assert done.stdout.startswith("usage: token-exchange")
    for flag in FLAGS:
        assert f"{flag} " in done.stdout, flag
        assert f"--{flag[1:]} " in done.stdout, flag
    # shiv unpacked into the given HOME, nowhere else.
    assert any((home / ".shiv").iterdir())


# Bad signing-key files: each case writes a file and returns (path, JWKs whose private parameters it holds).


def _write(path, data):
    path.write_text(data if isinstance(data, str) else json.dumps(data))
    return path


def _public(private):
    public = json.loads(jwk.JWK(**private).export_public())
    public.update(kid=private["kid"], alg=private["alg"])
    return public


def missing(tmp_path, jwks):
    return tmp_path / "nowhere" / "jwk-priv.json", [], "does not exist"


def directory(tmp_path, jwks):
    path = tmp_path / "jwk-dir"
    path.mkdir()
    return path, [], "is a directory"


def under_a_file(tmp_path, jwks):
    _write(tmp_path / "plain-file", "x")
    return tmp_path / "plain-file" / "jwk-priv.json", [], "cannot be read"


def dev_zero(tmp_path, jwks):
    return "/dev/zero", [], "is a character device, not a regular file"


def fifo(tmp_path, jwks):
    # Opened for reading, a FIFO waits for a writer; none comes.
    path = tmp_path / "jwk-priv.json"
    os.mkfifo(path)
    return path, [], "is a FIFO, not a regular file"


def over_1_mib(tmp_path, jwks):
    content = json.dumps(jwks["RS256"])
    data = content + " " * (MAX_KEY_FILE_BYTES + 1 - len(content))
    return _write(tmp_path / "jwk-priv.json", data), [jwks["RS256"]], "is larger than 1 MiB"


def unreadable(tmp_path, jwks):
    if os.geteuid() == 0:
        pytest.skip("root reads a file of mode 000")
    path = _write(tmp_path / "jwk-priv.json", jwks["RS256"])
    path.chmod(0)
    return path, [jwks["RS256"]], "permission denied"


def not_json(tmp_path, jwks):
    # A private JWK cut short: the key material is in the file, the JSON is broken.
    return _write(tmp_path / "jwk-priv.json", json.dumps(jwks["RS256"])[:-1]), [jwks["RS256"]], "not valid JSON"


def empty(tmp_path, jwks):
    return _write(tmp_path / "jwk-priv.json", ""), [], "not valid JSON"


def json_array(tmp_path, jwks):
    return _write(tmp_path / "jwk-priv.json", [jwks["ES256"]]), [jwks["ES256"]], "JSON object"


def public_only(tmp_path, jwks):
    return _write(tmp_path / "jwk-pub.json", _public(jwks["RS256"])), [], "public key"


def without_kid(tmp_path, jwks):
    data = {name: value for name, value in jwks["EdDSA"].items() if name != "kid"}
    return _write(tmp_path / "jwk-priv.json", data), [data], "'kid'"


def kid_too_long(tmp_path, jwks):
    data = {**jwks["ES256"], "kid": "k" * 100_000}
    return _write(tmp_path / "jwk-priv.json", data), [data], ": kid has 100000 characters; at most 256 are allowed"


def jwk_set_without_private_key(tmp_path, jwks):
    return _write(tmp_path / "jwks.json", {"keys": [_public(jwks["RS256"])]}), [], "JWK Set has no private key"


def jwk_set_with_duplicate_kids(tmp_path, jwks):
    data = {"keys": [jwks["RS256"], {**jwks["ES256"], "kid": jwks["RS256"]["kid"]}]}
    return _write(tmp_path / "jwks.json", data), [jwks["RS256"], jwks["ES256"]], "duplicate kid"


def rsa_1024(tmp_path, jwks):
    data = json.loads(jwk.JWK.generate(kty="RSA", size=1024).export_private())
    data.update(kid="small", alg="RS256")
    return _write(tmp_path / "jwk-priv.json", data), [data], "1024 bits"


def rsa_alg_on_ec_key(tmp_path, jwks):
    data = {**jwks["ES256"], "alg": "RS256"}
    return _write(tmp_path / "jwk-priv.json", data), [data], "algorithm RS256 does not match"


def es256_alg_on_ed25519_key(tmp_path, jwks):
    data = {**jwks["EdDSA"], "alg": "ES256"}
    return _write(tmp_path / "jwk-priv.json", data), [data], "algorithm ES256 does not match"


def mismatched_halves(tmp_path, jwks):
    # The private scalar of one P-256 key with the public point of another.
    other = json.loads(jwk.JWK.generate(kty="EC", crv="P-256").export_private())
    data = {**jwks["ES256"], "d": other["d"]}
    return _write(tmp_path / "jwk-priv.json", data), [data, jwks["ES256"]], "private JWK"


BAD_KEY_FILES = [
    missing,
    directory,
    dev_zero,
    fifo,
    over_1_mib,
    under_a_file,
    unreadable,
    not_json,
    empty,
    json_array,
    public_only,
    without_kid,
    kid_too_long,
    jwk_set_without_private_key,
    jwk_set_with_duplicate_kids,
    rsa_1024,
    rsa_alg_on_ec_key,
    es256_alg_on_ed25519_key,
    mismatched_halves,
]


@pytest.mark.parametrize("case", BAD_KEY_FILES, ids=[case.__name__ for case in BAD_KEY_FILES])
def test_bad_key_file_stops_start_up_with_one_line(service_pyz, zipapp_home, tmp_path, db_path, private_jwks, case):
    path, held, problem = case(tmp_path, private_jwks)
    port = free_port()
    done = run_service(
        service_pyz,
        zipapp_home,
        "-private-key-path",
        path,
        "-store",
        f"sqlite:{db_path}",
        "-port",
        port,
        limits=LIMIT_MEMORY,
    )
    assert done.returncode == 1
    line = only_line(done, PROG)
    assert line.startswith(f"{PROG}: error: private key file {path}: "), line
    assert problem in line, line
    assert health(f"http://127.0.0.1:{port}") is None
    for data in held:
        for name in PRIVATE_PARAMS:
            if name in data:
                assert data[name] not in done.stderr, name


# Other bad configuration.


@pytest.mark.parametrize(
    "args", [[], ["-store", "datastore"], ["--store=datastore"]], ids=["default", "flag", "double-dash"]
)
def test_datastore_store_stops_start_up_with_one_line(service_pyz, zipapp_home, key_file, args):
    # No Google credentials in the minimal environment: the service cannot use Datastore.
    done = run_service(service_pyz, zipapp_home, "-private-key-path", key_file(), "-port", free_port(), *args)
    assert done.returncode != 0
    line = only_line(done, PROG)
    assert "store 'datastore'" in line, line


@pytest.mark.parametrize(
    "args,named",
    [
        (["-store", "foo"], "-store"),
        (["-store", "sqlite:"], "-store"),
        (["-port", "notanumber"], "-port"),
        (["-port", "65536"], "-port"),
        (["-prometheusx.listen-address", "9990"], "-prometheusx.listen-address"),
        (["-no-such-flag"], "-no-such-flag"),
        (["-por", "{port}"], "-por"),  # Go's flag package knows no abbreviations
        (["-key-cache-ttl", "-1"], "-key-cache-ttl"),
        (["-max-pending-verifications", "0"], "-max-pending-verifications"),
    ],
    ids=[
        "store-foo",
        "store-sqlite-empty",
        "port-nan",
        "port-range",
        "metrics-address",
        "unknown",
        "abbreviated",
        "key-cache-ttl-negative",
        "max-pending-zero",
    ],
)
def test_bad_flag_exits_2_with_one_line(service_pyz, zipapp_home, key_file, db_path, args, named):
    port = free_port()
    done = run_service(
        service_pyz,
        zipapp_home,
        "-private-key-path",
        key_file(),
        "-store",
        f"sqlite:{db_path}",
        *(arg.format(port=port) for arg in args),
    )
    assert done.returncode == 2
    assert named in only_line(done, PROG)
    assert not db_path.exists()


@pytest.mark.parametrize(
    "store,problem",
    [
        ("{tmp}/no-such-dir/keys.db", "directory {tmp}/no-such-dir does not exist"),
        ("{tmp}", "unable to open"),
        ("{tmp}/not-a-database.db", "not a database"),
    ],
    ids=["missing-directory", "directory", "not-a-database"],
)
def test_unusable_store_stops_start_up_with_one_line(service_pyz, zipapp_home, key_file, tmp_path, store, problem):
    (tmp_path / "not-a-database.db").write_bytes(b"not SQLite at all, " * 100)
    spec = "sqlite:" + store.format(tmp=tmp_path)
    done = run_service(service_pyz, zipapp_home, "-private-key-path", key_file(), "-store", spec, "-port", free_port())
    assert done.returncode != 0
    line = only_line(done, PROG)
    assert line.startswith(f"{PROG}: error: store {spec}: "), line
    assert problem.format(tmp=tmp_path) in line, line
    assert (tmp_path / "not-a-database.db").read_bytes() == b"not SQLite at all, " * 100


def test_metrics_address_in_use_stops_start_up_with_one_line(service_pyz, zipapp_home, key_file, db_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        address = f"127.0.0.1:{taken.getsockname()[1]}"
        done = run_service(
            service_pyz,
            zipapp_home,
            "-private-key-path",
            key_file(),
            "-store",
            f"sqlite:{db_path}",
            "-port",
            free_port(),
            "-prometheusx.listen-address",
            address,
        )
        # A store that cannot open is named first: it is the problem to fix.
        bad_store = f"sqlite:{db_path.parent}"
        store_first = run_service(
            service_pyz,
            zipapp_home,
            "-private-key-path",
            key_file(),
            "-store",
            bad_store,
            "-port",
            free_port(),
            "-prometheusx.listen-address",
            address,
        )
    assert done.returncode == 1
    assert only_line(done, PROG) == f"{PROG}: error: cannot serve metrics on {address}: Address already in use"
    assert store_first.returncode == 1
    assert only_line(store_first, PROG).startswith(f"{PROG}: error: store {bad_store}: ")


def test_bad_flag_from_the_environment_exits_2(service_pyz, zipapp_home, key_file):
    done = run_service(service_pyz, zipapp_home, "-private-key-path", key_file(), env={"PORT": "http"})
    assert done.returncode == 2
    assert "port" in only_line(done, PROG)


SPELLINGS = {
    "-port N": lambda port: (["-port", str(port)], {}),
    "-port=N": lambda port: ([f"-port={port}"], {}),
    "--port N": lambda port: (["--port", str(port)], {}),
    "--port=N": lambda port: ([f"--port={port}"], {}),
    "PORT=N": lambda port: ([], {"PORT": str(port)}),
}


@pytest.mark.parametrize("spelling", SPELLINGS)
def test_port_in_every_spelling(zipapp_services, key_file, db_path, spelling):
    port = free_port()
    port_args, env = SPELLINGS[spelling](port)
    args = ["-private-key-path", key_file(), "-store", f"sqlite:{db_path}", *port_args]
    service = zipapp_services.launch(args, port, env).wait_healthy()
    assert request(service.base_url, "GET", "/health").body == b"ok"
    assert f"listening on port {port}" in service.output()


def test_command_line_port_wins_over_port_env(zipapp_services, key_file, db_path):
    flag_port, env_port = free_port(), free_port()
    args = ["-private-key-path", key_file(), "-store", f"sqlite:{db_path}", "-port", str(flag_port)]
    zipapp_services.launch(args, flag_port, {"PORT": str(env_port)}).wait_healthy()
    assert health(f"http://127.0.0.1:{env_port}") is None


def test_everything_from_the_environment(zipapp_services, key_file, tmp_path):
    port = free_port()
    db = tmp_path / "env.db"
    env = {"PORT": str(port), "PRIVATE_KEY_PATH": str(key_file("EdDSA")), "STORE": f"sqlite:{db}"}
    service = zipapp_services.launch([], port, env).wait_healthy()
    jwks = request(service.base_url, "GET", "/.well-known/jwks.json").json()
    assert [key["alg"] for key in jwks["keys"]] == ["EdDSA"]
    assert db.exists()


# Running, and stopping.


def ipv6_loopback():
    try:
        with socket.socket(socket.AF_INET6) as probe:
            probe.bind(("::1", 0))
        return True
    except OSError:
        return False


@pytest.mark.skipif(not ipv6_loopback(), reason="this machine has no IPv6 loopback")
def test_metrics_served_on_a_bracketed_ipv6_address(zipapp_services):
    service = zipapp_services.start(metrics_host="[::1]")
    scraped = request(service.metrics_url, "GET", "/metrics")
    assert scraped.status == 200
    assert "tokenexchange_integration_requests" in scraped.text


def test_port_already_in_use(service_pyz, zipapp_home, key_file, db_path):
    with socket.socket() as taken:
        taken.bind(("", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = run_service(
            service_pyz,
            zipapp_home,
            "-private-key-path",
            key_file(),
            "-store",
            f"sqlite:{db_path}",
            "-port",
            port,
            "-prometheusx.listen-address",
            f"127.0.0.1:{free_port()}",
        )
    assert done.returncode != 0
    line = error_line(done, PROG)  # after the start-up log lines
    assert f"port {port}" in line and "in use" in line, line


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_signal_stops_the_service_with_status_0(zipapp_services, signum):
    service = zipapp_services.start()
    assert service.signal_and_wait(signum) == 0, service.output()
    assert "Traceback" not in service.output()
    messages = [json.loads(line)["message"] for line in service.output().splitlines()]
    assert "shutting down: 0 requests in flight, waiting up to 30 s" in messages
    assert messages[-1] == "stopped"  # the last word, once everything is closed
    assert health(service.base_url) is None


def test_sigterm_lets_a_request_in_flight_finish(zipapp_services, integration_key):
    # Checking a cost-14 bcrypt hash takes about a second: the request is in flight when SIGTERM comes.
    key = integration_key("acme", bcrypt_cost=14)
    service = zipapp_services.start()
    conn = http.client.HTTPConnection("127.0.0.1", service.port, timeout=30)
    try:
        started = time.monotonic()
        conn.request("POST", "/v0/token/integration", json.dumps({"api_key": key.api_key}))
        assert settled(lambda: hashing_queue_depth(service), 1) == 1  # its bcrypt check has started
        service.process.send_signal(signal.SIGTERM)
        response = conn.getresponse()
        assert time.monotonic() - started > 0.2  # it was in flight when the signal came
        assert response.status == 200
        assert "token" in json.loads(response.read())
    finally:
        conn.close()
    assert service.process.wait(30) == 0
    assert "shutting down: 1 request in flight, waiting up to 30 s" in service.output()


def test_sigterm_waits_for_a_body_still_arriving(zipapp_services, integration_key):
    # The headers come before the signal and the body after it: the request was under way, so it is
    # answered, as Go's Shutdown answers a connection that has started a request.
    key = integration_key()
    service = zipapp_services.start()
    body = json.dumps({"api_key": key.api_key}).encode()
    with socket.create_connection(("127.0.0.1", service.port), timeout=30) as conn:
        # The service says when it has read the headers, so the signal surely comes after them.
        assert send_headers_awaiting_body(conn, len(body)) == b"HTTP/1.1 100 (Continue)\r\n\r\n"
        service.process.send_signal(signal.SIGTERM)
        # The service is shutting down before the body comes.
        assert settled(lambda: "shutting down: " in service.output(), True), service.output()
        conn.sendall(body)
        answer = b""
        while chunk := conn.recv(65536):  # until the service closes the connection
            answer += chunk
    head, _, token_body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 "), answer
    assert "token" in json.loads(token_body)
    assert service.process.wait(30) == 0


def test_a_request_read_during_shutdown_is_answered_with_connection_close(zipapp_services, integration_key):
    # A kept-alive connection sends its next request while another request keeps the service shutting down.
    key = integration_key()
    slow_key = integration_key("slow", bcrypt_cost=14)  # about a second of bcrypt: in flight throughout
    service = zipapp_services.start()
    kept = http.client.HTTPConnection("127.0.0.1", service.port, timeout=30)
    slow = http.client.HTTPConnection("127.0.0.1", service.port, timeout=30)
    try:
        kept.request("POST", "/v0/token/integration", json.dumps({"api_key": key.api_key}))
        first = kept.getresponse()
        first.read()
        assert first.getheader("Connection") is None  # kept alive before the signal
        slow.request("POST", "/v0/token/integration", json.dumps({"api_key": slow_key.api_key}))
        assert settled(lambda: hashing_queue_depth(service), 1) == 1  # its bcrypt check has started
        service.process.send_signal(signal.SIGTERM)
        assert settled(lambda: "shutting down: " in service.output(), True), service.output()
        kept.request("POST", "/v0/token/integration", json.dumps({"api_key": key.api_key}))
        during = kept.getresponse()
        assert during.status == 200
        assert "token" in json.loads(during.read())
        assert during.getheader("Connection") == "close"  # no more requests on this connection
        assert slow.getresponse().status == 200
    finally:
        kept.close()
        slow.close()
    assert service.process.wait(30) == 0


def test_sigterm_does_not_wait_for_an_idle_kept_alive_connection(zipapp_services, integration_key):
    key = integration_key()
    service = zipapp_services.start()
    conn = http.client.HTTPConnection("127.0.0.1", service.port, timeout=30)
    try:
        conn.request("POST", "/v0/token/integration", json.dumps({"api_key": key.api_key}))
        assert conn.getresponse().read()  # answered; the connection stays open, idle
        started = time.monotonic()
        service.process.send_signal(signal.SIGTERM)
        assert service.process.wait(25) == 0  # well within the 30 s grace: idle connections are closed
        assert time.monotonic() - started < 10
    finally:
        conn.close()


def revoke(db_path, key_id):
    with sqlite3.connect(db_path) as conn:
        conn.execute("UPDATE integration_keys SET status = 'revoked' WHERE key_id = ?", (key_id,))


def test_key_cache_ttl_0_refuses_a_revoked_key_at_once(zipapp_services, integration_key, db_path):
    key = integration_key()
    service = zipapp_services.start("-key-cache-ttl", "0")
    assert exchange(service.base_url, "integration", key.api_key).status == 200
    revoke(db_path, key.key_id)
    assert exchange(service.base_url, "integration", key.api_key).status == 401


def test_key_cache_ttl_reuses_the_record_within_its_bound(zipapp_services, integration_key, db_path):
    # 600 s: far longer than this test, so the cached record must still answer.
    key = integration_key()
    service = zipapp_services.start("--key-cache-ttl=600")
    assert exchange(service.base_url, "integration", key.api_key).status == 200
    revoke(db_path, key.key_id)
    assert exchange(service.base_url, "integration", key.api_key).status == 200


def test_trusted_proxies_lets_x_forwarded_for_tell_clients_apart(zipapp_services, integration_key):
    # The flag reaches the limits on bcrypt checks: behind one proxy (every request comes from 127.0.0.1),
    # the client that failed is throttled whatever secret it sends, and another client is not.
    key = integration_key()
    prefix, secret = key.api_key.rsplit(".", 1)
    service = zipapp_services.start("-trusted-proxies", "1")
    attacker, holder = [("X-Forwarded-For", "198.51.100.7")], [("X-Forwarded-For", "198.51.100.8")]
    for n in range(5):
        assert exchange(service.base_url, "integration", f"{prefix}.{secret[:-2]}{n:02d}", attacker).status == 401
    assert exchange(service.base_url, "integration", key.api_key, attacker).status == 429
    assert exchange(service.base_url, "integration", key.api_key, holder).status == 200


def test_metrics_are_served_over_http(zipapp_services, integration_key):
    key = integration_key("acme")
    service = zipapp_services.start()
    for _ in range(2):
        assert exchange(service.base_url, "integration", key.api_key).status == 200
    expected = {frozenset({("code", "200"), ("method", "post")}): 2.0}
    assert (
        settled(lambda: metric_values(service.metrics_url, "tokenexchange_integration_requests_total"), expected)
        == expected
    )
    issued = metric_values(service.metrics_url, "tokenexchange_tokens_issued_total")
    assert issued == {frozenset({("audience", "integration")}): 2.0, frozenset({("audience", "autojoin")}): 0.0}
    # Not a TTY: JSON lines. By default a success leaves no access line, a refusal does, naming
    # the key by its ids only.
    assert exchange(service.base_url, "integration", key.api_key[:-1] + "~").status == 401
    statuses = settled(
        lambda: [line["httpRequest"]["status"] for line in access_lines(service, "/v0/token/integration")], [401]
    )
    assert statuses == [401]
    assert access_lines(service, "/v0/token/integration")[0]["key_id"] == key.key_id
    assert key.api_key.rsplit(".", 1)[1] not in service.output()


def first_scrape(metrics_url):
    """/metrics once it answers: with -workers the supervisor serves it, and starts to after forking, so a
    worker may answer /health before."""
    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    while True:
        try:
            return request(metrics_url, "GET", "/metrics").body.decode()
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


@pytest.mark.parametrize("workers", ["1", "2"])
def test_every_documented_metric_is_served_before_the_first_request(zipapp_services, workers):
    service = zipapp_services.start("-workers", workers)
    assert missing_documented_metrics(first_scrape(service.metrics_url)) == []


# The service sends itself a signal while loading its signing key, before it serves.
SIGNAL_WHILE_STARTING = """
import os, signal, sys
from token_exchange.cli import service as server
real_load_key_set, signum = server.load_key_set, getattr(signal, sys.argv.pop(1))
def load_then_signal(path):
    keys = real_load_key_set(path)
    os.kill(os.getpid(), signum)
    return keys
server.load_key_set = load_then_signal
server.main(sys.argv[1:])
"""


@pytest.mark.parametrize("signal_name", ["SIGTERM", "SIGINT"])
def test_a_signal_while_starting_stops_the_service_with_status_0(key_file, db_path, signal_name):
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            SIGNAL_WHILE_STARTING,
            signal_name,
            "-private-key-path",
            str(key_file()),
            "-store",
            f"sqlite:{db_path}",
            "-port",
            str(free_port()),
            "-prometheusx.listen-address",
            f"127.0.0.1:{free_port()}",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
