"""SIGHUP re-reads the signing key file of the built service, with one process and with -workers 2:
a usable file signs and is published at once, an unusable one leaves the keys in use with one error
line, and a SIGHUP during start-up waits until the service serves. Tokens are verified over HTTP as a
consumer does, against the JWKS served at that moment."""

import concurrent.futures
import json
import os
import signal
import subprocess
import sys
import tempfile
import time

import pytest

from tests.consumer import fetch_jwks, token_header, verify_token
from tests.httpclient import exchange, request
from tests.support import ROOT
from tests.zipapp_service import access_lines, free_port, health, json_lines, settled
from token_exchange.signing.keyfile import PRIVATE_PARAMS, KeyFileError, generate_private_jwk, load_key_set

RELOADED = "signing key file reloaded: "
NOT_RELOADED = "signing key file not reloaded: "
# Generous: a reload is a file read and a key check, but the machine may be busy.
RELOAD_TIMEOUT_SECONDS = 30
# Batches of concurrent requests sent, at most, until every worker has answered one.
MAX_WORKER_BATCHES = 25


def write_key_file(path, data):
    """Replace the key file in one step, as generate-jwk does: a reload never reads half a file."""
    temporary = path.with_name(path.name + ".new")
    temporary.write_text(data if isinstance(data, str) else json.dumps(data))
    os.replace(temporary, path)


def public_half(private):
    return {name: value for name, value in private.items() if name not in PRIVATE_PARAMS}


def serving_pids(service, workers):
    """The pids that serve: the service's own, or its workers' as the supervisor names them."""
    if workers == 1:
        return {service.process.pid}

    def supervising():
        return [m for m in log_messages(service) if m.startswith("supervising ")]

    assert settled(lambda: len(supervising()), 1, RELOAD_TIMEOUT_SECONDS) == 1, service.output()
    return {int(pid) for pid in supervising()[0].split(": ", 1)[1].split()}


def log_messages(service, severity=None):
    return [line["message"] for line in json_lines(service.output()) if severity in (None, line["severity"])]


def reload_lines(service):
    return [line for line in json_lines(service.output()) if line["message"].startswith((RELOADED, NOT_RELOADED))]


def hang_up(service, pids):
    """SIGHUP the service; wait until every serving process has logged its reload line; return those lines."""
    before = len(reload_lines(service))
    service.process.send_signal(signal.SIGHUP)
    expected = len(pids)
    assert settled(lambda: len(reload_lines(service)) - before, expected, RELOAD_TIMEOUT_SECONDS) == expected, (
        service.output()
    )
    lines = reload_lines(service)[before:]
    assert {line["pid"] for line in lines} == pids
    assert service.process.poll() is None
    return lines


def jwks(service, headers=None):
    response = request(service.base_url, "GET", "/.well-known/jwks.json", None, headers)
    assert response.status in (200, 304)
    return response


def published(service):
    return [key["kid"] for key in json.loads(jwks(service).body)["keys"]]


def tokens_from_every_process(service, api_key, pids):
    """Autojoin tokens sent until every serving process has answered some (-access-log all names them)."""
    seen_before = len(access_lines(service, "/v0/token/autojoin"))
    tokens = []
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        for _ in range(MAX_WORKER_BATCHES):
            responses = list(pool.map(lambda _: exchange(service.base_url, "autojoin", api_key), range(16)))
            assert [response.status for response in responses] == [200] * len(responses)
            tokens += [response.json()["token"] for response in responses]
            count = seen_before + len(tokens)
            assert settled(lambda: len(access_lines(service, "/v0/token/autojoin")), count) == count
            if {line["pid"] for line in access_lines(service, "/v0/token/autojoin")[seen_before:]} == pids:
                return tokens
    pytest.fail(f"not every process answered: {pids}")


