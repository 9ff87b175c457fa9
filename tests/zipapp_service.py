"""Running the built zipapps as an operator does: a plain python3 -I, a
minimal environment, real processes on real ports.

Plain helpers; the fixtures that use them (zipapp_home, zipapp_services,
tools, ...) are in tests/e2e/conftest.py. Every zipapp runs with only PATH
and HOME set; HOME is one directory per test run (shared by xdist workers),
so shiv unpacks each zipapp once there (into HOME/.shiv).
"""

import http.client
import json
import os
import random
import re
import resource
import signal
import socket
import subprocess
import tempfile
import time
import zipfile
from dataclasses import dataclass

from prometheus_client.parser import text_string_to_metric_families

from tests.httpclient import request
from tests.support import TEST_BCRYPT_COST, plain_python

# The first start of a zipapp unpacks it; later starts take well under a second.
START_TIMEOUT_SECONDS = 30
RUN_TIMEOUT_SECONDS = 60
# Address space for a run that reads an endless or huge file: start-up needs under a quarter of it, and a
# run that reads such a file whole after all fails in seconds (MemoryError) instead of taking the machine's memory.
MEMORY_LIMIT_BYTES = 1 << 30


# limits= of a run given MEMORY_LIMIT_BYTES of address space.
LIMIT_MEMORY = {resource.RLIMIT_AS: MEMORY_LIMIT_BYTES}

# Sets resource limits (a JSON object: resource number -> limit, soft and hard), then becomes the command
# that follows. preexec_fn would do it in the forked child before exec, which is unsafe in a test process
# with threads: grpc's fork handlers have aborted such a child.
_LIMITS_LAUNCHER = (
    "import json, os, resource, sys\n"
    "for name, limit in json.loads(sys.argv[1]).items():\n"
    "    resource.setrlimit(int(name), (limit, limit))\n"
    "os.execv(sys.argv[2], sys.argv[2:])\n"
)


def with_limits(command, limits):
    """command run with resource limits ({resource.RLIMIT_...: limit}), or as it is when limits is None."""
    if not limits:
        return command
    return [plain_python(), "-I", "-c", _LIMITS_LAUNCHER, json.dumps(limits), *command]


# Ports handed to services come from below Linux's ephemeral range (32768-60999): a port the
# kernel picks for bind(0) is also where it picks the local ports of outgoing connections, so
# one freed for a service could be taken by any client socket before the service binds it.
# Under pytest-xdist each worker takes its own share of them, so two workers never hand out the same port.
def _service_ports():
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
    count = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    return range(20000 + int(worker.removeprefix("gw")), 32000, count)


SERVICE_PORTS = _service_ports()
_handed_out = set()


def free_port():
    """A port nothing listens on right now (on every interface, as the service binds), never handed out twice."""
    while True:
        port = random.choice(SERVICE_PORTS)
        if port in _handed_out:
            continue
        with socket.socket() as sock:
            try:
                sock.bind(("", port))
            except OSError:
                continue
        _handed_out.add(port)
        return port


def minimal_env(home, env=None):
    """Only PATH and HOME, plus the given variables."""
    return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(home), **(env or {})}


def zipapp_command(pyz, args, python=None):
    return [python or plain_python(), "-I", str(pyz), *(str(arg) for arg in args)]


def run_zipapp(pyz, args, home, env=None, timeout=RUN_TIMEOUT_SECONDS, python=None, limits=None, **kwargs):
    """Run a zipapp to completion (with plain_python() unless python is given); return the CompletedProcess
    (text output). limits: see with_limits."""
    return subprocess.run(
        with_limits(zipapp_command(pyz, args, python), limits),
        env=minimal_env(home, env),
        capture_output=True,
        text=True,
        timeout=timeout,
        **kwargs,
    )


def error_line(completed, prog):
    """The single line a refused run leaves on stderr (after any log lines); no traceback anywhere."""
    output = completed.stdout + completed.stderr
    assert "Traceback" not in output, output
    errors = [line for line in completed.stderr.splitlines() if line.startswith(f"{prog}: error: ")]
    assert len(errors) == 1, completed.stderr
    assert completed.stderr.endswith(errors[0] + "\n"), completed.stderr
    return errors[0]


def only_line(completed, prog):
    """stderr is exactly one error line, stdout is empty; return that line."""
    line = error_line(completed, prog)
    assert completed.stderr == line + "\n"
    assert completed.stdout == ""
    return line


