"""The tools as commands, run as built zipapps: their help, the environment variables they read (and
the generic ones they leave alone), and a reader that stops early (`integration-keys list | head`)."""

import contextlib
import json
import signal
import sqlite3
import subprocess
import sys

import pytest

from tests.httpclient import exchange
from tests.support import TEST_BCRYPT_COST
from tests.zipapp_service import (
    RUN_TIMEOUT_SECONDS,
    free_port,
    minimal_env,
    only_line,
    run_zipapp,
    zipapp_command,
)
from token_exchange.cli import config
from token_exchange.cli.flags import FlagParser
from token_exchange.store.sqlite import SQLiteKeyStore
from token_exchange.tools import autojoin_keys, create_autojoin_key, create_integration, generate_jwk, integration_keys
from token_exchange.verification.apikey import generate_autojoin_key

# Names a shell may well hold for something else; no tool may take them (create-integration takes a few
# of the Go tool's, tested apart).
GENERIC = {
    "ADD": "1",
    "ALG": "EdDSA",
    "BCRYPT_COST": "5",
    "EMAIL": "me@laptop",
    "FINGERPRINT": "abcdef",
    "HASH": "sha256",
    "JSON": "1",
    "KID": "env-kid",
    "ORG": "env-org",
    "PROMOTE": "env-kid",
    "RETIRE": "env-kid",
}
# The Go create-integration's names: the other tools ignore them.
GO_NAMES = {
    "PROJECT": "env-project",
    "NAMESPACE": "env-ns",
    "INTEGRATION_ID": "env-integration",
    "INTEGRATION_DESCRIPTION": "from the environment",
    "KEY_ID": "ki_fromenv",
    "KEY_DESCRIPTION": "from the environment",
    "KEY_TIER": "9",
}


# -h, -help and --help: the full help on stdout, exit 0.


def _parser_of(tool, command):
    """The tool's parser, built in this process: the flags its help must show."""
    if command is None:
        return {
            "token-exchange": config,
            "create-integration": create_integration,
            "create-autojoin-key": create_autojoin_key,
            "generate-jwk": generate_jwk,
        }[tool].build_parser()
    commands = {"integration-keys": integration_keys, "autojoin-keys": autojoin_keys}[tool].COMMANDS
    parser = FlagParser(f"{tool} {command}", "")
    commands[command][1](parser)
    return parser


PROGRAMS = [
    ("token-exchange", None),
    ("create-integration", None),
    ("create-autojoin-key", None),
    ("generate-jwk", None),
    *(("integration-keys", command) for command in integration_keys.COMMANDS),
    *(("autojoin-keys", command) for command in autojoin_keys.COMMANDS),
]


@pytest.mark.parametrize("spelling", ["-h", "--help", "-help"])
@pytest.mark.parametrize("tool,command", PROGRAMS, ids=[" ".join(filter(None, p)) for p in PROGRAMS])
def test_help_of_every_tool_and_command(built_zipapps, zipapp_home, tool, command, spelling):
    args = [spelling] if command is None else [command, spelling]
    done = run_zipapp(built_zipapps[tool], args, zipapp_home)
    prog = " ".join(filter(None, (tool, command)))
    assert (done.returncode, done.stderr) == (0, "")
    assert done.stdout.startswith(f"usage: {prog} ")
    options = [option for action in _parser_of(tool, command)._actions for option in action.option_strings]
    assert len(options) > 3
    for option in options:
        assert f"{option} " in done.stdout or f"{option}," in done.stdout, option
    text = " ".join(done.stdout.split())  # as one line, whatever the wrapping
    assert "(default: None)" not in text and "(default: )" not in text


@pytest.mark.parametrize("spelling", ["-h", "--help", "-help"])
@pytest.mark.parametrize("tool", ["integration-keys", "autojoin-keys"])
def test_help_of_the_tools_with_commands(built_zipapps, zipapp_home, tool, spelling):
    done = run_zipapp(built_zipapps[tool], [spelling], zipapp_home)
    assert (done.returncode, done.stderr) == (0, "")
    assert done.stdout.startswith(f"usage: {tool} COMMAND [flags]\n")
    commands = {"integration-keys": integration_keys, "autojoin-keys": autojoin_keys}[tool].COMMANDS
    for command, (description, _) in commands.items():
        assert f"  {command} " in done.stdout and description in done.stdout, command
    assert f"{tool} COMMAND -h" in done.stdout