@pytest.mark.parametrize("workers", [1, 2], ids=["one process", "2 workers"])
def test_sighup_signs_with_the_new_key_and_publishes_it_at_once(
    zipapp_services, autojoin_key, tmp_path, db_path, workers
):
    old = generate_private_jwk("RS256", kid="old-key")
    new = generate_private_jwk("ES256", kid="new-key")
    path = tmp_path / "jwk-priv.json"
    write_key_file(path, old)
    api_key = autojoin_key().api_key
    service = zipapp_services.start("-workers", workers, "-access-log", "all", key_path=path, store_path=db_path)
    pids = serving_pids(service, workers)
    old_token = exchange(service.base_url, "autojoin", api_key).json()["token"]
    old_issued = time.time()  # the test takes a while: verify its iat against when it was issued
    assert token_header(old_token)["kid"] == "old-key"
    etag = jwks(service).headers["Etag"]

    # The new key signs and both are published; every process reloads on one signal.
    write_key_file(path, {"keys": [new, old]})
    lines = hang_up(service, pids)
    assert [line["severity"] for line in lines] == ["INFO"] * len(pids)
    assert {line["message"] for line in lines} == {
        f"{RELOADED}signing with key kid=new-key alg=ES256 from {path}; JWKS publishes kids new-key, old-key"
    }
    for token in tokens_from_every_process(service, api_key, pids):
        assert token_header(token)["kid"] == "new-key"
        assert verify_token(service.base_url, token, "autojoin")["org"] == "example-org"
    assert verify_token(service.base_url, old_token, "autojoin", now=old_issued)["org"] == "example-org"
    assert published(service) == ["new-key", "old-key"]
    revalidated = jwks(service, {"If-None-Match": etag})
    assert revalidated.status == 200  # the JWKS changed, and its ETag with it
    assert revalidated.headers["Etag"] != etag
    # The new key signs at once, not an hour after it was published: a consumer that cached the JWKS
    # would refuse its tokens, and each process says so.
    expected = [
        "kid=new-key signs from now on but was not published before this reload: consumers that cached "
        "the JWKS in the last hour refuse its tokens until they fetch it again; publish a key an hour "
        "before it signs"
    ] * len(pids)
    assert settled(lambda: log_messages(service, "WARNING"), expected) == expected
    output = service.output()
    assert "Traceback" not in output
    for private in (old, new):
        assert private["d"] not in output


@pytest.mark.parametrize("workers", [1, 2], ids=["one process", "2 workers"])
def test_sighup_with_an_unusable_file_keeps_the_keys_in_use(zipapp_services, autojoin_key, tmp_path, db_path, workers):
    old = generate_private_jwk("RS256", kid="old-key")
    path = tmp_path / "jwk-priv.json"
    write_key_file(path, old)
    api_key = autojoin_key().api_key
    service = zipapp_services.start("-workers", workers, "-access-log", "all", key_path=path, store_path=db_path)
    pids = serving_pids(service, workers)
    etag = jwks(service).headers["Etag"]

    # A public key cannot sign: start-up would refuse the file with this line, and a reload with its message.
    write_key_file(path, public_half(generate_private_jwk("RS256", kid="public-key")))
    with pytest.raises(KeyFileError) as start_up:
        load_key_set(str(path))
    lines = hang_up(service, pids)
    assert [line["severity"] for line in lines] == ["ERROR"] * len(pids)
    assert {line["message"] for line in lines} == {
        f"{NOT_RELOADED}{start_up.value}; still signing with key kid=old-key alg=RS256 from {path}; "
        "JWKS publishes kids old-key"
    }
    assert "Traceback" not in service.output()
    assert jwks(service, {"If-None-Match": etag}).status == 304  # the same JWKS
    for token in tokens_from_every_process(service, api_key, pids):
        assert token_header(token)["kid"] == "old-key"
        assert verify_token(service.base_url, token, "autojoin")["org"] == "example-org"

    # Fixed, the file is read at the next signal.
    write_key_file(path, {"keys": [old, generate_private_jwk("ES256", kid="next-key")]})
    assert {line["severity"] for line in hang_up(service, pids)} == {"INFO"}
    assert published(service) == ["old-key", "next-key"]


