"""A signing-key rotation as an operator runs it: built generate-jwk edits the
key file, the built service restarts on it after each step, and tokens are
verified over HTTP as a consumer does."""

import json
import os
import stat
import time

import pytest

from tests.consumer import fetch_jwks, token_header, verify_token
from tests.httpclient import exchange, request
from tests.zipapp_service import LIMIT_MEMORY, only_line
from token_exchange.signing.keyfile import MAX_KEY_FILE_BYTES, PRIVATE_PARAMS

PROG = "generate-jwk"


def autojoin_token(service, api_key):
    response = exchange(service.base_url, "autojoin", api_key)
    assert response.status == 200, response.body
    return response.json()["token"]


def published(service):
    response = request(service.base_url, "GET", "/.well-known/jwks.json")
    assert response.status == 200
    keys = json.loads(response.body)["keys"]
    for key in keys:
        assert not set(PRIVATE_PARAMS) & set(key)
    return [key["kid"] for key in keys]


def edit(tools, path, *args):
    """Run generate-jwk -set path ...; check it left a private file the service can load; return stdout."""
    done = tools.run(PROG, "-set", path, *args, umask=0)
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    for key in json.loads(path.read_text())["keys"]:
        assert "d" not in key or key["d"] not in done.stdout
    return done.stdout


def restart(zipapp_services, previous, path, db_path):
    if previous is not None:
        previous.stop()
    return zipapp_services.start(key_path=path, store_path=db_path)


def test_rotation_runbook_with_the_built_tools(tools, zipapp_services, tmp_path, db_path):
    path = tmp_path / "jwk-priv.json"
    done = tools.run(PROG, "-kid", "old-key", "-out", path)
    assert done.returncode == 0, done.stderr
    api_key = tools.create_autojoin_key(db_path, "example-org").api_key

    service = restart(zipapp_services, None, path, db_path)
    old_token = autojoin_token(service, api_key)
    old_issued = time.time()  # restarts take a while: verify its iat against when it was issued
    assert token_header(old_token)["kid"] == "old-key"
    assert published(service) == ["old-key"]

    # 1. Publish the new key: the one-key file becomes a set, the old key still signs.
    out = edit(tools, path, "-add", "-alg", "ES256", "-kid", "new-key")
    assert out == (
        f"Added ES256 private key kid=new-key (published, not signing) in {path}\n"
        "Signing kid: old-key\nPublished kids: old-key, new-key\n"
    )
    service = restart(zipapp_services, service, path, db_path)
    assert published(service) == ["old-key", "new-key"]
    assert token_header(autojoin_token(service, api_key))["kid"] == "old-key"
    assert "signing with key kid=old-key alg=RS256" in service.output()
    assert "JWKS publishes kids old-key, new-key" in service.output()

    # 2. Switch signing: the new key signs, tokens of the old one still verify.
    out = edit(tools, path, "-promote", "new-key")
    assert out.endswith("Signing kid: new-key\nPublished kids: new-key, old-key\n")
    service = restart(zipapp_services, service, path, db_path)
    new_token = autojoin_token(service, api_key)
    assert token_header(new_token) == {"alg": "ES256", "kid": "new-key"}
    assert verify_token(service.base_url, old_token, "autojoin", now=old_issued)["org"] == "example-org"
    assert verify_token(service.base_url, new_token, "autojoin")["org"] == "example-org"

    # 3. Retire the old key: its tokens no longer verify, the new key's do.
    out = edit(tools, path, "-retire", "old-key")
    assert out.endswith("Signing kid: new-key\nPublished kids: new-key\n")
    service = restart(zipapp_services, service, path, db_path)
    assert published(service) == ["new-key"]
    assert fetch_jwks(service.base_url).get_key("old-key") is None
    with pytest.raises(AssertionError, match="no JWKS key with the token's kid"):
        verify_token(service.base_url, old_token, "autojoin", now=old_issued)
    assert verify_token(service.base_url, autojoin_token(service, api_key), "autojoin")["org"] == "example-org"


