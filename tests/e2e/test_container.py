"""The Dockerfile: its stages' instructions, its /app made here from the built zipapps by its own build
step and served from by its exact command on the Datastore test server, as Cloud Run runs it; and, where a
Docker engine and the base image are at hand, the image itself."""

import json
import os
import re
import shlex
import signal
import subprocess
import time
import uuid
from importlib.util import cache_from_source

import pytest

from tests.consumer import verify_token
from tests.httpclient import exchange
from tests.support import ROOT, plain_python
from tests.zipapp_service import START_TIMEOUT_SECONDS, free_port, health, json_lines, minimal_env
from token_exchange.store.datastore import DatastoreKeyStore
from token_exchange.tools.provisioning import create_integration_key

DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
DEV_SERVER = ROOT / "scripts" / "dev-server.sh"
TOOLS = ("create-integration", "create-autojoin-key", "integration-keys", "autojoin-keys", "generate-jwk")


def stages(dockerfile_text):
    """[[(INSTRUCTION, arguments)] of each stage], continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n(\s*#.*\n)*", " ", dockerfile_text)
    found = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        word, _, rest = line.partition(" ")
        if word.upper() == "FROM":
            found.append([])
        found[-1].append((word.upper(), rest.strip()))
    return found


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


def test_the_build_installs_the_locked_dependencies_before_it_copies_the_source():
    build = stages(DOCKERFILE.read_text())[0]
    copies = [(index, args) for index, (word, args) in enumerate(build) if word == "COPY"]
    (deps_index, deps_copy), (source_index, source_copy) = copies
    assert sorted(deps_copy.split()[:-1]) == ["build.sh", "requirements-build.lock", "requirements.lock"]
    assert build[deps_index + 1] == ("RUN", "./build.sh deps")
    assert source_copy == ". ."
    assert source_index == deps_index + 2


def test_the_runtime_stage_runs_as_a_numeric_user_with_the_go_defaults():
    text = DOCKERFILE.read_text()
    froms = [line.split()[1] for line in text.splitlines() if line.startswith("FROM ")]
    assert froms == ["python:3.11-slim", "python:3.11-slim"]  # one minor version: the zipapps hold wheels
    runtime = stages(text)[-1]
    users = [args for word, args in runtime if word == "USER"]
    assert users and re.fullmatch(r"[1-9]\d*:[1-9]\d*", users[-1])  # runAsNonRoot needs a number
    assert re.search(rf"useradd .*--uid {users[-1].split(':')[0]} ", text)
    env = container_env(runtime)
    assert env["PRIVATE_KEY_PATH"] == "/secrets/jwk-priv.json"
    assert env["PORT"] == "8080"
    assert env["SHIV_ROOT"] == "/app/shiv"
    assert env["PATH"].split(":")[0] == "/app/bin"
    assert ("COPY", "--from=build /app /app") in runtime
    assert container_command(runtime) == ["python3", "-I", "/app/token-exchange.pyz"]


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
        "requirements.lock",
        "requirements-build.lock",
        "requirements-build.in",
        "zipapp/preamble.py",
    ]
    assert [path for path in needed if left_out_of_build_context(rules, path)] == []


@pytest.fixture
def image_app(built_zipapps, tmp_path):
    """/app as the image's build step makes it (the zipapps being built), in tmp_path/app."""
    build = stages(DOCKERFILE.read_text())[0]
    step = next(args for word, args in build if word == "RUN" and "/app/shiv" in args)
    app = tmp_path / "app"
    step = step.replace("./build.sh", "true", 1).replace("/app", str(app)).replace("/src", str(ROOT))
    subprocess.run(step.replace("python3 ", f"{plain_python()} "), shell=True, cwd=ROOT, check=True)
    return app


def files_under(path):
    return sorted(str(p.relative_to(path)) for p in path.rglob("*"))


