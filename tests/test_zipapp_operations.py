"""The built zipapp as operators run it: the container's command, metrics
over HTTP, JSON logs on stderr, and -workers with its signals."""

import concurrent.futures
import json
import os
import pathlib
import shlex
import signal
import socket
import subprocess
import sys
import time

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import ROOT, plain_python
from tests.consumer import verify_token
from tests.httpclient import exchange, request
from tests.test_datastore_store import datastore_target, target  # noqa: F401 (fixtures)
from tests.zipapp_service import (  # noqa: F401 (fixtures)
    START_TIMEOUT_SECONDS,
    error_line,
    free_port,
    health,
    run_zipapp,
    zipapp_home,
    zipapp_services,
)
from token_exchange.tools.provisioning import create_integration_key
from token_exchange.store.datastore import DatastoreKeyStore

DOCKERFILE = ROOT / "Dockerfile"


def metric_values(metrics_url, name):
    """{labels: value} of one metric's samples, scraped over HTTP."""
    text = request(metrics_url, "GET", "/metrics").body.decode()
    return {frozenset(s.labels.items()): s.value
            for family in text_string_to_metric_families(text) for s in family.samples if s.name == name}


def settled(read, expected, timeout=10):
    """read() once it returns expected, else its last value after timeout seconds.

    A worker counts and logs a request just after sending its answer, so a
    scrape or a log read right after the answer may not show it yet.
    """
    deadline = time.monotonic() + timeout
    while True:
        got = read()
        if got == expected or time.monotonic() > deadline:
            return got
        time.sleep(0.05)


def access_lines(service, path):
    return [line for line in json_lines(service.output())
            if line.get("logger") == "token_exchange.access" and line["httpRequest"]["requestUrl"] == path]


def json_lines(output):
    """The JSON log lines of a service's output; every line must be one."""
    lines = [line for line in output.splitlines() if line.strip()]
    return [json.loads(line) for line in lines]


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


def test_container_command_serves_a_token(built_zipapps, tmp_path, key_file, target):  # noqa: F811
    """The Dockerfile's exact command, with the runtime stage's environment as Cloud Run sets it."""
    stage = runtime_stage(DOCKERFILE.read_text())
    command = container_command(stage)
    # Only the interpreter's path and the zipapp's place differ from the image.
    argv = [plain_python(), *command[1:2], str(built_zipapps["token-exchange"]), *command[3:]]
    port = free_port()
    shiv_root = tmp_path / "shiv"
    env = {**container_env(stage), "PORT": str(port), "PROJECT_ID": "test-project",
           "PRIVATE_KEY_PATH": str(key_file("RS256")), "HOME": str(tmp_path), "SHIV_ROOT": str(shiv_root),
           # Stand-ins for Cloud Run's: its Datastore (here a local fake), and a free metrics port.
           "DATASTORE_EMULATOR_HOST": target.address,
           "PROMETHEUSX_LISTEN_ADDRESS": f"127.0.0.1:{free_port()}"}
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
    access = [line["message"].split(" ", 3)[:3] for line in json_lines(log.read_text())
              if line["logger"] == "token_exchange.access"]
    assert access == [["POST", "/v0/token/integration", "401"]]
    assert key.api_key not in log.read_text()


def test_metrics_are_served_over_http(zipapp_services, integration_key):  # noqa: F811
    key = integration_key("acme")
    service = zipapp_services.start()
    for _ in range(2):
        assert exchange(service.base_url, "integration", key.api_key).status == 200
    expected = {frozenset({("code", "200"), ("method", "post")}): 2.0}
    assert settled(lambda: metric_values(service.metrics_url, "tokenexchange_integration_requests_total"),
                   expected) == expected
    issued = metric_values(service.metrics_url, "tokenexchange_tokens_issued_total")
    assert issued == {frozenset({("audience", "integration")}): 2.0}
    # Not a TTY: JSON lines. By default a success leaves no access line, a refusal does, naming
    # the key by its ids only.
    assert exchange(service.base_url, "integration", key.api_key[:-1] + "~").status == 401
    statuses = settled(lambda: [line["httpRequest"]["status"]
                                for line in access_lines(service, "/v0/token/integration")], [401])
    assert statuses == [401]
    assert access_lines(service, "/v0/token/integration")[0]["key_id"] == key.key_id
    assert key.api_key.rsplit(".", 1)[1] not in service.output()


def children_of(pid):
    """Pids of the running processes whose parent is pid (Linux /proc)."""
    children = []
    for entry in pathlib.Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            fields = stat.rsplit(")", 1)[1].split()
            if int(fields[1]) == pid and fields[0] != "Z":
                children.append(int(entry.name))
    return children


def alive(pid):
    try:
        stat = pathlib.Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


# Batches of requests sent, at most, until both workers have served one.
MAX_WORKER_BATCHES = 25