def health(base_url, timeout=1):
    """The /health body, or None when nothing answers."""
    try:
        response = request(base_url, "GET", "/health", timeout=timeout)
    except (OSError, http.client.HTTPException):
        return None
    return response.body if response.status == 200 else None


class ZipappService:
    """dist/token-exchange.pyz as a subprocess; its stdout and stderr go to one temporary file."""

    def __init__(self, pyz, args, home, port, env=None, open_files=None):
        """open_files: the limit on open files (soft and hard) the service starts with, or None."""
        self.port = port
        self.base_url = f"http://127.0.0.1:{port}"
        self._log = tempfile.TemporaryFile()  # noqa: SIM115 (open while the service runs; stop() closes it)
        self.process = subprocess.Popen(
            with_limits(
                zipapp_command(pyz, args), None if open_files is None else {resource.RLIMIT_NOFILE: open_files}
            ),
            env=minimal_env(home, env),
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    def wait_healthy(self, timeout=START_TIMEOUT_SECONDS):
        """Poll /health until it answers ok; fail at once if the process exits."""
        deadline = time.monotonic() + timeout
        while True:
            if self.process.poll() is not None:
                raise AssertionError(
                    f"service exited with status {self.process.returncode} before answering:\n{self.output()}"
                )
            if health(self.base_url) == b"ok":
                return self
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"/health did not answer ok on port {self.port} within {timeout} s:\n{self.output()}"
                )
            time.sleep(0.05)

    def output(self):
        # pread, not seek and read: the service's processes write through this same open file,
        # and moving its shared offset would make their next lines overwrite earlier ones.
        fd = self._log.fileno()
        return os.pread(fd, os.fstat(fd).st_size, 0).decode("utf-8", "replace")

    def signal_and_wait(self, signum=signal.SIGTERM, timeout=15):
        """Send a signal and return the exit status (None when it did not exit in time)."""
        self.process.send_signal(signum)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def stop(self):
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()


class ZipappServices:
    """Starts built services; the fixture stops every one of them."""

    def __init__(self, pyz, home, key_file, db_path):
        self.pyz = pyz
        self.home = home
        self._key_file = key_file
        self._db_path = db_path
        self.started = []

    def launch(self, args, port, env=None, metrics_host="127.0.0.1", open_files=None):
        """Start with exactly these arguments (plus a free metrics address on metrics_host); do not wait.

        metrics_host: as the flag writes it, an IPv6 address in brackets; open_files: see ZipappService."""
        metrics_address = f"{metrics_host}:{free_port()}"
        metrics = ["-prometheusx.listen-address", metrics_address]
        service = ZipappService(self.pyz, [*args, *metrics], self.home, port, env, open_files)
        service.metrics_url = f"http://{metrics_address}"
        self.started.append(service)
        return service

    def start(self, *extra, key_path=None, store_path=None, metrics_host="127.0.0.1", open_files=None):
        """Start on the SQLite file (default db_path) with the RS256 key_file; wait until healthy."""
        port = free_port()
        args = [
            "-store",
            f"sqlite:{store_path or self._db_path}",
            "-private-key-path",
            key_path or self._key_file("RS256"),
            "-port",
            port,
            *extra,
        ]
        return self.launch(args, port, metrics_host=metrics_host, open_files=open_files).wait_healthy()

    def stop_all(self):
        for service in self.started:
            service.stop()


# Reading what a running service exposes: metrics over HTTP, JSON log lines.


def metric_values(metrics_url, name):
    """{labels: value} of one metric's samples, scraped over HTTP."""
    text = request(metrics_url, "GET", "/metrics").body.decode()
    return {
        frozenset(s.labels.items()): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == name
    }


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


def hashing_queue_depth(service):
    """bcrypt checks queued or running in the service (all its workers), scraped from its /metrics."""
    return sum(metric_values(service.metrics_url, "tokenexchange_hashing_queue_depth").values())


def access_lines(service, path):
    return [
        line
        for line in json_lines(service.output())
        if line.get("logger") == "token_exchange.access" and line["httpRequest"]["requestUrl"] == path
    ]


def json_lines(output):
    """The JSON log lines of a service's output; every line must be one."""
    lines = [line for line in output.splitlines() if line.strip()]
    return [json.loads(line) for line in lines]


# The tools as processes.


SAVE_WARNING = "IMPORTANT: Save the API key now. It cannot be retrieved later."


# The Go tool's block, exactly: a blank line, the header, aligned fields, a blank line, the warning.
INTEGRATION_BLOCK = re.compile(
    "\n"
    "=== API Key Created ===\n"
    "Integration ID: (?P<integration_id>[^\n]+)\n"
    "Key ID:         (?P<key_id>[^\n]+)\n"
    "API Key:        (?P<api_key>[^\n]+)\n"
    "\n" + re.escape(SAVE_WARNING) + "\n"
)