def test_service_help_states_each_default_once(built_zipapps, zipapp_home):
    done = run_zipapp(built_zipapps["token-exchange"], ["-h"], zipapp_home)
    text = " ".join(done.stdout.split())  # as one line, whatever the wrapping
    log_format = text.split("-log-format {json,text}, --log-format {json,text} ", 1)[1].split(" -access-log ")[0]
    assert log_format.count("default") == 1, log_format
    private_key = text.split("--private-key-path PRIVATE_KEY_PATH ", 1)[1].split(" -platform-ns ")[0]
    assert "JWK Set" in private_key


# The environment.


def sqlite_store(db_path, **namespaces):
    return contextlib.closing(SQLiteKeyStore(str(db_path), **namespaces))


def test_create_integration_reads_the_go_tools_names(tools, zipapp_services, db_path):
    env = {"STORE": f"sqlite:{db_path}", **GO_NAMES, "PROJECT": "ignored-for-sqlite"}
    key = tools.create_integration(None, None, env={**env, **GENERIC})
    assert (key.integration_id, key.key_id) == ("env-integration", "ki_fromenv")
    with sqlite_store(db_path, integration_ns="env-ns") as store:
        (integration,) = store.list_integrations()
    assert integration.description == "from the environment"
    (stored,) = integration.keys
    assert (stored.tier, stored.description, stored.hash_scheme) == (9, "from the environment", "bcrypt")
    # Said on stderr, so that a variable left over in a shell is seen.
    (said,) = [line for line in key.stderr.splitlines() if line.startswith("From the environment: ")]
    for name in env:
        assert f" {name}=" in said, name
    for name in GENERIC:
        assert name not in said, name

    service = zipapp_services.start("-client-integration-ns", "env-ns", store_path=db_path)
    assert exchange(service.base_url, "integration", key.api_key).status == 200


def test_create_integration_ignores_generic_names(tools, db_path):
    key = tools.create_integration(db_path, "acme", bcrypt_cost=None, env=GENERIC)
    assert "From the environment" not in key.stderr
    with sqlite_store(db_path) as store:
        record = store.get_integration_key("acme", key.key_id)
    assert record is not None and record.key_hash.startswith("$2b$12$")  # not HASH's sha256, not BCRYPT_COST


def test_create_autojoin_key_ignores_generic_and_go_names(tools, db_path):
    env = {**GENERIC, **GO_NAMES}
    key = tools.create_autojoin_key(db_path, "real-org", env=env)
    assert "From the environment" not in key.stderr
    with sqlite_store(db_path) as store:
        assert [(org.name, org.email) for org in store.list_organizations()] == [("real-org", "")]
    done = tools.run("create-autojoin-key", "-store", f"sqlite:{db_path}", env=env)
    assert done.returncode == 2
    assert only_line(done, "create-autojoin-key") == "create-autojoin-key: error: -org is required"


def test_integration_keys_ignores_generic_and_go_names(tools, sqlite_tools, db_path):
    first = tools.create_integration(db_path, "acme")
    sqlite_tools.env = {**GENERIC, **GO_NAMES}
    listing = sqlite_tools.ok("integration-keys", "list")
    assert listing.stdout.startswith("acme  created ")  # text, not JSON; every integration, default namespace
    assert first.key_id in listing.stdout
    assert listing.stderr == ""

    added = sqlite_tools.ok("integration-keys", "add", "-integration-id", "acme", "-bcrypt-cost", TEST_BCRYPT_COST)
    assert "ki_fromenv" not in added.stdout
    sqlite_tools.env = None
    keys = sqlite_tools.integrations()["acme"]["keys"]
    assert [(k["tier"], k["description"]) for k in keys] == [(0, ""), (0, "")]

    sqlite_tools.env = {**GENERIC, **GO_NAMES}
    refused = sqlite_tools.run("integration-keys", "revoke", "-key-id", first.key_id)
    assert refused.returncode == 2
    assert (
        only_line(refused, "integration-keys revoke") == "integration-keys revoke: error: -integration-id is required"
    )


