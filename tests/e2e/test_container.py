"""The Dockerfile's runtime stage, and its exact command serving a token from the built zipapp on the
Datastore test server, as Cloud Run runs it."""

import json
import os
import re
import shlex
import signal
import subprocess
import time

from tests.consumer import verify_token
from tests.httpclient import exchange
from tests.support import ROOT, plain_python
from tests.zipapp_service import START_TIMEOUT_SECONDS, free_port, health, json_lines
from token_exchange.store.datastore import DatastoreKeyStore
from token_exchange.tools.provisioning import create_integration_key

DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
DEV_SERVER = ROOT / "scripts" / "dev-server.sh"


def runtime_stage(dockerfile_text):
    """Instructions of the last stage, continuation lines joined: [(INSTRUCTION, arguments)]."""
    text = dockerfile_text.replace("\\\n", " ")
    instructions = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        word, _, rest = line.partition(" ")
        if word.upper() == "FROM":
            instructions = []
        instructions.append((word.upper(), rest.strip()))
    return instructions


def container_command(instructions):
    entrypoint = next(json.loads(args) for word, args in instructions if word == "ENTRYPOINT")
    cmd = next((json.loads(args) for word, args in instructions if word == "CMD"), [])
    return entrypoint + cmd


def container_env(instructions):
    env = {}
    for word, args in instructions:
        if word == "ENV":
            for assignment in shlex.split(args):
                name, _, value = assignment.partition("=")
                env[name] = value
    return env


def test_dockerfile_runtime_stage_runs_as_a_user_with_the_go_defaults():
    text = DOCKERFILE.read_text()
    assert "RUN ./build.sh" in text
    froms = [line.split()[1] for line in text.splitlines() if line.startswith("FROM ")]
    assert froms == ["python:3.11-slim", "python:3.11-slim"]  # one minor version: the zipapp holds wheels
    stage = runtime_stage(text)
    users = [args for word, args in stage if word == "USER"]
    assert users and users[-1] not in ("root", "0")
    env = container_env(stage)
    assert env["PRIVATE_KEY_PATH"] == "/secrets/jwk-priv.json"
    assert env["PORT"] == "8080"
    assert env["SHIV_ROOT"].startswith("/home/token-exchange/")
    command = container_command(stage)
    assert command[:2] == ["python3", "-I"]
    assert command[2] == "/app/token-exchange.pyz"


def dockerignore_rules(text):
    """[(re-included, regex)] of a .dockerignore, in order, as Docker reads one: # comments, ! re-includes,
    * and ? within a path segment, ** across segments."""
    rules = []
    for line in text.splitlines():
        pattern = line.strip()
        if not pattern or pattern.startswith("#"):
            continue
        negated = pattern.startswith("!")
        pattern = os.path.normpath(pattern.lstrip("!")).lstrip("/")
        regex = ""
        for token in re.findall(r"\*\*/|\*\*|\*|\?|[^*?]+", pattern):
            regex += {"**/": "(.*/)?", "**": ".*", "*": "[^/]*", "?": "[^/]"}.get(token) or re.escape(token)
        rules.append((negated, re.compile(regex + r"\Z")))
    return rules


def left_out_of_build_context(rules, path):
    """Whether Docker leaves path out of the build context: the last rule matching it or a directory above it."""
    parts = path.split("/")
    left_out = False
    for negated, regex in rules:
        if any(regex.match("/".join(parts[:depth])) for depth in range(1, len(parts) + 1)):
            left_out = not negated
    return left_out


def dev_server_files():
    """The signing key and key store scripts/dev-server.sh writes, as its variables name them."""
    script = DEV_SERVER.read_text()
    key = re.search(r"^KEY=(\S+)$", script, re.MULTILINE)[1]
    db = re.search(r"^STORE=sqlite:(\S+)$", script, re.MULTILINE)[1]
    return [key, db, f"{db}-wal", f"{db}-shm"]