AUTOJOIN_BLOCK = re.compile(
    "\n"
    "=== API Key Created ===\n"
    "Organization:   (?P<org>[^\n]+)\n"
    "API Key:        (?P<api_key>[^\n]+)\n"
    "\n" + re.escape(SAVE_WARNING) + "\n"
)


RANDOM_SECRET = re.compile(r"[A-Za-z0-9_-]{43}")  # 32 random bytes, base64url without padding


GENERATED_KEY_ID = re.compile(r"ki_[0-9a-f]{16}")


@dataclass
class IntegrationKey:
    integration_id: str
    key_id: str
    api_key: str
    stderr: str

    @property
    def secret(self):
        return self.api_key.rsplit(".", 1)[1]


@dataclass
class AutojoinKey:
    org: str
    api_key: str
    stderr: str


class Tools:
    """The tool zipapps, each run as its own process."""

    def __init__(self, built_zipapps, home):
        self.zipapps = built_zipapps
        self.home = home

    def run(self, name, *args, env=None, **kwargs):
        return run_zipapp(self.zipapps[name], args, self.home, env, **kwargs)

    def create_integration(self, db_path, integration_id, *args, bcrypt_cost=TEST_BCRYPT_COST, env=None):
        """Run create-integration; check its exit status and exact output; return the parsed key."""
        cost = [] if bcrypt_cost is None else ["-bcrypt-cost", bcrypt_cost]
        store = [] if db_path is None else ["-store", f"sqlite:{db_path}"]
        ids = [] if integration_id is None else ["-integration-id", integration_id]
        done = self.run("create-integration", *store, *ids, *cost, *args, env=env)
        assert done.returncode == 0, done.stderr
        block = INTEGRATION_BLOCK.fullmatch(done.stdout)
        assert block, done.stdout
        key = IntegrationKey(block["integration_id"], block["key_id"], block["api_key"], done.stderr)
        prefix = f"mlabk.cii_{key.integration_id}.{key.key_id}."
        assert key.api_key.startswith(prefix)
        assert RANDOM_SECRET.fullmatch(key.api_key[len(prefix) :])
        assert key.api_key not in done.stderr and key.secret not in done.stderr
        return key

    def create_autojoin_key(self, db_path, org, *args, env=None):
        store = [] if db_path is None else ["-store", f"sqlite:{db_path}"]
        orgs = [] if org is None else ["-org", org]
        done = self.run("create-autojoin-key", *store, *orgs, *args, env=env)
        assert done.returncode == 0, done.stderr
        block = AUTOJOIN_BLOCK.fullmatch(done.stdout)
        assert block, done.stdout
        assert RANDOM_SECRET.fullmatch(block["api_key"])
        assert block["api_key"] not in done.stderr
        return AutojoinKey(block["org"], block["api_key"], done.stderr)


class LifecycleTools:
    """integration-keys and autojoin-keys as processes, on one store."""

    def __init__(self, built_zipapps, home, store_args, env=None):
        self.zipapps = built_zipapps
        self.home = home
        self.store_args = store_args
        self.env = env

    def run(self, tool, command, *args):
        return run_zipapp(self.zipapps[tool], [command, *self.store_args, *args], self.home, self.env)

    def ok(self, tool, command, *args):
        done = self.run(tool, command, *args)
        assert done.returncode == 0, done.stderr
        assert "Traceback" not in done.stderr
        return done

    def json(self, tool, command, *args):
        return json.loads(self.ok(tool, command, *args, "-json").stdout)

    def integrations(self, *args):
        return {i["integration_id"]: i for i in self.json("integration-keys", "list", *args)["integrations"]}

    def organizations(self, *args):
        return {o["name"]: o for o in self.json("autojoin-keys", "list", *args)["organizations"]}


def rewritten_zipapp(pyz, out, replace):
    """A copy of a zipapp with the contents of some of its files replaced ({name in the zip: bytes})."""
    with zipfile.ZipFile(pyz) as source, zipfile.ZipFile(out, "w") as copy:
        for info in source.infolist():
            data = replace[info.filename] if info.filename in replace else source.read(info)
            info.compress_type = zipfile.ZIP_STORED  # quicker to write; Python reads either
            copy.writestr(info, data)
    return out


def zipapp_json(pyz, name):
    with zipfile.ZipFile(pyz) as archive:
        return json.loads(archive.read(name))