def test_autojoin_keys_ignores_generic_and_go_names(tools, sqlite_tools, db_path):
    tools.create_autojoin_key(db_path, "real-org")
    sqlite_tools.env = {**GENERIC, **GO_NAMES}
    listing = sqlite_tools.ok("autojoin-keys", "list")
    assert listing.stdout.startswith("real-org  created ")  # text, not JSON; not ORG's organization
    assert listing.stderr == ""
    refused = sqlite_tools.run("autojoin-keys", "revoke")
    assert refused.returncode == 2
    assert only_line(refused, "autojoin-keys revoke") == "autojoin-keys revoke: error: -fingerprint is required"


def test_generate_jwk_ignores_generic_names(tools, tmp_path):
    key_file = tmp_path / "jwk.json"
    stray = {**GENERIC, "OUT": str(tmp_path / "out.json"), "SET": str(tmp_path / "set.json")}
    first = tools.run("generate-jwk", "-out", key_file, env=stray)
    assert (first.returncode, first.stderr) == (0, "")
    written = json.loads(key_file.read_text())
    assert written["alg"] == "RS256" and written["kid"] != "env-kid"  # not ALG, not KID
    added = tools.run("generate-jwk", "-set", key_file, "-add", "-kid", "second", env=stray)
    assert added.returncode == 0, added.stderr
    # ADD=1 in the environment made this refused ("-set needs exactly one of ...") when generate-jwk read it.
    promoted = tools.run("generate-jwk", "-set", key_file, "-promote", "second", env=stray)
    assert promoted.returncode == 0, promoted.stderr
    assert "Signing kid: second" in promoted.stdout
    assert sorted(path.name for path in tmp_path.iterdir()) == ["jwk.json"]


def test_one_environment_serves_the_service_and_the_tools(tools, zipapp_services, key_file, db_path):
    """The variables the service reads for its store (STORE, and the namespaces) also set the tools'."""
    env = {"STORE": f"sqlite:{db_path}", "CLIENT_INTEGRATION_NS": "env-integrations", "PLATFORM_NS": "env-platform"}
    integration = tools.create_integration(None, "acme", env=env)
    autojoin = tools.create_autojoin_key(None, "example-org", env=env)
    listed = tools.run("integration-keys", "list", "-json", env=env)
    assert [i["integration_id"] for i in json.loads(listed.stdout)["integrations"]] == ["acme"]
    assert listed.stderr == f"From the environment: STORE=sqlite:{db_path} CLIENT_INTEGRATION_NS=env-integrations\n"
    listed = tools.run("autojoin-keys", "list", "-json", env=env)
    assert [o["name"] for o in json.loads(listed.stdout)["organizations"]] == ["example-org"]
    with sqlite3.connect(db_path) as conn:
        assert conn.execute("SELECT namespace FROM integration_keys").fetchall() == [("env-integrations",)]
        assert conn.execute("SELECT namespace FROM autojoin_keys").fetchall() == [("env-platform",)]

    # The service, given the same environment and no store flags, reads them.
    port = free_port()
    service = zipapp_services.launch(["-private-key-path", key_file(), "-port", port], port, env=env).wait_healthy()
    assert exchange(service.base_url, "integration", integration.api_key).status == 200
    assert exchange(service.base_url, "autojoin", autojoin.api_key).status == 200


@pytest.mark.parametrize(
    "env",
    [
        {"PROJECT": "mlab-sandbox", "PROJECT_ID": "mlab-oti"},
        {"NAMESPACE": "client-integration", "CLIENT_INTEGRATION_NS": "partner"},
    ],
    ids=["project", "namespace"],
)
def test_create_integration_refuses_variables_that_disagree(tools, db_path, env):
    args = ["-store", f"sqlite:{db_path}", "-integration-id", "acme", "-bcrypt-cost", TEST_BCRYPT_COST]
    done = tools.run("create-integration", *args, env=env)
    assert done.returncode == 2
    line = only_line(done, "create-integration")
    for name, value in env.items():
        assert f"{name}='{value}'" in line
    assert not db_path.exists()

    # Agreeing, or overruled by the command line, they are fine.
    same = dict.fromkeys(env, "partner")
    tools.create_integration(db_path, "acme", env=same)
    flag = "-project" if "PROJECT" in env else "-namespace"
    tools.create_integration(db_path, "acme", flag, "partner", env=env)