def test_secrets_and_local_files_stay_out_of_the_image_build_context():
    rules = dockerignore_rules(DOCKERIGNORE.read_text())
    secret_or_local = [
        *dev_server_files(),
        "jwk-priv.json",  # README: generate-jwk -out jwk-priv.json
        "keys.db",  # README: -store sqlite:keys.db
        "keys.db-wal",
        ".env",
        "mutants/token_exchange/web/body.py",
        ".venv/bin/python",
        "dist/token-exchange.pyz",
        "token_exchange/__pycache__/__init__.cpython-311.pyc",
    ]
    assert [path for path in secret_or_local if not left_out_of_build_context(rules, path)] == []
    # What the build stage needs (COPY . . then build.sh) is still there.
    needed = [
        "build.sh",
        "setup.cfg",
        "pyproject.toml",
        "token_exchange/signing/keyfile.py",
        "token_exchange/cli/flags.py",
    ]
    assert [path for path in needed if left_out_of_build_context(rules, path)] == []


def test_container_command_serves_a_token(built_zipapps, tmp_path, key_file, target):
    """The Dockerfile's exact command, with the runtime stage's environment as Cloud Run sets it."""
    stage = runtime_stage(DOCKERFILE.read_text())
    command = container_command(stage)
    # Only the interpreter's path and the zipapp's place differ from the image.
    argv = [plain_python(), *command[1:2], str(built_zipapps["token-exchange"]), *command[3:]]
    port = free_port()
    shiv_root = tmp_path / "shiv"
    env = {
        **container_env(stage),
        "PORT": str(port),
        "PROJECT_ID": "test-project",
        "PRIVATE_KEY_PATH": str(key_file("RS256")),
        "HOME": str(tmp_path),
        "SHIV_ROOT": str(shiv_root),
        # Stand-ins for Cloud Run's: its Datastore (here a local fake), and a free metrics port.
        "DATASTORE_EMULATOR_HOST": target.address,
        "PROMETHEUSX_LISTEN_ADDRESS": f"127.0.0.1:{free_port()}",
    }
    # The image's build steps that run the zipapp (unpacking it ahead of a cold start) must succeed too.
    pyz_in_image = command[2]
    build_steps = [args for word, args in stage if word == "RUN" and pyz_in_image in args]
    assert build_steps
    for step in build_steps:
        step = step.replace(pyz_in_image, str(built_zipapps["token-exchange"])).replace("python3", plain_python(), 1)
        subprocess.run(step, shell=True, env=env, check=True)
    assert any(shiv_root.iterdir()), "the build step did not unpack the zipapp into SHIV_ROOT"
    unpacked = sorted(shiv_root.iterdir())

    store = DatastoreKeyStore.connect("test-project", "client-integration", "platform-credentials", 5.0)
    try:
        key = create_integration_key(store, f"docker-{os.getpid()}-{time.monotonic_ns()}", bcrypt_cost=4)
    finally:
        store.close()
    log = tmp_path / "service.log"
    with open(log, "wb") as out:
        process = subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT)
    base_url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        while health(base_url) != b"ok":
            assert process.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.05)
        response = exchange(base_url, "integration", key.api_key)
        assert response.status == 200, log.read_text()
        verify_token(base_url, response.json()["token"], "integration")
        assert exchange(base_url, "integration", key.api_key[:-1] + "~").status == 401
        process.send_signal(signal.SIGTERM)
        assert process.wait(30) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert sorted(shiv_root.iterdir()) == unpacked, "the service unpacked the zipapp again"
    # JSON lines; by default only the refused request leaves an access line.
    access = [
        line["message"].split(" ", 3)[:3]
        for line in json_lines(log.read_text())
        if line["logger"] == "token_exchange.access"
    ]
    assert access == [["POST", "/v0/token/integration", "401"]]
    assert key.api_key not in log.read_text()