@pytest.mark.skipif(not pathlib.Path("/proc/self/stat").exists(), reason="needs Linux /proc")
def test_two_workers_serve_add_up_and_stop_on_sigterm(zipapp_services, integration_key):  # noqa: F811
    key = integration_key("acme")
    slow_key = integration_key("slow", bcrypt_cost=14)  # about a second to check: in flight at SIGTERM
    service = zipapp_services.start("-workers", "2", "-access-log", "all")  # each line names its worker
    assert settled(lambda: len(children_of(service.process.pid)), 2) == 2
    workers = children_of(service.process.pid)

    # Many concurrent connections: both workers accept some of them. Which one accepts is the
    # kernel's choice, and on a busy machine one may win a whole batch: send batches until both
    # have served (bounded), counting every request for the metrics check below.
    batch, count, tokens = 40, 0, []
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        for _ in range(MAX_WORKER_BATCHES):
            responses = list(pool.map(lambda _: exchange(service.base_url, "integration", key.api_key),
                                      range(batch)))
            assert [response.status for response in responses] == [200] * batch
            tokens += [response.json()["token"] for response in responses]
            count += batch
            assert settled(lambda: len(access_lines(service, "/v0/token/integration")), count) == count
            if {line["pid"] for line in access_lines(service, "/v0/token/integration")} == set(workers):
                break
    assert {line["pid"] for line in access_lines(service, "/v0/token/integration")} == set(workers)
    # Each worker draws its own randomness (none inherited across the fork): no jti repeats.
    jtis = [verify_token(service.base_url, token, "integration")["jti"] for token in tokens]
    assert len(set(jtis)) == len(tokens) == count
    # The supervisor's /metrics sums both workers.
    expected = {frozenset({("code", "200"), ("method", "post")}): float(count)}
    assert settled(lambda: metric_values(service.metrics_url, "tokenexchange_integration_requests_total"),
                   expected) == expected

    # A request in flight when SIGTERM comes finishes; everything exits 0 and nothing is left running.
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        slow = pool.submit(exchange, service.base_url, "integration", slow_key.api_key)
        time.sleep(0.3)
        assert not slow.done()
        assert service.signal_and_wait(signal.SIGTERM, timeout=30) == 0, service.output()
        response = slow.result(30)
    assert response.status == 200
    assert "token" in response.json()
    assert not any(alive(pid) for pid in workers)


@pytest.mark.skipif(not pathlib.Path("/proc/self/stat").exists(), reason="needs Linux /proc")
def test_workers_stop_when_the_supervisor_is_killed(zipapp_services):  # noqa: F811
    service = zipapp_services.start("-workers", "2", "-access-log", "all")  # each line names its worker
    assert settled(lambda: len(children_of(service.process.pid)), 2) == 2
    workers = children_of(service.process.pid)
    service.process.kill()  # SIGKILL: the supervisor forwards nothing
    service.process.wait(10)
    assert settled(lambda: [pid for pid in workers if alive(pid)], []) == []


def test_workers_that_cannot_start_stop_the_service_with_status_1(zipapp_services, tmp_path):  # noqa: F811
    # The default store, Datastore, has no credentials in the minimal environment: every worker fails.
    port = free_port()
    service = zipapp_services.launch(["-private-key-path", zipapp_services._key_file("RS256"), "-port", port,
                                      "-workers", "2"], port)
    assert service.process.wait(60) == 1
    output = service.output()
    assert "Traceback" not in output
    # The first worker to fail stops the other, which may not have got as far as its own error line.
    errors = [line for line in output.splitlines() if line.startswith("token-exchange: error: ")]
    assert 1 <= len(errors) <= 2, output
    assert all(line in errors or json.loads(line) for line in output.splitlines() if line.strip()), output


def test_sigterm_while_workers_start_stops_the_service_with_status_0(zipapp_services):  # noqa: F811
    port = free_port()
    service = zipapp_services.launch(["-store", f"sqlite:{zipapp_services._db_path}", "-private-key-path",
                                      zipapp_services._key_file("RS256"), "-port", port, "-workers", "2"], port)
    # The supervisor says so once it has forked; the workers are then still starting.
    assert settled(lambda: "supervising 2 workers" in service.output(), True), service.output()
    assert service.signal_and_wait(signal.SIGTERM, timeout=30) == 0, service.output()
    assert "exited with status" not in service.output()


def test_metrics_address_in_use_stops_the_workers_and_start_up_with_one_line(built_zipapps, zipapp_home,  # noqa: F811
                                                                             key_file, db_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        address = "127.0.0.1:%d" % taken.getsockname()[1]
        done = run_zipapp(built_zipapps["token-exchange"], ["-private-key-path", str(key_file()), "-store",
                                                            f"sqlite:{db_path}", "-port", free_port(),
                                                            "-workers", "2", "-prometheusx.listen-address", address],
                          zipapp_home, timeout=60)
    assert done.returncode == 1  # as with one process: the workers it had started are stopped first
    assert error_line(done, "token-exchange") == \
        f"token-exchange: error: cannot serve metrics on {address}: Address already in use"


# The supervisor forks its workers with os.fork wrapped so that a SIGTERM reaches the supervisor
# right after its first fork, before its second: the moment a signal used to reach only the first.
SIGTERM_BETWEEN_FORKS = """
import os, signal, sys
from token_exchange.cli import service as server
real_fork, forked = os.fork, []
def fork_then_signal():
    pid = real_fork()
    if pid:
        forked.append(pid)
        if len(forked) == 1:
            os.kill(os.getpid(), signal.SIGTERM)
    return pid
os.fork = fork_then_signal
server.main(sys.argv[1:])
"""


def test_sigterm_between_two_forks_stops_every_worker(key_file, db_path):
    process = subprocess.Popen(
        [sys.executable, "-c", SIGTERM_BETWEEN_FORKS, "-private-key-path", str(key_file()), "-store",
         f"sqlite:{db_path}", "-port", str(free_port()), "-workers", "3", "-prometheusx.listen-address",
         f"127.0.0.1:{free_port()}"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        output, _ = process.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)  # the supervisor and any worker the signal missed
        output, _ = process.communicate()
        pytest.fail("the supervisor still waited for a worker the signal never reached:\n" + output)
    assert process.returncode == 0, output
    assert "Traceback" not in output, output


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
        [sys.executable, "-c", SIGNAL_WHILE_STARTING, signal_name, "-private-key-path", str(key_file()), "-store",
         f"sqlite:{db_path}", "-port", str(free_port()), "-prometheusx.listen-address", f"127.0.0.1:{free_port()}"],
        cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