def test_the_image_holds_one_compiled_copy_that_every_zipapp_uses(image_app, tmp_path):
    root = image_app / "shiv"
    copies = [path for path in root.iterdir() if path.is_dir() and not path.is_symlink()]
    assert [copy.name.split("_")[0] for copy in copies] == ["token-exchange.pyz"]
    sources = list((copies[0] / "site-packages").rglob("*.py"))
    assert len(sources) > 900
    assert [source for source in sources if not os.path.exists(cache_from_source(source))] == []
    before = files_under(root)
    for tool in TOOLS:  # by the names `docker run --entrypoint TOOL` uses
        done = subprocess.run(
            [plain_python(), "-I", str(image_app / "bin" / tool), "-h"],
            env=minimal_env(tmp_path, {"SHIV_ROOT": str(root)}),
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, done.stderr
        assert (done.stdout or done.stderr).startswith(f"usage: {tool}")  # its own entry point
    # Nothing unpacked or compiled again (here as root, who could write there; the image's user cannot).
    assert [name for name in files_under(root) if name not in before] == []


def test_the_image_command_serves_a_token(image_app, tmp_path, key_file, target):
    """The Dockerfile's exact command on its /app, with the runtime stage's environment as Cloud Run sets it."""
    runtime = stages(DOCKERFILE.read_text())[-1]
    command = container_command(runtime)
    # Only the interpreter's path and /app's place differ from the image.
    argv = [plain_python(), *(arg.replace("/app", str(image_app)) for arg in command[1:])]
    root = image_app / "shiv"
    before = files_under(root)
    port = free_port()
    env = {
        **container_env(runtime),
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "SHIV_ROOT": str(root),
        "PORT": str(port),
        "PROJECT_ID": "test-project",
        "PRIVATE_KEY_PATH": str(key_file("RS256")),
        "HOME": str(tmp_path),
        # Stand-ins for Cloud Run's: its Datastore (here a local fake), and a free metrics port.
        "DATASTORE_EMULATOR_HOST": target.address,
        "PROMETHEUSX_LISTEN_ADDRESS": f"127.0.0.1:{free_port()}",
    }
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
    # Nothing unpacked, and every module the service imported was compiled at build time.
    assert [name for name in files_under(root) if name not in before] == []
    # JSON lines; by default only the refused request leaves an access line.
    access = [
        line["message"].split(" ", 3)[:3]
        for line in json_lines(log.read_text())
        if line["logger"] == "token_exchange.access"
    ]
    assert access == [["POST", "/v0/token/integration", "401"]]
    assert key.api_key not in log.read_text()


# The image itself: only where a Docker engine runs and has the base image (no registry serves it here).


def docker(*args, **kwargs):
    return subprocess.run(["docker", *args], capture_output=True, text=True, timeout=600, **kwargs)


@pytest.fixture(scope="module")
def image():
    base = stages(DOCKERFILE.read_text())[0][0][1].split()[0]
    try:
        if docker("image", "inspect", base).returncode != 0:
            pytest.skip(f"no Docker engine, or no base image {base} in it")
    except FileNotFoundError:
        pytest.skip("no docker command")
    tag = f"token-exchange-e2e:{uuid.uuid4().hex[:12]}"
    built = docker("build", "--quiet", "--tag", tag, str(ROOT))
    assert built.returncode == 0, built.stderr
    yield tag
    docker("image", "rm", tag)


def test_the_image_serves_a_token_as_its_numeric_user_and_stops_at_sigterm(image, tmp_path, key_file, target):
    assert docker("image", "inspect", "--format", "{{.Config.User}}", image).stdout.strip() == "10001:10001"
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    key_path = key_file("ES256")
    (secrets / "jwk-priv.json").write_bytes(key_path.read_bytes())
    (secrets / "jwk-priv.json").chmod(0o644)  # as a mounted Secret Manager secret is
    store = DatastoreKeyStore.connect("test-project", "client-integration", "platform-credentials", 5.0)
    try:
        key = create_integration_key(store, f"image-{uuid.uuid4().hex[:8]}", bcrypt_cost=4)
    finally:
        store.close()
    port = free_port()
    run = docker(
        "run", "--detach", "--network", "host",
        "--env", f"PORT={port}", "--env", f"PROMETHEUSX_LISTEN_ADDRESS=127.0.0.1:{free_port()}",
        "--env", "PROJECT_ID=test-project", "--env", f"DATASTORE_EMULATOR_HOST={target.address}",
        "--volume", f"{secrets}:/secrets:ro", image,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    container = run.stdout.strip()
    base_url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        while health(base_url) != b"ok":
            state = docker("inspect", "--format", "{{.State.Running}}", container).stdout.strip()
            assert state == "true" and time.monotonic() < deadline, docker("logs", container).stderr
            time.sleep(0.05)
        response = exchange(base_url, "integration", key.api_key)
        assert response.status == 200
        verify_token(base_url, response.json()["token"], "integration")
        assert docker("stop", "--time", "30", container).returncode == 0
        assert docker("inspect", "--format", "{{.State.ExitCode}}", container).stdout.strip() == "0"
    finally:
        docker("rm", "--force", container)


def test_the_tools_run_in_the_image(image, target):
    created = docker(
        "run", "--rm", "--network", "host", "--env", f"DATASTORE_EMULATOR_HOST={target.address}",
        "--entrypoint", "create-integration", image,
        "-project", "test-project", "-integration-id", "from-image", "-bcrypt-cost", "4",
    )  # fmt: skip
    assert created.returncode == 0, created.stderr
    listed = docker(
        "run", "--rm", "--network", "host", "--env", f"DATASTORE_EMULATOR_HOST={target.address}",
        "--entrypoint", "/app/integration-keys.pyz", image, "list", "-project", "test-project", "-json",
    )  # fmt: skip
    assert listed.returncode == 0, listed.stderr
    assert "from-image" in listed.stdout
