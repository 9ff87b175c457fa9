"""The operator tools end to end, as built zipapps run by a plain python3 -I.

Keys made by create-integration and create-autojoin-key are exchanged over
HTTP by the built service zipapp on the same SQLite file, and the tokens
verified as a consumer does; keys made by generate-jwk sign those tokens.
"""

import base64
import hashlib
import json
import os
import re
import resource
import sqlite3
import stat
import threading

import pytest

from tests.consumer import token_header, verify_token
from tests.httpclient import exchange, request
from tests.support import ALGS, TEST_BCRYPT_COST, remove_database
from tests.zipapp_service import GENERATED_KEY_ID, error_line, free_port, json_lines, only_line, run_zipapp


def integration_claims(service, api_key):
    response = exchange(service.base_url, "integration", api_key)
    assert response.status == 200, response.body
    return verify_token(service.base_url, response.json()["token"], "integration")


def autojoin_claims(service, api_key):
    response = exchange(service.base_url, "autojoin", api_key)
    assert response.status == 200, response.body
    return verify_token(service.base_url, response.json()["token"], "autojoin")


def assert_refused(service, endpoint, api_key):
    response = exchange(service.base_url, endpoint, api_key)
    assert (response.status, response.body) == (401, b"Invalid API key\n")


def rows(db_path, sql, params=()):
    with sqlite3.connect(db_path) as conn:
        return conn.execute(sql, params).fetchall()


def stored_hash(db_path, integration_id, key_id):
    (row,) = rows(
        db_path,
        "SELECT key_hash FROM integration_keys WHERE integration_id = ? AND key_id = ?",
        (integration_id, key_id),
    )
    return row[0]


def other_secret(api_key):
    """The same key with its secret's last character changed."""
    return api_key[:-1] + ("A" if api_key[-1] != "A" else "B")


# create-integration and create-autojoin-key, then the built service.


def test_created_integration_key_is_exchanged_by_the_built_service(tools, zipapp_services, db_path):
    key = tools.create_integration(db_path, "acme")
    assert key.integration_id == "acme"
    assert GENERATED_KEY_ID.fullmatch(key.key_id)

    service = zipapp_services.start(store_path=db_path)
    claims = integration_claims(service, key.api_key)
    assert (claims["int_id"], claims["key_id"], claims["tier"]) == ("acme", key.key_id, 0)
    assert_refused(service, "integration", other_secret(key.api_key))
    assert rows(db_path, "SELECT status, tier FROM integration_keys") == [("active", 0)]


def test_created_autojoin_key_is_exchanged_by_the_built_service(tools, zipapp_services, db_path):
    key = tools.create_autojoin_key(db_path, "example-org", "-email", "ops@example.org")
    assert key.org == "example-org"

    service = zipapp_services.start(store_path=db_path)
    assert autojoin_claims(service, key.api_key)["org"] == "example-org"
    assert_refused(service, "autojoin", other_secret(key.api_key))
    assert rows(db_path, "SELECT name, email FROM organizations") == [("example-org", "ops@example.org")]


def test_start_up_names_the_sqlite_store_by_its_path(zipapp_services, db_path):
    service = zipapp_services.start(store_path=db_path)
    store_lines = [line["message"] for line in json_lines(service.output()) if line["message"].startswith("key store")]
    assert store_lines == [f"key store sqlite:{db_path} (timeout 3 s)"]  # no Google Cloud project


def test_keys_created_while_the_service_runs_work_at_once(tools, zipapp_services, db_path):
    first = tools.create_integration(db_path, "acme")
    service = zipapp_services.start(store_path=db_path)
    assert rows(db_path, "PRAGMA journal_mode") == [("wal",)]

    # The service keeps reading the file while the tools write to it.
    statuses = []
    done = threading.Event()

    def keep_exchanging():
        while not done.is_set():
            statuses.append(exchange(service.base_url, "integration", first.api_key).status)

    reader = threading.Thread(target=keep_exchanging)
    reader.start()
    try:
        second = tools.create_integration(db_path, "acme", "-key-tier", "2")
        autojoin = tools.create_autojoin_key(db_path, "example-org")
        third = tools.create_integration(db_path, "globex")
    finally:
        done.set()
        reader.join(30)

    assert statuses and set(statuses) == {200}
    assert "already existed" in second.stderr  # the second key joined the existing integration
    claims = integration_claims(service, second.api_key)
    assert (claims["int_id"], claims["key_id"], claims["tier"]) == ("acme", second.key_id, 2)
    assert integration_claims(service, third.api_key)["int_id"] == "globex"
    assert autojoin_claims(service, autojoin.api_key)["org"] == "example-org"
    assert integration_claims(service, first.api_key)["key_id"] == first.key_id


