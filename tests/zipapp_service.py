"""Running the built zipapps as an operator does: a plain python3 -I, a
minimal environment, real processes on real ports.

Shared by test_tools.py and test_zipapp.py, which import its fixtures.
Every zipapp runs with only PATH and HOME set; HOME is one directory per
session, so shiv unpacks each zipapp once (into HOME/.shiv).
"""

import http.client
import os
import random
import signal
import socket
import subprocess
import tempfile
import time

import pytest

from tests.conftest import plain_python
from tests.httpclient import request

# The first start of a zipapp unpacks it; later starts take well under a second.
START_TIMEOUT_SECONDS = 30
RUN_TIMEOUT_SECONDS = 60


# Ports handed to services come from below Linux's ephemeral range (32768-60999): a port the
# kernel picks for bind(0) is also where it picks the local ports of outgoing connections, so
# one freed for a service could be taken by any client socket before the service binds it.
SERVICE_PORTS = range(20000, 32000)
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


def zipapp_command(pyz, args):
    return [plain_python(), "-I", str(pyz), *(str(arg) for arg in args)]


def run_zipapp(pyz, args, home, env=None, timeout=RUN_TIMEOUT_SECONDS, **kwargs):
    """Run a zipapp to completion; return the CompletedProcess (text output)."""
    return subprocess.run(zipapp_command(pyz, args), env=minimal_env(home, env), capture_output=True, text=True,
                          timeout=timeout, **kwargs)


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

    def __init__(self, pyz, args, home, port, env=None):
        self.port = port
        self.base_url = f"http://127.0.0.1:{port}"
        self._log = tempfile.TemporaryFile()
        self.process = subprocess.Popen(zipapp_command(pyz, args), env=minimal_env(home, env),
                                        stdin=subprocess.DEVNULL, stdout=self._log, stderr=subprocess.STDOUT)

    def wait_healthy(self, timeout=START_TIMEOUT_SECONDS):
        """Poll /health until it answers ok; fail at once if the process exits."""
        deadline = time.monotonic() + timeout
        while True:
            if self.process.poll() is not None:
                raise AssertionError(f"service exited with status {self.process.returncode} before answering:\n"
                                     f"{self.output()}")
            if health(self.base_url) == b"ok":
                return self
            if time.monotonic() > deadline:
                raise AssertionError(f"/health did not answer ok on port {self.port} within {timeout} s:\n"
                                     f"{self.output()}")
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

    def launch(self, args, port, env=None, metrics_host="127.0.0.1"):
        """Start with exactly these arguments (plus a free metrics address on metrics_host); do not wait.

        metrics_host: as the flag writes it, an IPv6 address in brackets."""
        metrics_address = f"{metrics_host}:{free_port()}"
        metrics = ["-prometheusx.listen-address", metrics_address]
        service = ZipappService(self.pyz, [*args, *metrics], self.home, port, env)
        service.metrics_url = f"http://{metrics_address}"
        self.started.append(service)
        return service

    def start(self, *extra, key_path=None, store_path=None, metrics_host="127.0.0.1"):
        """Start on the SQLite file (default db_path) with the RS256 key_file; wait until healthy."""
        port = free_port()
        args = ["-store", f"sqlite:{store_path or self._db_path}",
                "-private-key-path", key_path or self._key_file("RS256"), "-port", port, *extra]
        return self.launch(args, port, metrics_host=metrics_host).wait_healthy()

    def stop_all(self):
        for service in self.started:
            service.stop()


@pytest.fixture(scope="session")
def zipapp_home(tmp_path_factory):
    """HOME of every zipapp run of the session (shiv unpacks into HOME/.shiv)."""
    return tmp_path_factory.mktemp("zipapp-home")


@pytest.fixture
def zipapp_services(built_zipapps, zipapp_home, key_file, db_path):
    services = ZipappServices(built_zipapps["token-exchange"], zipapp_home, key_file, db_path)
    yield services
    services.stop_all()