# A reader that stops early.

# Well beyond a pipe's buffer (64 KiB by default, 1 MiB at most for an unprivileged process), so the
# tool is still writing when its reader goes away.
LISTING_BYTES = 2 * 1024 * 1024
LONG_TEXT = "x" * 10_000


def seed_long_listings(db_path):
    count = LISTING_BYTES // len(LONG_TEXT) + 10
    with sqlite_store(db_path) as store:
        store.ensure_integration("acme")
        for n in range(count):
            store.add_integration_key("acme", f"ki_{n:016x}", "0" * 64, description=LONG_TEXT)
            org = f"org-{n:04d}"
            store.ensure_organization(org, email=LONG_TEXT)
            store.add_autojoin_key(org, generate_autojoin_key())


def first_line_then_close(pyz, args, home, tmp_path):
    """Run a zipapp, read one line of its output and close the pipe: (line, exit status, stderr)."""
    with open(tmp_path / "stderr", "w+b") as stderr:
        process = subprocess.Popen(
            zipapp_command(pyz, args),
            env=minimal_env(home),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=stderr,
        )
        line = process.stdout.readline()
        process.stdout.close()
        status = process.wait(RUN_TIMEOUT_SECONDS)
        stderr.seek(0)
        return line, status, stderr.read()


@pytest.mark.parametrize("output", ["text", "json"])
@pytest.mark.parametrize("tool", ["integration-keys", "autojoin-keys"])
def test_list_into_a_pipe_closed_early(built_zipapps, zipapp_home, db_path, tmp_path, tool, output):
    seed_long_listings(db_path)
    args = ["list", "-store", f"sqlite:{db_path}", *(["-json"] if output == "json" else [])]
    whole = run_zipapp(built_zipapps[tool], args, zipapp_home)
    assert whole.returncode == 0 and len(whole.stdout) > LISTING_BYTES

    line, status, stderr = first_line_then_close(built_zipapps[tool], args, zipapp_home, tmp_path)
    assert line == whole.stdout.splitlines(keepends=True)[0].encode()
    # As cat or ls would end: killed by SIGPIPE (status 141 in a shell), saying nothing.
    assert (status, stderr) == (-signal.SIGPIPE, b"")


# Run with its standard output closed (`tool >&-`) or on a full disk (`tool >/dev/full`).
WITHOUT_OUTPUT = 'exec "$@" >&-'
ON_A_FULL_DISK = 'exec "$@" >/dev/full'


@pytest.mark.parametrize(
    "module,args",
    [
        ("create_integration", ["-integration-id", "acme", "-bcrypt-cost", str(TEST_BCRYPT_COST)]),
        ("create_autojoin_key", ["-org", "example-org"]),
        ("integration_keys", ["list"]),
        ("generate_jwk", ["-out", "{tmp}/key.json"]),
    ],
)
def test_a_tool_without_standard_output_refuses_before_it_writes(db_path, tmp_path, module, args):
    args = [arg.replace("{tmp}", str(tmp_path)) for arg in args]
    store = [] if module == "generate_jwk" else ["-store", f"sqlite:{db_path}"]
    tool = [sys.executable, "-m", f"token_exchange.tools.{module}", *args, *store]
    done = subprocess.run(["bash", "-c", WITHOUT_OUTPUT, "-", *tool], capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    assert done.stderr.endswith(": error: standard output is closed: nowhere to write what this command prints\n")
    assert "Traceback" not in done.stderr
    assert not db_path.exists() and not (tmp_path / "key.json").exists()  # nothing made that nobody would see


def test_a_tool_that_cannot_write_its_output_says_so_in_one_line(db_path):
    tool = [sys.executable, "-m", "token_exchange.tools.create_integration", "-store", f"sqlite:{db_path}"]
    tool += ["-integration-id", "acme", "-bcrypt-cost", str(TEST_BCRYPT_COST)]
    done = subprocess.run(["bash", "-c", ON_A_FULL_DISK, "-", *tool], capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    assert (
        done.stderr.splitlines()[-1]
        == "create-integration: error: cannot write to standard output: No space left on device"
    )
    assert "Traceback" not in done.stderr