def test_the_rotation_runbook_with_sighup_instead_of_restarts(tools, zipapp_services, tmp_path, db_path):
    path = tmp_path / "jwk-priv.json"
    assert tools.run("generate-jwk", "-kid", "old-key", "-out", path).returncode == 0
    api_key = tools.create_autojoin_key(db_path, "example-org").api_key
    service = zipapp_services.start(key_path=path, store_path=db_path)
    pids = {service.process.pid}
    old_token = exchange(service.base_url, "autojoin", api_key).json()["token"]
    old_issued = time.time()

    def step(*args):
        done = tools.run("generate-jwk", "-set", path, *args)
        assert done.returncode == 0, done.stderr
        [line] = hang_up(service, pids)
        assert line["severity"] == "INFO"
        token = exchange(service.base_url, "autojoin", api_key).json()["token"]
        assert verify_token(service.base_url, token, "autojoin")["org"] == "example-org"
        return token_header(token)["kid"]

    # 1. Publish: the old key still signs. 3. Switch: the new one does, the old one's tokens still verify.
    assert step("-add", "-alg", "ES256", "-kid", "new-key") == "old-key"
    assert published(service) == ["old-key", "new-key"]
    assert step("-promote", "new-key") == "new-key"
    assert verify_token(service.base_url, old_token, "autojoin", now=old_issued)["org"] == "example-org"
    # 5. Retire: the old key's tokens no longer verify.
    assert step("-retire", "old-key") == "new-key"
    assert fetch_jwks(service.base_url).get_key("old-key") is None
    with pytest.raises(AssertionError, match="no JWKS key with the token's kid"):
        verify_token(service.base_url, old_token, "autojoin", now=old_issued)
    # No step skipped a wait of the runbook, so no warning; the service never restarted.
    output = service.output()
    assert "WARNING" not in output and "Traceback" not in output
    assert sum(message.startswith("listening on port") for message in log_messages(service)) == 1


# The service sends itself SIGHUP while loading its signing key at start-up, before it serves (with
# -workers, before the supervisor forks); the reloads that follow load it as usual.
SIGHUP_WHILE_STARTING = """
import os, signal, sys
from token_exchange.cli import service as server
real_load_key_set = server.load_key_set
def load_then_signal(path):
    server.load_key_set = real_load_key_set
    keys = real_load_key_set(path)
    os.kill(os.getpid(), signal.SIGHUP)
    return keys
server.load_key_set = load_then_signal
server.main(sys.argv[1:])
"""


@pytest.mark.parametrize("workers", [1, 2], ids=["one process", "2 workers"])
def test_a_sighup_while_starting_reloads_once_serving(key_file, db_path, workers):
    port = free_port()
    with tempfile.TemporaryFile() as log:
        process = subprocess.Popen(
            [
                sys.executable,
                "-c",
                SIGHUP_WHILE_STARTING,
                "-private-key-path",
                str(key_file()),
                "-store",
                f"sqlite:{db_path}",
                "-port",
                str(port),
                "-workers",
                str(workers),
                "-prometheusx.listen-address",
                f"127.0.0.1:{free_port()}",
            ],
            cwd=ROOT,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
        )

        def output():
            return os.pread(log.fileno(), os.fstat(log.fileno()).st_size, 0).decode()

        try:
            reloads = settled(lambda: output().count(RELOADED), workers, RELOAD_TIMEOUT_SECONDS)
            assert reloads == workers, output()
            assert process.poll() is None, output()
            assert health(f"http://127.0.0.1:{port}") == b"ok"
            # Each serving process reloaded once, after it began to serve.
            lines = json_lines(output())
            reloaded = [line for line in lines if line["message"].startswith(RELOADED)]
            assert len({line["pid"] for line in reloaded}) == workers
            for line in reloaded:
                own = [other["message"] for other in lines if other["pid"] == line["pid"]]
                listening = next(i for i, message in enumerate(own) if message.startswith("listening on port"))
                assert listening < own.index(line["message"])
        finally:
            process.send_signal(signal.SIGTERM)
            try:
                status = process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()  # its workers, if any, stop with it (PR_SET_PDEATHSIG)
                process.wait()
                raise
        assert status == 0, output()
        assert "Traceback" not in output()