def test_a_database_deleted_and_written_anew_under_the_service(tools, zipapp_services, db_path):
    old = tools.create_integration(db_path, "acme")
    service = zipapp_services.start("-key-cache-ttl", "0", store_path=db_path)
    assert integration_claims(service, old.api_key)["key_id"] == old.key_id

    remove_database(db_path)
    for _ in range(3):
        assert request(service.base_url, "GET", "/ready").status == 503
        assert exchange(service.base_url, "integration", old.api_key).status == 503
    new = tools.create_integration(db_path, "acme")
    assert integration_claims(service, new.api_key)["key_id"] == new.key_id
    assert_refused(service, "integration", old.api_key)
    assert request(service.base_url, "GET", "/ready").status == 200

    store_lines = [
        (line["severity"], line["message"])
        for line in json_lines(service.output())
        if line["logger"] == "token_exchange.store.sqlite"
    ]
    assert [severity for severity, _ in store_lines] == ["ERROR", "WARNING"]  # one line per change
    assert "deleted" in store_lines[0][1] and str(db_path) in store_lines[0][1]


# create-integration's flags.


def test_key_tier(tools, zipapp_services, db_path):
    key = tools.create_integration(db_path, "acme", "-key-tier", "7")
    service = zipapp_services.start(store_path=db_path)
    assert integration_claims(service, key.api_key)["tier"] == 7
    assert rows(db_path, "SELECT tier FROM integration_keys") == [(7,)]


def test_chosen_key_id(tools, zipapp_services, db_path):
    key = tools.create_integration(db_path, "acme", "-key-id", "ki_custom")
    assert key.key_id == "ki_custom"
    assert key.api_key.startswith("mlabk.cii_acme.ki_custom.")
    service = zipapp_services.start(store_path=db_path)
    assert integration_claims(service, key.api_key)["key_id"] == "ki_custom"


def test_descriptions_are_stored(tools, db_path):
    key = tools.create_integration(
        db_path, "acme", "-integration-description", "Acme Corp speed tests", "-key-description", "backend, eu-west"
    )
    assert rows(db_path, "SELECT integration_id, description FROM integrations") == [("acme", "Acme Corp speed tests")]
    assert rows(db_path, "SELECT key_id, description, status FROM integration_keys") == [
        (key.key_id, "backend, eu-west", "active")
    ]


def test_existing_integration_keeps_its_description(tools, db_path):
    tools.create_integration(db_path, "acme", "-integration-description", "first")
    second = tools.create_integration(db_path, "acme", "-integration-description", "second")
    assert "already existed" in second.stderr
    assert rows(db_path, "SELECT description FROM integrations") == [("first",)]
    assert len(rows(db_path, "SELECT key_id FROM integration_keys")) == 2


def test_integration_namespace(tools, zipapp_services, db_path):
    key = tools.create_integration(db_path, "acme", "-namespace", "partner-integrations")
    assert rows(db_path, "SELECT namespace FROM integration_keys") == [("partner-integrations",)]

    default_ns = zipapp_services.start(store_path=db_path)
    assert_refused(default_ns, "integration", key.api_key)
    matching_ns = zipapp_services.start("-client-integration-ns", "partner-integrations", store_path=db_path)
    assert integration_claims(matching_ns, key.api_key)["key_id"] == key.key_id


def test_autojoin_namespace(tools, zipapp_services, db_path):
    key = tools.create_autojoin_key(db_path, "example-org", "-namespace", "partner-platform")
    assert rows(db_path, "SELECT namespace FROM autojoin_keys") == [("partner-platform",)]

    default_ns = zipapp_services.start(store_path=db_path)
    assert_refused(default_ns, "autojoin", key.api_key)
    matching_ns = zipapp_services.start("-platform-ns", "partner-platform", store_path=db_path)
    assert autojoin_claims(matching_ns, key.api_key)["org"] == "example-org"