@pytest.mark.parametrize(
    "args,problem",
    [
        (["-retire", "signing"], "-retire: key 'signing' signs; promote another key first"),
        (["-retire", "unknown"], "-retire: no key with kid 'unknown'"),
        (["-promote", "signing"], "-promote: key 'signing' already signs"),
        (["-promote", "public"], "-promote: key 'public' is public only"),
        (["-add", "-kid", "public"], "-kid: a key with kid 'public' is already in the key file"),
        (["-add", "-kid", "k" * 257], "-kid/--kid: kid has 257 characters; at most 256 are allowed"),
        (["-promote", "k" * 257], "-promote/--promote: kid has 257 characters; at most 256 are allowed"),
        (["-retire", "k" * 257], "-retire/--retire: kid has 257 characters; at most 256 are allowed"),
        ([], "exactly one of -add, -promote KID, -retire KID"),
        (["-add", "-retire", "public"], "exactly one of"),
    ],
    ids=[
        "retire-signing",
        "retire-unknown",
        "promote-signing",
        "promote-public",
        "duplicate-kid",
        "kid-too-long",
        "promote-kid-too-long",
        "retire-kid-too-long",
        "no-edit",
        "two-edits",
    ],
)
def test_refused_edits_leave_the_key_file_as_it_was(tools, tmp_path, args, problem):
    path = tmp_path / "jwks.json"
    assert tools.run(PROG, "-kid", "signing", "-out", path).returncode == 0
    public = {k: v for k, v in json.loads(path.read_text()).items() if k not in PRIVATE_PARAMS}
    edit(tools, path, "-add", "-kid", "other")
    members = json.loads(path.read_text())["keys"]
    path.write_text(json.dumps({"keys": members + [dict(public, kid="public")]}))
    before = path.read_bytes()
    done = tools.run(PROG, "-set", path, *args)
    assert done.returncode != 0
    assert problem in only_line(done, PROG)
    assert path.read_bytes() == before
    assert [entry.name for entry in tmp_path.iterdir()] == ["jwks.json"]  # no temporary file left


@pytest.mark.parametrize(
    "content,problem",
    [
        ({"keys": []}, "JWK Set has no keys"),
        (
            {"keys": [{"kty": "OKP", "crv": "Ed25519", "x": "", "kid": "k" * 257}]},
            "keys[0] (kid (too long to show)): kid has 257 characters; at most 256 are allowed",
        ),
    ],
    ids=["empty", "kid-too-long"],
)
def test_set_of_a_file_the_service_refuses_is_not_edited(tools, tmp_path, content, problem):
    path = tmp_path / "jwks.json"
    path.write_text(json.dumps(content))
    before = path.read_bytes()
    done = tools.run(PROG, "-set", path, "-add")
    assert done.returncode == 1
    assert only_line(done, PROG) == f"{PROG}: error: private key file {path}: {problem}"
    assert path.read_bytes() == before


def dev_zero(tmp_path):
    return "/dev/zero", "is a character device, not a regular file"


def fifo(tmp_path):
    path = tmp_path / "jwks.json"
    os.mkfifo(path)  # opened for reading, it waits for a writer; none comes
    return path, "is a FIFO, not a regular file"


def directory(tmp_path):
    return tmp_path, "is a directory, not a file"


def over_1_mib(tmp_path):
    path = tmp_path / "jwks.json"
    path.write_text('{"keys": []}'.ljust(MAX_KEY_FILE_BYTES + 1))
    return path, "is larger than 1 MiB, the most a key file may hold"


UNREADABLE_SETS = [dev_zero, fifo, directory, over_1_mib]


@pytest.mark.parametrize("case", UNREADABLE_SETS, ids=[case.__name__ for case in UNREADABLE_SETS])
def test_set_that_is_not_a_small_regular_file_is_refused_unread(tools, tmp_path, case):
    path, problem = case(tmp_path)
    done = tools.run(PROG, "-set", path, "-add", limits=LIMIT_MEMORY)
    assert done.returncode == 1
    assert only_line(done, PROG) == f"{PROG}: error: private key file {path}: {problem}"


def test_an_edit_keeps_the_group_and_the_group_read_permission_the_operator_gave(tools, tmp_path):
    # The systemd recipe (docs/operations.md) makes the key readable by the service's group: a rotation
    # that left it 0600 root would stop the service at its next start.
    path = tmp_path / "jwk-priv.json"
    assert tools.run(PROG, "-kid", "old-key", "-out", path).returncode == 0
    group = 65534 if os.geteuid() == 0 else os.getegid()  # root may give any group; others their own
    os.chown(path, -1, group)
    path.chmod(0o640)
    done = tools.run(PROG, "-set", path, "-add", "-kid", "new-key", umask=0o077)
    assert done.returncode == 0, done.stderr
    info = path.stat()
    assert (stat.S_IMODE(info.st_mode), info.st_gid) == (0o640, group)
    assert [key["kid"] for key in json.loads(path.read_text())["keys"]] == ["old-key", "new-key"]


def test_an_edit_never_widens_a_key_file_beyond_0640(tools, tmp_path):
    path = tmp_path / "jwk-priv.json"
    assert tools.run(PROG, "-kid", "old-key", "-out", path).returncode == 0
    path.chmod(0o666)
    assert tools.run(PROG, "-set", path, "-add", "-kid", "new-key").returncode == 0
    assert stat.S_IMODE(path.stat().st_mode) == 0o640