def test_sha256_hash_as_the_go_tool_writes_it(tools, zipapp_services, db_path):
    key = tools.create_integration(db_path, "acme", "-hash", "sha256", bcrypt_cost=None)
    key_hash = stored_hash(db_path, "acme", key.key_id)
    assert re.fullmatch(r"[0-9a-f]{64}", key_hash)
    assert key_hash == hashlib.sha256(key.secret.encode()).hexdigest()
    service = zipapp_services.start(store_path=db_path)
    assert integration_claims(service, key.api_key)["key_id"] == key.key_id
    assert_refused(service, "integration", other_secret(key.api_key))


def test_default_is_bcrypt_cost_12(tools, zipapp_services, db_path):
    key = tools.create_integration(db_path, "acme", bcrypt_cost=None)
    assert stored_hash(db_path, "acme", key.key_id).startswith("$2b$12$")
    service = zipapp_services.start(store_path=db_path)
    assert integration_claims(service, key.api_key)["key_id"] == key.key_id


def test_bcrypt_cost_4(tools, zipapp_services, db_path):
    key = tools.create_integration(db_path, "acme", "-bcrypt-cost", "4", bcrypt_cost=None)
    key_hash = stored_hash(db_path, "acme", key.key_id)
    assert key_hash.startswith("$2b$04$") and len(key_hash) == 60
    service = zipapp_services.start(store_path=db_path)
    assert integration_claims(service, key.api_key)["key_id"] == key.key_id


@pytest.mark.parametrize(
    "flag,value",
    [
        ("-bcrypt-cost", "3"),
        ("-bcrypt-cost", "32"),
        ("-bcrypt-cost", "twelve"),
        ("-bcrypt-cost", ""),
        ("-key-tier", "-1"),
        ("-key-tier", "gold"),
        ("-key-tier", str(2**63)),  # beyond the signed 64-bit integers the stores keep
        ("-hash", "md5"),
    ],
)
def test_invalid_flag_value_exits_2_with_one_line(tools, db_path, flag, value):
    done = tools.run("create-integration", "-store", f"sqlite:{db_path}", "-integration-id", "acme", flag, value)
    assert done.returncode == 2
    line = only_line(done, "create-integration")
    assert flag in line
    assert not db_path.exists()


# Required flags, and flags from the environment.


@pytest.mark.parametrize(
    "tool,args,flag",
    [
        ("create-integration", ["-store", "sqlite:{db}"], "-integration-id"),
        ("create-integration", ["-store", "sqlite:{db}", "-integration-id", ""], "-integration-id"),
        ("create-autojoin-key", ["-store", "sqlite:{db}"], "-org"),
        ("create-integration", ["-integration-id", "acme"], "-project"),
        ("create-autojoin-key", ["-org", "example-org"], "-project"),
        ("generate-jwk", ["-alg", "EdDSA"], "-out"),
    ],
    ids=["integration-id", "empty-integration-id", "org", "integration-project", "autojoin-project", "out"],
)
def test_missing_required_flag(tools, db_path, tool, args, flag):
    done = tools.run(tool, *(arg.format(db=db_path) for arg in args))
    assert done.returncode == 2  # as README.md says
    line = only_line(done, tool)
    assert re.search(re.escape(flag) + r"\b", line), line
    assert "required" in line
    assert not db_path.exists()


def test_command_line_wins_over_the_environment(tools, db_path, tmp_path):
    env_db = tmp_path / "from-env.db"
    key = tools.create_integration(
        db_path,
        "from-flag",
        "-key-tier",
        "2",
        "-namespace",
        "flag-ns",
        env={
            "STORE": f"sqlite:{env_db}",
            "INTEGRATION_ID": "from-env",
            "KEY_TIER": "9",
            "NAMESPACE": "env-ns",
            "CLIENT_INTEGRATION_NS": "other-env-ns",  # disagreeing, but the flag decides
        },
    )
    assert key.integration_id == "from-flag"
    assert not env_db.exists()
    assert rows(db_path, "SELECT namespace, integration_id, tier FROM integration_keys") == [
        ("flag-ns", "from-flag", 2)
    ]
    autojoin = tools.create_autojoin_key(
        db_path, "flag-org", "-namespace", "flag-ns", env={"PLATFORM_NS": "env-ns", "STORE": f"sqlite:{env_db}"}
    )
    assert autojoin.org == "flag-org"
    assert rows(db_path, "SELECT namespace FROM autojoin_keys") == [("flag-ns",)]
    assert not env_db.exists()


def test_a_missing_directory_is_named(tools, built_zipapps, zipapp_home, key_file, tmp_path):
    missing = tmp_path / "no-such-dir"
    store = f"sqlite:{missing}/keys.db"
    expected = f"store {store}: directory {missing} does not exist"
    for tool, args in (
        ("create-integration", ["-integration-id", "acme"]),
        ("create-autojoin-key", ["-org", "example-org"]),
        ("integration-keys", ["list"]),
        ("autojoin-keys", ["list"]),
    ):
        command = args[0] if tool.endswith("-keys") else None
        prog = f"{tool} {command}" if command else tool
        done = tools.run(tool, *args, "-store", store)
        assert done.returncode == 1
        assert error_line(done, prog) == f"{prog}: error: {expected}"
    done = run_zipapp(
        built_zipapps["token-exchange"],
        ["-store", store, "-private-key-path", key_file(), "-port", free_port()],
        zipapp_home,
        env={"PROMETHEUSX_LISTEN_ADDRESS": f"127.0.0.1:{free_port()}"},
    )
    assert done.returncode == 1
    assert only_line(done, "token-exchange") == f"token-exchange: error: {expected}"
    assert not missing.exists()


# Refused ids.


def test_duplicate_key_id_is_refused_and_the_first_key_kept(tools, zipapp_services, db_path):
    first = tools.create_integration(db_path, "acme", "-key-id", "ki_dup")
    first_hash = stored_hash(db_path, "acme", "ki_dup")

    done = tools.run(
        "create-integration",
        "-store",
        f"sqlite:{db_path}",
        "-integration-id",
        "acme",
        "-key-id",
        "ki_dup",
        "-bcrypt-cost",
        TEST_BCRYPT_COST,
        "-key-tier",
        "3",
    )
    assert done.returncode != 0
    assert done.stdout == ""  # no key is shown
    line = error_line(done, "create-integration")
    assert "ki_dup" in line and "already exists" in line
    assert stored_hash(db_path, "acme", "ki_dup") == first_hash
    assert rows(db_path, "SELECT tier FROM integration_keys") == [(0,)]

    # The same key id in another integration is another key.
    other = tools.create_integration(db_path, "globex", "-key-id", "ki_dup")
    service = zipapp_services.start(store_path=db_path)
    assert integration_claims(service, first.api_key)["int_id"] == "acme"
    assert integration_claims(service, other.api_key)["int_id"] == "globex"


@pytest.mark.parametrize(
    "args,message",
    [
        (["-integration-id", "acme", "-key-id", "custom"], "key id must start with 'ki_'"),
        (["-integration-id", "acme", "-key-id", "ki_a.b"], "key id must not contain '.'"),
        (["-integration-id", "acme.corp"], "integration id must not contain '.'"),
        (["-integration-id", "acme corp"], "integration id must not contain spaces"),
        (["-integration-id", "a" * 65], "integration id must be 1..64 bytes"),
    ],
    ids=["no-ki-prefix", "dot-in-key-id", "dot-in-integration-id", "space-in-integration-id", "long-id"],
)
def test_invalid_ids_are_refused(tools, db_path, args, message):
    done = tools.run("create-integration", "-store", f"sqlite:{db_path}", "-bcrypt-cost", TEST_BCRYPT_COST, *args)
    assert done.returncode != 0
    assert done.stdout == ""
    assert message in only_line(done, "create-integration")  # the id is checked before it is echoed
    if db_path.exists():  # nothing was created
        assert rows(db_path, "SELECT * FROM integrations") == []
        assert rows(db_path, "SELECT * FROM integration_keys") == []


@pytest.mark.parametrize(
    "tool,args",
    [
        ("create-autojoin-key", ["-org", "evil\x1b[2J\nFAKE ERROR line"]),
        ("create-autojoin-key", ["-org", "o" * 257]),
        ("create-autojoin-key", ["-org", "example-org", "-email", "ops@example.org\r\n"]),
        ("create-integration", ["-integration-id", "acme", "-key-description", "a\n=== API Key Created ==="]),
        ("create-integration", ["-integration-id", "acme", "-integration-description", "d" * 257]),
    ],
    ids=["org-escape", "org-long", "email-newline", "key-description-newline", "integration-description-long"],
)
def test_names_and_descriptions_with_control_characters_or_too_long_are_refused(tools, db_path, tool, args):
    # They are printed by the tools, and an org goes into every token of its keys.
    cost = ["-bcrypt-cost", TEST_BCRYPT_COST] if tool == "create-integration" else []
    done = tools.run(tool, "-store", f"sqlite:{db_path}", *cost, *args)
    assert done.returncode == 2
    line = only_line(done, tool)
    assert "control character" in line or "at most 256 are allowed" in line
    assert "\x1b" not in line and "\r" not in line  # shown escaped, on one line
    assert not db_path.exists()  # refused before the store was opened


def test_generate_jwk_refuses_a_kid_with_a_control_character(tools, tmp_path):
    path = tmp_path / "jwk.json"
    done = tools.run("generate-jwk", "-kid", "k\x1b[2J", "-out", path)
    assert done.returncode == 2
    line = only_line(done, "generate-jwk")
    assert line == "generate-jwk: error: argument -kid/--kid: kid 'k\\x1b[2J' holds a control character"
    assert not path.exists()


# A write that fails says why.


# In the tool's process: any write that would grow a file fails (EFBIG), as on a full disk; root too.
NO_FILE_MAY_GROW = {resource.RLIMIT_FSIZE: 1}


def test_a_failing_write_reports_the_real_error(tools, zipapp_services, db_path):
    tools.create_integration(db_path, "globex")  # this first run also unpacks the zipapp, which writes files
    # The running service keeps the WAL and shared-memory files in place, so the tool opens the database
    # without growing any file and fails at its first write: the WAL frames of its transaction.
    zipapp_services.start(store_path=db_path)
    done = tools.run(
        "create-integration",
        "-store",
        f"sqlite:{db_path}",
        "-integration-id",
        "acme",
        "-bcrypt-cost",
        TEST_BCRYPT_COST,
        limits=NO_FILE_MAY_GROW,
    )
    assert done.returncode == 1
    assert done.stdout == ""
    line = error_line(done, "create-integration")
    # SQLite's own words for the failed write, not those of a ROLLBACK that followed it.
    assert re.fullmatch(
        r"create-integration: error: sqlite write failed: (disk I/O error|database or disk is full).*", line
    ), line
    assert rows(db_path, "SELECT integration_id FROM integrations") == [("globex",)]


@pytest.mark.skipif(os.geteuid() == 0, reason="file modes do not stop root from writing")
def test_a_read_only_database_reports_the_real_error(tools, db_path):
    tools.create_integration(db_path, "acme")
    db_path.chmod(0o400)
    try:
        done = tools.run(
            "create-integration",
            "-store",
            f"sqlite:{db_path}",
            "-integration-id",
            "globex",
            "-bcrypt-cost",
            TEST_BCRYPT_COST,
        )
    finally:
        for path in db_path.parent.glob(db_path.name + "*"):  # SQLite gives -wal and -shm the database's mode
            path.chmod(0o600)
    assert done.returncode == 1
    line = error_line(done, "create-integration")
    assert "sqlite write failed: attempt to write a readonly database" in line, line
    assert rows(db_path, "SELECT integration_id FROM integrations") == [("acme",)]


def test_the_database_a_tool_creates_is_0600(tools, db_path):
    # umask 0: the mode must come from the tool, not from the caller's umask.
    done = tools.run(
        "create-integration",
        "-store",
        f"sqlite:{db_path}",
        "-integration-id",
        "acme",
        "-bcrypt-cost",
        TEST_BCRYPT_COST,
        umask=0,
    )
    assert done.returncode == 0, done.stderr
    assert stat.S_IMODE(db_path.stat().st_mode) == 0o600


# No plaintext at rest.


def test_no_plaintext_secret_in_the_sqlite_files(tools, zipapp_services, db_path):
    # The running service keeps the WAL file open, so what the tools wrote is still in it.
    service = zipapp_services.start(store_path=db_path)
    integration = tools.create_integration(db_path, "acme")
    go_style = tools.create_integration(db_path, "acme", "-hash", "sha256", bcrypt_cost=None)
    autojoin = tools.create_autojoin_key(db_path, "example-org")
    assert integration_claims(service, integration.api_key)["key_id"] == integration.key_id

    files = [db_path.with_name(db_path.name + suffix) for suffix in ("", "-wal", "-shm")]
    wal = files[1]
    assert wal.exists() and wal.stat().st_size > 0
    stored = b"".join(path.read_bytes() for path in files if path.exists())
    # What is stored is there (so the search below looks at the right bytes)...
    assert go_style.secret.encode() not in stored
    assert hashlib.sha256(go_style.secret.encode()).hexdigest().encode() in stored
    assert hashlib.sha256(autojoin.api_key.encode()).hexdigest().encode() in stored
    assert stored_hash(db_path, "acme", integration.key_id).encode() in stored
    # ...and no secret, in text or decoded to its random bytes.
    secrets = {
        "integration key": integration.api_key,
        "integration secret": integration.secret,
        "Go-style key": go_style.api_key,
        "Go-style secret": go_style.secret,
        "autojoin key": autojoin.api_key,
    }
    leaked = [
        what
        for what, secret in secrets.items()
        if secret.encode() in stored or base64.urlsafe_b64decode(secret.rsplit(".", 1)[-1] + "=") in stored
    ]
    assert leaked == []


# generate-jwk.


@pytest.mark.parametrize("alg", ALGS)
def test_generated_key_signs_tokens_of_the_built_service(tools, zipapp_services, db_path, tmp_path, alg):
    path = tmp_path / "keys" / f"jwk-{alg}.json"
    path.parent.mkdir()
    # umask 0: the mode must come from the tool, not from the caller's umask.
    done = tools.run("generate-jwk", "-alg", alg, "-out", path, umask=0)
    assert done.returncode == 0, done.stderr
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    data = json.loads(path.read_text())
    assert data["alg"] == alg and data["kid"] and "d" in data
    assert done.stdout == f"Wrote {alg} private key kid={data['kid']} to {path}\n"
    assert data["d"] not in done.stdout + done.stderr

    autojoin = tools.create_autojoin_key(db_path, "example-org")
    service = zipapp_services.start(key_path=path, store_path=db_path)
    response = exchange(service.base_url, "autojoin", autojoin.api_key)
    assert response.status == 200
    token = response.json()["token"]
    assert token_header(token)["alg"] == alg
    assert token_header(token)["kid"] == data["kid"]
    assert verify_token(service.base_url, token, "autojoin")["org"] == "example-org"


def test_generate_jwk_kid_flag_and_default_alg(tools, tmp_path):
    path = tmp_path / "jwk.json"
    done = tools.run("generate-jwk", "-kid", "2026-rotation", "-out", path)
    assert done.returncode == 0, done.stderr
    data = json.loads(path.read_text())
    assert (data["kid"], data["alg"], data["kty"]) == ("2026-rotation", "RS256", "RSA")


def test_generate_jwk_refuses_a_kid_too_long(tools, tmp_path):
    path = tmp_path / "jwk.json"
    done = tools.run("generate-jwk", "-kid", "k" * 257, "-out", path)
    assert done.returncode == 2
    line = only_line(done, "generate-jwk")
    assert line == "generate-jwk: error: argument -kid/--kid: kid has 257 characters; at most 256 are allowed"
    assert not path.exists()


def test_generate_jwk_never_overwrites(tools, tmp_path):
    path = tmp_path / "jwk.json"
    path.write_text("keep me\n")
    done = tools.run("generate-jwk", "-out", path)
    assert done.returncode != 0
    line = only_line(done, "generate-jwk")
    assert str(path) in line and "already exists" in line
    assert path.read_text() == "keep me\n"


def test_generate_jwk_refuses_an_unknown_alg(tools, tmp_path):
    path = tmp_path / "jwk.json"
    done = tools.run("generate-jwk", "-alg", "HS256", "-out", path)
    assert done.returncode == 2
    assert "-alg" in only_line(done, "generate-jwk")
    assert not path.exists()
